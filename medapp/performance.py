"""What the Model performance dashboard shows, computed from the files ``evaluate`` and ``train`` wrote.

The dashboard only plots: every number here comes from ``metrics.json`` (see :mod:`medapp.evaluate`) or
``history.csv``; nothing is re-scored. Figures are built on :class:`matplotlib.figure.Figure` objects, never
``pyplot``, because pyplot's global state is not safe across the app's concurrent sessions.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .card import BUSI_KNOWN_FLAWS, INTENDED_USE, MALIGNANT, METRICS_FILE, OUT_OF_SCOPE_USE, ModelCard
from .metrics import operating_point

HISTORY_FILE = "history.csv"
# Colours for the dark app theme (.streamlit/config.toml): figure background matches the page.
_STYLE = {
    "figure.facecolor": "#0e1117", "axes.facecolor": "#0e1117", "savefig.facecolor": "#0e1117",
    "axes.edgecolor": "#8b949e", "axes.labelcolor": "#e6edf3", "text.color": "#e6edf3",
    "xtick.color": "#c9d1d9", "ytick.color": "#c9d1d9", "grid.color": "#30363d", "axes.grid": True,
    "legend.facecolor": "#161b22", "legend.edgecolor": "#30363d", "font.size": 10,
}  # fmt: skip
_ACCENT, _SECOND, _MUTED = "#58a6ff", "#f0883e", "#8b949e"

# Every chart the dashboard draws, in page order: key -> title (the page shows one image per key).
CHARTS: dict[str, str] = {
    "roc": "ROC curve",
    "pr": "Precision-recall curve",
    "confusion": "Confusion matrix",
    "reliability": "Reliability diagram",
    "localization": "Localisation per CAM method",
    "training": "Training curves",
}


def load_metrics(model_dir: str | Path | None) -> dict[str, Any] | None:
    """``metrics.json`` of a model folder as a dict (NaN allowed, as ``evaluate`` writes it), or None if absent."""
    path = Path(model_dir or "") / METRICS_FILE
    if model_dir is None or not path.is_file():
        return None
    return json.loads(path.read_text())


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


@dataclass(frozen=True)
class OperatingPoint:
    """Malignant-vs-rest counts and rates when P(malignant) >= ``threshold`` flags a case (NaN where undefined)."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @staticmethod
    def _ratio(a: int, b: int) -> float:
        return a / b if b else math.nan

    @property
    def sensitivity(self) -> float:
        return self._ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        return self._ratio(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float:
        return self._ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        return self._ratio(self.tn, self.tn + self.fn)

    def rates(self) -> list[tuple[str, str]]:
        """(label, percentage or "n/a") for sensitivity, specificity, PPV and NPV, as the explorer shows them."""
        return [("Sensitivity", _pct(self.sensitivity)), ("Specificity", _pct(self.specificity)),
                ("PPV", _pct(self.ppv)), ("NPV", _pct(self.npv))]


def operating_point_at(metrics: Mapping[str, Any], threshold: float) -> OperatingPoint:
    """Counts and rates of "flag when P(malignant) >= ``threshold``" on the evaluated split.

    Exact from the stored per-image ``predictions`` when ``metrics.json`` has them (it does when ``evaluate``
    wrote it); otherwise from the ROC points and class totals (:func:`operating_point_from_roc`).
    """
    predictions = metrics.get("predictions")
    if not predictions:
        return operating_point_from_roc(metrics, threshold)
    counts = operating_point([p["label"] == MALIGNANT for p in predictions],
                             [p["p_malignant"] for p in predictions], threshold)
    return OperatingPoint(threshold=float(threshold), **{k: counts[k] for k in ("tp", "fp", "tn", "fn")})


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


def headline(metrics: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value, explanation) for the numbers at the top of the dashboard."""
    lo, hi = metrics.get("auc_ci", (math.nan, math.nan))
    t = metrics.get("threshold", math.nan)
    rows = [
        ("AUC", _fmt(metrics.get("auc")), f"95% CI {_fmt(lo)} to {_fmt(hi)}; malignant vs rest"),
        ("Sensitivity", _pct(metrics.get("sensitivity")), f"at the operating threshold {_fmt(t)}"),
        ("Specificity", _pct(metrics.get("specificity")), f"at the operating threshold {_fmt(t)}"),
        ("Accuracy", _pct(metrics.get("accuracy")), "malignant vs rest at P >= 0.5 (MedMNIST's ACC)"),
        ("Calibration error", _fmt(metrics.get("ece")), f"ECE, {_fmt(metrics.get('ece_uncalibrated'))} before"),
    ]
    return rows


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def anchor_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """This model beside the published BreastMNIST anchors, best AUC first; this model's row is marked."""
    own = {"model": f"{metrics.get('model', 'this model')} (this model)", "auc": metrics.get("auc"),
           "accuracy": metrics.get("accuracy"), "source": f"{metrics.get('split', 'test')} split, this evaluation"}
    rows = [own, *({k: a.get(k) for k in ("model", "auc", "accuracy", "source")} for a in metrics.get("anchors", []))]
    return sorted(rows, key=lambda r: -(r["auc"] if isinstance(r["auc"], (int, float)) else -1.0))


def localization_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per CAM method and the centre-prior baseline: pointing game, energy in mask, n, default mark."""
    loc = metrics.get("localization") or {}
    default = loc.get("default")
    rows = []
    for method, scores in loc.items():
        if not isinstance(scores, Mapping):
            continue
        label = "centre prior (baseline)" if method == "center_prior" else method
        rows.append({"method": label + (" (default)" if method == default else ""),
                     "pointing_game": scores.get("pointing_game"), "energy_in_mask": scores.get("energy_in_mask"),
                     "n": scores.get("n")})
    return rows


def available_charts(metrics: Mapping[str, Any], history: Mapping[str, Sequence[float]] | None) -> list[str]:
    """Keys of :data:`CHARTS` that the files hold data for (e.g. no localisation before ``--localization``)."""
    keys = ["roc", "pr"]
    if metrics.get("confusion_matrix"):
        keys.append("confusion")
    if metrics.get("curves", {}).get("reliability"):
        keys.append("reliability")
    if localization_rows(metrics):
        keys.append("localization")
    if history:
        keys.append("training")
    return keys


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _figure(figsize: tuple[float, float] = (4.6, 3.8)) -> tuple[Figure, Any]:
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=figsize)
        ax = fig.add_subplot()
    return fig, ax


def roc_figure(metrics: Mapping[str, Any], threshold: float | None = None) -> Figure:
    """ROC with AUC and CI in the legend; with ``threshold``, the operating point at it is marked."""
    with matplotlib.rc_context(_STYLE):
        fig, ax = _figure()
        roc = metrics["curves"]["roc"]
        lo, hi = metrics.get("auc_ci", (math.nan, math.nan))
        ax.plot(roc["fpr"], roc["tpr"], color=_ACCENT, lw=2,
                label=f"AUC {_fmt(metrics.get('auc'))} (95% CI {_fmt(lo)}-{_fmt(hi)})")
        ax.plot([0, 1], [0, 1], ":", color=_MUTED, label="chance")
        if threshold is not None:
            op = operating_point_at(metrics, threshold)
            ax.plot([1 - op.specificity], [op.sensitivity], "o", color=_SECOND, ms=9, label=f"threshold {threshold:.2f}")
        ax.set(xlabel="1 - specificity (false-positive rate)", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.02),
               title="ROC, malignant vs rest")
        ax.legend(loc="lower right")
    return fig


def pr_figure(metrics: Mapping[str, Any]) -> Figure:
    with matplotlib.rc_context(_STYLE):
        fig, ax = _figure()
        pr = metrics["curves"]["pr"]
        ax.plot(pr["recall"], pr["precision"], color=_ACCENT, lw=2, label="model")
        prevalence = metrics["n_positive"] / max(1, metrics["n_positive"] + metrics["n_negative"])
        ax.axhline(prevalence, ls=":", color=_MUTED, label=f"prevalence {prevalence:.2f}")
        ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", xlim=(0, 1), ylim=(0, 1.02),
               title="Precision-recall, malignant vs rest")
        ax.legend(loc="lower left")
    return fig


def confusion_figure(metrics: Mapping[str, Any]) -> Figure:
    with matplotlib.rc_context(_STYLE):
        fig, ax = _figure((4.4, 3.8))
        cm = np.asarray(metrics["confusion_matrix"])
        names = list(metrics.get("class_names") or range(len(cm)))
        ax.imshow(cm, cmap="Blues")
        ax.grid(False)
        ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
               xlabel="predicted", ylabel="true", title="Confusion matrix (3 classes)")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    return fig


def reliability_figure(metrics: Mapping[str, Any]) -> Figure:
    with matplotlib.rc_context(_STYLE):
        fig, ax = _figure()
        rel = metrics["curves"]["reliability"]
        for key, style, colour, ece in (("uncalibrated", "o--", _MUTED, metrics.get("ece_uncalibrated")),
                                        ("calibrated", "o-", _ACCENT, metrics.get("ece"))):
            if key in rel:
                ax.plot(rel[key]["confidence"], rel[key]["accuracy"], style, color=colour,
                        label=f"{'after' if key == 'calibrated' else 'before'} calibration (ECE {_fmt(ece)})")
        ax.plot([0, 1], [0, 1], ":", color=_MUTED, label="perfect")
        ax.set(xlabel="predicted P(malignant)", ylabel="observed malignant rate", xlim=(0, 1), ylim=(0, 1.02),
               title="Reliability")
        ax.legend(loc="upper left")
    return fig


def localization_figure(metrics: Mapping[str, Any]) -> Figure:
    with matplotlib.rc_context(_STYLE):
        rows = localization_rows(metrics)
        fig, ax = _figure((5.2, 3.8))
        y = np.arange(len(rows))
        ax.barh(y - 0.2, [r["pointing_game"] or 0 for r in rows], height=0.4, color=_ACCENT, label="pointing game")
        ax.barh(y + 0.2, [r["energy_in_mask"] or 0 for r in rows], height=0.4, color=_SECOND, label="energy in mask")
        ax.set(yticks=y, yticklabels=[r["method"] for r in rows], xlim=(0, 1), xlabel="score (higher is better)",
               title="Where the heatmap lands on test lesions")
        ax.invert_yaxis()
        ax.legend(loc="lower right")
    return fig


def training_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """Loss (top) and validation scores (bottom) per epoch, sized like the other charts."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(4.6, 3.8))
        loss_ax, score_ax = fig.subplots(2, 1, sharex=True)
        epoch = history.get("epoch") or list(range(1, len(next(iter(history.values()))) + 1))
        for key, colour in (("train_loss", _ACCENT), ("val_loss", _SECOND)):
            if key in history:
                loss_ax.plot(epoch, history[key], color=colour, label=key.replace("_", " "))
        loss_ax.set(ylabel="loss", title="Training curves")
        loss_ax.legend(fontsize=8)
        for key, colour in (("val_auc", _ACCENT), ("val_accuracy_3class", _SECOND)):
            if key in history:
                score_ax.plot(epoch, history[key], color=colour, label=key.replace("_", " "))
        score_ax.set(xlabel="epoch", ylabel="validation")
        score_ax.legend(fontsize=8)
    return fig


def chart_figure(key: str, metrics: Mapping[str, Any], history: Mapping[str, Sequence[float]] | None) -> Figure:
    """The figure for one :data:`CHARTS` key."""
    builders = {"roc": lambda: roc_figure(metrics), "pr": lambda: pr_figure(metrics),
                "confusion": lambda: confusion_figure(metrics), "reliability": lambda: reliability_figure(metrics),
                "localization": lambda: localization_figure(metrics), "training": lambda: training_figure(history)}
    if key not in builders:
        raise ValueError(f"unknown chart {key!r}; choose one of: {', '.join(builders)}")
    return builders[key]()


def render_charts(metrics: Mapping[str, Any], history: Mapping[str, Sequence[float]] | None) -> dict[str, bytes]:
    """PNG bytes of every available chart, keyed as :data:`CHARTS` (what the dashboard caches and shows)."""
    return {key: figure_png(chart_figure(key, metrics, history)) for key in available_charts(metrics, history)}


def card_sections(card: ModelCard, metrics: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """(title, markdown) sections of the Model card page, from the card (and ``metrics.json`` when given)."""
    metrics = metrics or card.metrics or {}
    if "auc" in metrics:
        lo, hi = metrics.get("auc_ci", (math.nan, math.nan))
        evaluation = (f"On the held-out test split (n={metrics.get('n', '?')}): AUC {_fmt(metrics.get('auc'))} "
                      f"(95% CI {_fmt(lo)}-{_fmt(hi)}), accuracy {_pct(metrics.get('accuracy'))} at P >= 0.5, "
                      f"sensitivity {_pct(metrics.get('sensitivity'))} and specificity "
                      f"{_pct(metrics.get('specificity'))} at the operating threshold, calibration error (ECE) "
                      f"{_fmt(metrics.get('ece'))}. The Model performance page shows the curves.")
    else:
        evaluation = "Not evaluated yet: run `python -m medapp evaluate`."
    scope_rule = (card.scope or {}).get("rule", "")
    return [
        ("Model", f"**{card.name}** version {card.version}: {card.architecture}, input {card.input.size} px "
                  f"({card.input.resize}), classes {', '.join(card.class_names)}. Weights SHA-256 "
                  f"`{card.weights_sha256 or 'not recorded'}`."),
        ("Intended use", card.intended_use or INTENDED_USE),
        ("Not intended for", card.out_of_scope_use or OUT_OF_SCOPE_USE),
        ("Training data and its known flaws", (card.training_data + "\n\n" if card.training_data else "")
         + BUSI_KNOWN_FLAWS),
        ("Evaluation", evaluation),
        ("Limits and how the app guards them",
         f"- Probabilities are temperature-calibrated (T = {card.temperature:.2f}) on the validation split.\n"
         f"- Operating threshold {card.threshold:.3f}: {card.threshold_rule or 'set on validation'}.\n"
         f"- A scope gate refuses to report on images unlike the training scans"
         f"{f' ({scope_rule})' if scope_rule else ''}; image-quality checks flag tiny, blank or saturated images.\n"
         "- The heatmap shows where the model looked, not where the lesion is; it can be wrong when the model is."),
    ]
