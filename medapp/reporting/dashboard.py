"""What the Model performance and Model card pages show, read from the files ``evaluate`` and ``train`` wrote.

Every number here comes from ``metrics.json`` (see :mod:`medapp.evaluation.evaluate`) or ``history.csv``; nothing
is re-scored. The charts are :mod:`medapp.reporting.figures`'.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MedAppError
from ..evaluation.metrics import OperatingPoint, operating_point
from ..formatting import MISSING, format_number, format_percent
from ..model.card import (
    CROSS_SITE_FILE,
    INTENDED_USE,
    MALIGNANT,
    METRICS_FILE,
    OUT_OF_SCOPE_USE,
    ModelCard,
    known_flaws,
    metrics_filename,
)
from ..model.explain import cam_label

HISTORY_FILE = "history.csv"


# How the dashboard names each dataset's test split.
DATASET_LABELS = {"busi": "BUSI test (Cairo, Egypt)", "busbra": "BUS-BRA test (Rio de Janeiro, Brazil)",
                  "breastmnist": "BreastMNIST test (BUSI at 28 px)"}


def load_metrics(model_dir: str | Path | None, filename: str = METRICS_FILE) -> dict[str, Any] | None:
    """A metrics file of a model folder as a dict (NaN allowed, as ``evaluate`` writes it), or None if absent."""
    path = Path(model_dir or "") / filename
    if model_dir is None or not path.is_file():
        return None
    return json.loads(path.read_text())


def held_out_evaluations(model_dir: str | Path) -> dict[str, str]:
    """Label -> metrics file of each held-out test evaluation written into the folder, BUSI's first."""
    return {label: metrics_filename(dataset, "test") for dataset, label in DATASET_LABELS.items()
            if (Path(model_dir) / metrics_filename(dataset, "test")).is_file()}


def device_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per scanner of a per-device evaluation (empty when the set has one scanner)."""
    return [{"scanner": device, "n": r["n"], "malignant": r["n_positive"], "AUC": r["auc"],
             "sensitivity": r["sensitivity"], "specificity": r["specificity"], "ECE": r["ece"],
             "scope pass rate": r["scope_pass_rate"]} for device, r in (metrics.get("per_device") or {}).items()]


def cross_site_rows(model_dirs: list[str | Path]) -> list[dict[str, Any]]:
    """Each model's results on each dataset's test split it was evaluated on, labelled by the sites it was trained
    on: the table that shows whether a model holds up at a hospital it never saw. Read from the metrics files
    ``evaluate --update-model`` wrote; nothing is re-scored."""
    rows = []
    for model_dir in model_dirs:
        card = ModelCard.load(model_dir)
        trained = [s["dataset"] for s in card.training_sites] or ["busi"]  # cards before training_sites: BUSI
        for dataset in DATASET_LABELS:
            metrics = load_metrics(model_dir, metrics_filename(dataset, "test"))
            if metrics is None or dataset == "breastmnist":
                continue
            rows.append({"trained_on": "+".join(trained), "tested_on": dataset,
                         "site_seen_in_training": dataset in trained,
                         "model": card.name, "weights_sha256": card.weights_sha256, "n": metrics["n"],
                         **{k: metrics.get(k) for k in ("auc", "auc_ci", "auc_definition", "threshold", "sensitivity",
                                                         "specificity", "ece", "scope_pass_rate")}})
    return rows


def cross_site_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cross-site rows as the dashboard and the model README show them."""
    return [{"trained on": r["trained_on"], "tested on": r["tested_on"], "site seen": r["site_seen_in_training"],
             "n": r["n"], "AUC": r["auc"], "sensitivity": r["sensitivity"], "specificity": r["specificity"],
             "ECE": r["ece"], "scope pass rate": r["scope_pass_rate"]} for r in rows]


def load_cross_site(model_dir: str | Path) -> list[dict[str, Any]] | None:
    """The cross-site table (``cross_site.json``, written by bench/cross_site.py), or None if absent."""
    path = Path(model_dir) / CROSS_SITE_FILE
    return json.loads(path.read_text())["rows"] if path.is_file() else None


