"""Writing an evaluation into a model folder: the metrics file, its plots, the card's summary and the README.

Reading is not writing: ``evaluate`` only scores, and this runs only when asked (``evaluate --update-model``, or
the release step). A later, partial run never drops an earlier record: a record the new run did not compute
(the localisation scores, the scope pass rate) is carried over from the file it replaces when both runs scored
the same weights on the same data, and says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..model.card import ModelCard, metrics_filename
from .figures import write_plots
from .model_readme import write_model_readme

log = logging.getLogger(__name__)

# Records only some runs compute (``evaluate --localization``): kept from the previous file when missing.
OPTIONAL_RECORDS = ("localization", "scope_pass_rate")
SUMMARY_KEYS = ("n", "auc", "auc_ci", "accuracy", "threshold", "sensitivity", "specificity", "ppv", "npv",
                "accuracy_3class", "macro_auc_3class", "ece", "ece_uncalibrated", "scope_pass_rate")


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a metrics dict, for the model card."""
    summary = {k: result[k] for k in SUMMARY_KEYS if k in result}
    if "localization" in result:
        summary["localization"] = result["localization"]
    return summary


def merge_with_previous(result: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """``result`` plus the optional records of ``previous`` that it lacks, when both scored the same weights on
    the same dataset, split and number of images."""
    same = ("weights_sha256", "dataset", "split", "n")
    if previous is None or any(previous.get(k) != result.get(k) for k in same):
        return result
    carried = [k for k in OPTIONAL_RECORDS if k in previous and k not in result]
    if not carried:
        return result
    log.info("kept %s from the previous evaluation of the same weights", ", ".join(carried))
    return {**result, **{k: previous[k] for k in carried}, "carried_over": carried}


def publish_evaluation(model_dir: str | Path, result: dict[str, Any]) -> Path:
    """Write ``result`` into ``model_dir``: its metrics file (merged with the one it replaces), plots, the card's
    summary and the README. Returns the metrics file's path."""
    model_dir = Path(model_dir)
    dataset, split = result["dataset"], result["split"]
    path = model_dir / metrics_filename(dataset, split)
    previous = json.loads(path.read_text()) if path.is_file() else None
    merged = merge_with_previous(result, previous)
    path.write_text(json.dumps(merged, indent=1, allow_nan=True) + "\n")
    write_plots(merged, model_dir / "plots", prefix=f"{dataset}_{split}")
    card = ModelCard.load(model_dir)
    card.metrics[f"{dataset}_{split}"] = summarize(merged)
    card.save(model_dir)
    write_model_readme(model_dir)
    log.info("wrote %s", path)
    return path
