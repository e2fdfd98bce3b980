"""How often each test split has been scored across the project: the honest record shown beside test results.

Select on validation, report test (STYLE.md). A test split scored for several candidate models is no longer an
untouched hold-out: where an earlier candidate's test result prompted the next one, the shipped figures are
optimistically biased. ``test_scorings.json`` in the model folder (written by ``bench/scoring_record.py``) lists
every model whose test metrics are on file in the project, collected from the stored metrics files so that no
count is typed by hand, plus the scorings that left no file (written by hand, with where they are documented;
the bench keeps them when it rewrites the list).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..formatting import format_number
from .dashboard import DATASET_LABELS

SCORING_RECORD_FILE = "test_scorings.json"
NO_RECORD = ("No record of how often these test splits were scored came with this model: if several candidates "
             "were scored on them, the figures below are optimistic.")


def collect_scorings(folders: Iterable[str | Path], root: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Dataset -> one entry per model (by weights SHA-256) whose ``metrics*.json`` in ``folders`` scores that
    dataset's test split: model, weights SHA-256, AUC and the file (relative to ``root``); datasets in the
    dashboard's order, models in folder order."""
    found: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    for folder in folders:
        for path in sorted(Path(folder).glob("metrics*.json")):
            metrics = json.loads(path.read_text())
            dataset, sha = metrics.get("dataset"), metrics.get("weights_sha256")
            if metrics.get("split") != "test" or not dataset or not sha or (dataset, sha) in seen:
                continue
            seen.add((dataset, sha))
            found.setdefault(dataset, []).append({
                "model": metrics.get("model"), "weights_sha256": sha, "auc": metrics.get("auc"),
                "file": path.resolve().relative_to(Path(root).resolve()).as_posix()})
    order = list(DATASET_LABELS)
    return {d: found[d] for d in sorted(found, key=lambda d: (order.index(d) if d in order else len(order), d))}


def load_scoring_record(model_dir: str | Path | None) -> dict[str, Any] | None:
    """The model folder's ``test_scorings.json``, or None if absent."""
    path = Path(model_dir or "") / SCORING_RECORD_FILE
    return json.loads(path.read_text()) if model_dir is not None and path.is_file() else None


def scoring_record_lines(record: Mapping[str, Any] | None, weights_sha256: str | None = None) -> list[str]:
    """Markdown: the record's note, then one line per test split: how many models scored it (this one among
    them when ``weights_sha256`` is listed) and the scorings that left no file. :data:`NO_RECORD` without one."""
    if not record:
        return [NO_RECORD]
    lines = [record["note"]] if record.get("note") else []
    unfiled = record.get("unfiled") or {}
    for dataset, entries in (record.get("scorings") or {}).items():
        label = DATASET_LABELS.get(dataset, dataset)
        models = len(entries)
        this = " (this model among them)" if any(e.get("weights_sha256") == weights_sha256 for e in entries) else ""
        line = f"**{label}**: scored by {models} model{'s' if models != 1 else ''} across the project{this}"
        extra = unfiled.get(dataset) or []
        if extra:
            what = "; ".join(f"{e['what']}, AUC {format_number(e.get('auc'))}" for e in extra)
            line += f", and {len(extra)} more time{'s' if len(extra) != 1 else ''} without a file: {what}"
        lines.append(line + ".")
    return lines


def scoring_record_markdown(record: Mapping[str, Any] | None, weights_sha256: str | None = None) -> str:
    """:func:`scoring_record_lines` as one Markdown block: the note, then one bullet per test split."""
    lines = scoring_record_lines(record, weights_sha256)
    if not record:
        return lines[0]
    note, splits = (lines[0], lines[1:]) if record.get("note") else ("", lines)
    return "\n".join([note, "", *(f"- {line}" for line in splits)]).strip()


def scoring_rows(record: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """Every scoring on file and without, one row each, for the page's expander."""
    rows = []
    for dataset, entries in ((record or {}).get("scorings") or {}).items():
        rows += [{"Test split": DATASET_LABELS.get(dataset, dataset), "Model": str(e.get("model")),
                  "AUC": format_number(e.get("auc")), "Record": e.get("file", "")} for e in entries]
    for dataset, entries in ((record or {}).get("unfiled") or {}).items():
        rows += [{"Test split": DATASET_LABELS.get(dataset, dataset), "Model": e["what"],
                  "AUC": format_number(e.get("auc")), "Record": e.get("source", "")} for e in entries]
    return rows