def load_history(model_dir: str | Path) -> dict[str, list[float]] | None:
    """``history.csv`` as columns of floats (empty cells become NaN), or None if absent."""
    path = Path(model_dir) / HISTORY_FILE
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    return {key: [_float(r.get(key)) for r in rows] for key in rows[0]}


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def operating_point_at(metrics: Mapping[str, Any], threshold: float) -> OperatingPoint:
    """Counts and rates of "flag when P(malignant) >= ``threshold``" on the evaluated split.

    Exact from the stored per-image ``predictions`` when ``metrics.json`` has them (it does when ``evaluate``
    wrote it); otherwise from the ROC points and class totals (:func:`operating_point_from_roc`).
    """
    predictions = metrics.get("predictions")
    if not predictions:
        return operating_point_from_roc(metrics, threshold)
    return operating_point([p["label"] == MALIGNANT for p in predictions], [p["p_malignant"] for p in predictions],
                           threshold)


def operating_point_from_roc(metrics: Mapping[str, Any], threshold: float) -> OperatingPoint:
    """The stored ROC point in force at ``threshold``, turned into counts with ``n_positive`` / ``n_negative``.

    ROC points are (FPR, TPR) at decreasing thresholds, each meaning "flag P >= t"; the point in force at t is
    the one of the smallest stored threshold >= t. That is exact at every stored threshold; between two, sklearn's
    ``drop_intermediate`` may have removed points lying on the segment joining them, so this moves in the stored
    steps (which is why :func:`operating_point_at` prefers the per-image predictions).
    """
    roc = metrics["curves"]["roc"]
    thresholds = np.asarray(roc["thresholds"], dtype=np.float64)
    fpr, tpr = np.asarray(roc["fpr"], dtype=np.float64), np.asarray(roc["tpr"], dtype=np.float64)
    n_pos, n_neg = int(metrics["n_positive"]), int(metrics["n_negative"])
    at_or_above = np.flatnonzero(thresholds >= threshold)
    i = int(at_or_above[-1]) if at_or_above.size else 0  # above every score: nothing flagged (first point)
    tp, fp = round(float(tpr[i]) * n_pos), round(float(fpr[i]) * n_neg)
    return OperatingPoint(threshold=float(threshold), tp=tp, fp=fp, tn=n_neg - fp, fn=n_pos - tp)


def rate_rows(point: OperatingPoint) -> list[tuple[str, str]]:
    """(label, percentage or "n/a") for sensitivity, specificity, PPV and NPV, as the explorer shows them."""
    return [("Sensitivity", format_percent(point.sensitivity)), ("Specificity", format_percent(point.specificity)),
            ("PPV", format_percent(point.ppv)), ("NPV", format_percent(point.npv))]


def headline(metrics: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value, explanation) for the numbers at the top of the dashboard."""
    lo, hi = metrics.get("auc_ci", (math.nan, math.nan))
    t = metrics.get("threshold", math.nan)
    num, pct = format_number, format_percent
    rows = [
        ("AUC", num(metrics.get("auc")), f"95% CI {num(lo)} to {num(hi)}; malignant vs rest"),
        ("Sensitivity", pct(metrics.get("sensitivity")), f"at the operating threshold {num(t)}"),
        ("Specificity", pct(metrics.get("specificity")), f"at the operating threshold {num(t)}"),
        ("Accuracy", pct(metrics.get("accuracy")), "malignant vs rest at P >= 0.5 (MedMNIST's ACC)"),
        ("Calibration error", num(metrics.get("ece")), f"ECE, {num(metrics.get('ece_uncalibrated'))} before"),
    ]
    return rows


def anchor_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """This model beside the published BreastMNIST anchors, best AUC first; this model's row is marked."""
    own = {"model": f"{metrics.get('model', 'this model')} (this model)", "auc": metrics.get("auc"),
           "accuracy": metrics.get("accuracy"), "source": f"{metrics.get('split', 'test')} split, this evaluation"}
    rows = [own, *({k: a.get(k) for k in ("model", "auc", "accuracy", "source")} for a in metrics.get("anchors", []))]
    return sorted(rows, key=lambda r: -(r["auc"] if isinstance(r["auc"], (int, float)) else -1.0))


