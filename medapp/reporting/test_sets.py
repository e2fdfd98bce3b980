"""Each hospital's held-out test split side by side, and per scanner: what the Model performance page opens with.

Read from the metrics files ``evaluate --update-model`` wrote into the model folder (``metrics.json`` for BUSI
test, ``metrics_busbra_test.json`` for BUS-BRA test, ...); nothing is re-scored here. Sensitivity and specificity
carry their counts, so a rate on 10 cancers never reads like one on 100, and a scanner with too few cases of a
class says so instead of showing a confident-looking number.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..formatting import MISSING, format_number, format_percent, is_missing
from .dashboard import DATASET_LABELS, held_out_evaluations, load_metrics

# BreastMNIST is BUSI resampled to 28 px: another test of the same hospital's images, not another site.
NOT_A_SITE = frozenset({"breastmnist"})
# A scanner with fewer malignant, or fewer other, test images than this is listed but marked: its sensitivity or
# specificity moves by 20 points or more with a single image.
MIN_PER_CLASS = 5
DUPLICATE_FREE = "duplicate_free"  # metrics["near_duplicates"] key of the subset without near-copies in train/val


def site_evaluations(model_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Label -> metrics of every hospital's held-out test split in the model folder, BUSI's first."""
    sites = {label: filename for label, filename in held_out_evaluations(model_dir).items()
             if label not in {DATASET_LABELS[d] for d in NOT_A_SITE}}
    return {label: metrics for label, filename in sites.items()
            if (metrics := load_metrics(model_dir, filename)) is not None}


def _count_rate(rate: Any, total: Any) -> str:
    """The rate and the counts it comes from, e.g. "85.7% (36 of 42)" (a ratio of integers: rounding is exact)."""
    if is_missing(rate) or not total:
        return MISSING
    return f"{format_percent(rate)} ({round(rate * total)} of {total})"


def _auc_with_ci(m: Mapping[str, Any]) -> str:
    lo, hi = m.get("auc_ci") or (None, None)
    return f"{format_number(m.get('auc'))} ({format_number(lo)}-{format_number(hi)})"


def _column(m: Mapping[str, Any], definition: str | None) -> dict[str, str]:
    """One test set's column of :func:`comparison_rows` (measure -> text)."""
    return {
        "Images": f"{m.get('n', MISSING)} ({m.get('n_positive', MISSING)} malignant)",
        "AUC (95% CI)": _auc_with_ci(m),
        "AUC compares": definition or m.get("auc_definition") or "malignant vs rest",
        "Threshold": format_number(m.get("threshold")),
        "Sensitivity at the threshold": _count_rate(m.get("sensitivity"), m.get("n_positive")),
        "Specificity at the threshold": _count_rate(m.get("specificity"), m.get("n_negative")),
        "Calibration error (ECE)": format_number(m.get("ece")),
        "Passed the scope gate": format_percent(m.get("scope_pass_rate")),
        **outline_cells(m.get("outline")),
    }


def outline_cells(outline: Mapping[str, Any] | None) -> dict[str, str]:
    """The lesion outline against the radiologists' masks (``evaluate``'s ``outline`` section), or the missing
    value where a test set was scored without an outline."""
    if not outline:
        return {"Lesion outline Dice": MISSING, "Outline vs radiologist: orientation / shape agree": MISSING}
    every, agree = outline["all_lesion_images"], outline["agreement"]
    return {"Lesion outline Dice": f"{format_number(every['dice_mean'])} ({every['n']} lesions)",
            "Outline vs radiologist: orientation / shape agree":
                f"{format_number(agree['orientation']['agreement_counting_missed'])} / "
                f"{format_number(agree['shape']['agreement_counting_missed'])}"}


def comparison_rows(evaluations: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    """The test sets side by side: one row per measure, one column per test set (and, where ``evaluate`` scored
    it, BUSI's subset without near-copies in train or validation, whose numbers are the less optimistic ones)."""
    columns: dict[str, dict[str, str]] = {}
    for label, m in evaluations.items():
        columns[label] = _column(m, None)
        subset = (m.get("near_duplicates") or {}).get(DUPLICATE_FREE)
        if subset:
            columns[f"{label.split(' (')[0]}, without near-copies"] = _column(subset, m.get("auc_definition"))
    if not columns:
        return []
    measures = list(next(iter(columns.values())))
    return [{"Measure": measure, **{label: column[measure] for label, column in columns.items()}}
            for measure in measures]


def scanner_rows(evaluations: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    """One row per scanner of each test set that records them (``per_device``), with a note on scanners too
    small to judge."""
    rows = []
    for label, m in evaluations.items():
        for device, d in (m.get("per_device") or {}).items():
            pos, neg = int(d.get("n_positive") or 0), int(d.get("n_negative") or 0)
            few = [f"{count} {name}" for count, name in ((pos, "malignant"), (neg, "other")) if count < MIN_PER_CLASS]
            rows.append({"Test set": label.split(" (")[0], "Scanner": device, "Images": str(d.get("n", MISSING)),
                         "AUC (95% CI)": _auc_with_ci(d), "Sensitivity": _count_rate(d.get("sensitivity"), pos),
                         "Specificity": _count_rate(d.get("specificity"), neg),
                         "ECE": format_number(d.get("ece")),
                         "Outline Dice": _device_dice(m.get("outline"), device),
                         "Note": f"too few to judge ({' and '.join(few)})" if few else ""})
    return rows


def _device_dice(outline: Mapping[str, Any] | None, device: str) -> str:
    entry = ((outline or {}).get("per_device") or {}).get(device)
    return format_number(entry["all_lesion_images"]["dice_mean"]) if entry else MISSING


def cross_site_display(rows: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The cross-site table (``cross_site.json``) for the page: readable headers, AUC with its CI, percentages."""
    return [{"Trained on": str(r.get("trained_on")), "Tested on": str(r.get("tested_on")),
             "Site seen in training": "yes" if r.get("site_seen_in_training") else "no",
             "Images": str(r.get("n", MISSING)), "AUC (95% CI)": _auc_with_ci(r),
             "Sensitivity": format_percent(r.get("sensitivity")), "Specificity": format_percent(r.get("specificity")),
             "ECE": format_number(r.get("ece")), "Passed the scope gate": format_percent(r.get("scope_pass_rate"))}
            for r in rows]