# The localisation table's columns: key in metrics.json -> (header people read, what it means in one line).
LOCALIZATION_COLUMNS: dict[str, tuple[str, str]] = {
    "pointing_game": ("Peak inside the lesion",
                      ("share of test lesions where the heatmap's hottest point lies inside the radiologist's "
                       "outline (the pointing game)")),
    "energy_in_mask": ("Heat inside the lesion",
                       ("share of the heatmap's total heat that lies inside the outline, averaged over lesions "
                        "(energy in mask)")),
    "n": ("Lesions", "test images with a radiologist's lesion outline, each scored once"),
}
# What ``evaluate --localization`` made the heatmaps explain (metrics["localization"]["target"]).
LOCALIZATION_TARGETS = {
    "malignant": "the malignancy estimate (what raised P(malignant)), as the Diagnose page shows it",
    "predicted": "each image's top-scoring class (benign, malignant or normal), not specifically the malignancy "
                 "estimate the Diagnose page's heatmap explains",
    "label": "each image's true class (from the dataset's labels)",
}


def localization_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per CAM method and the centre-prior baseline: pointing game, energy in mask, n, default mark.

    ``metrics["localization"]`` also holds settings beside the methods ("default", "target", "explain"); only
    entries with scores are methods, so a settings record never becomes a row of Nones.
    """
    loc = metrics.get("localization") or {}
    default = loc.get("default")
    rows = []
    for method, scores in loc.items():
        if not isinstance(scores, Mapping) or "pointing_game" not in scores:  # not a method: the CAM settings
            continue
        label = "centre prior (baseline)" if method == "center_prior" else cam_label(method)
        rows.append({"method": label + (" (default)" if method == default else ""),
                     "pointing_game": scores.get("pointing_game"), "energy_in_mask": scores.get("energy_in_mask"),
                     "n": scores.get("n")})
    return rows


def localization_table(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """:func:`localization_rows` for people: readable headers (:data:`LOCALIZATION_COLUMNS`), percentages."""
    return [{"Heatmap method": r["method"],
             **{LOCALIZATION_COLUMNS[k][0]: format_percent(r[k]) for k in ("pointing_game", "energy_in_mask")},
             LOCALIZATION_COLUMNS["n"][0]: MISSING if r["n"] is None else str(r["n"])}
            for r in localization_rows(metrics)]


def localization_notes(metrics: Mapping[str, Any]) -> list[str]:
    """Markdown lines under the localisation table: which class the scored heatmaps explain, then each column's
    meaning. The heatmap shows where the model looked, not a lesion outline; these scores say how often the two
    agree on the radiologists' outlines."""
    target = (metrics.get("localization") or {}).get("target")
    if target is None:
        explained = "The evaluation did not record which class the scored heatmaps explain."
    else:
        what = LOCALIZATION_TARGETS.get(target, f"the class {target!r}")
        explained = f"The heatmaps scored here explain {what}."
    return [explained, *(f"**{header}**: {meaning}." for header, meaning in LOCALIZATION_COLUMNS.values())]


def card_config(model_dir: str | Path) -> dict[str, Any]:
    """The training config recorded in the model folder's card, or {} when the card cannot be read (the page
    then explains the training curves without the recipe's details)."""
    try:
        return dict(ModelCard.load(model_dir).config or {})
    except MedAppError:
        return {}


def training_note(history: Mapping[str, Any] | None, config: Mapping[str, Any] | None) -> str:
    """Why the training curves draw the training and the validation loss in separate panels, from the training
    config (the card's ``config``) and the columns ``history.csv`` holds."""
    config = config or {}
    parts = ["on augmented images"] if config.get("augment") else []
    if config.get("label_smoothing"):
        parts.append(f"with label smoothing {config['label_smoothing']:g}")
    if config.get("lesion_weight") and history and "train_lesion_loss" in history:
        parts.append(f"plus the lesion-mask loss (weight {config['lesion_weight']:g}, BCE + Dice)")
    if (config.get("model_args") or {}).get("dropout"):
        parts.append("with dropout on")
    how = f" ({', '.join(parts)})" if parts else ""
    return (f"The training loss is the objective the optimiser minimised{how}; the validation loss is plain "
            "cross-entropy on unaugmented validation images. They measure different things, so they are drawn in "
            "separate panels: read each for its trend, not one against the other.")


def evaluation_sentence(label: str, metrics: Mapping[str, Any]) -> str:
    """One held-out evaluation in words, for the Model card page."""
    lo, hi = metrics.get("auc_ci", (math.nan, math.nan))
    num, pct = format_number, format_percent
    return (f"On the {label} (n={metrics.get('n', '?')}, {metrics.get('auc_definition', 'malignant vs rest')}): "
            f"AUC {num(metrics.get('auc'))} (95% CI {num(lo)}-{num(hi)}), accuracy {pct(metrics.get('accuracy'))} "
            f"at P >= 0.5, sensitivity {pct(metrics.get('sensitivity'))} and specificity "
            f"{pct(metrics.get('specificity'))} at the operating threshold, calibration error (ECE) "
            f"{num(metrics.get('ece'))}.")


def card_page_sections(card: ModelCard, model_dir: str | Path | None) -> list[tuple[str, str]]:
    """The Model card page: :func:`card_sections` with every held-out test evaluation in the model folder."""
    evaluations = held_out_evaluations(model_dir) if model_dir is not None else {}
    return card_sections(card, {label: load_metrics(model_dir, f) for label, f in evaluations.items()})


def card_sections(card: ModelCard, evaluations: Mapping[str, Mapping[str, Any]] | None = None
                  ) -> list[tuple[str, str]]:
    """(title, markdown) sections of the Model card page, from the card and its test evaluations (label ->
    metrics dict; default: the card's own summary of the BUSI test split)."""
    if not evaluations and (card.metrics or {}).get("busi_test"):  # the summary evaluate --update-model keeps
        evaluations = {DATASET_LABELS["busi"]: card.metrics["busi_test"]}
    if evaluations:
        evaluation = " ".join(evaluation_sentence(label, m) for label, m in evaluations.items()
                              if m and "auc" in m) + " The Model performance page shows the curves."
    else:
        evaluation = "Not evaluated yet: run `python -m medapp evaluate --update-model`."
    scope_rule = (card.scope or {}).get("rule", "")
    sites = ([("Sites and scanners seen in training", sites_text(card))] if card.training_sites else [])
    return [
        ("Model", f"**{card.name}** version {card.version}: {card.architecture}, input {card.input.size} px "
                  f"({card.input.resize}), classes {', '.join(card.class_names)}. Weights SHA-256 "
                  f"`{card.weights_sha256 or 'not recorded'}`."),
        ("Intended use", card.intended_use or INTENDED_USE),
        ("Not intended for", card.out_of_scope_use or OUT_OF_SCOPE_USE),
        ("Training data and its known flaws", (card.training_data + "\n\n" if card.training_data else "")
         + known_flaws(card)),
        *sites,
        ("Evaluation", evaluation),
        ("Limits and how the app guards them",
         f"- Probabilities are temperature-calibrated (T = {card.temperature:.2f}) on the validation split.\n"
         f"- Operating threshold {card.threshold:.3f}: {card.threshold_rule or 'set on validation'}.\n"
         f"- A scope gate refuses to report on images that do not look like breast ultrasound"
         f"{f' ({scope_rule})' if scope_rule else ''}; image-quality checks flag tiny, blank or saturated images and "
         "colour Doppler or elastography frames.\n"
         "- The heatmap shows where the model looked, not where the lesion is; it can be wrong when the model is."),
    ]


def sites_text(card: ModelCard) -> str:
    """Markdown: the sites and scanners in the card's training data, and the warning that goes with them."""
    lines = []
    for site in card.training_sites:
        devices = ", ".join(f"{d} ({n})" for d, n in sorted(site["devices"].items()))
        lines.append(f"- **{site['site']}** ({site['dataset']}): {site['train']} training and {site['val']} "
                     f"validation images; scanners: {devices}")
    lines.append("- Other hospitals, scanners and presets have not been seen: the operating threshold and the "
                 "calibration may not carry to them. Validate on local cases before relying on the model.")
    return "\n".join(lines)
