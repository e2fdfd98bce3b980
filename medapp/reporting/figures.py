"""The charts: figures of a metrics dict for the dashboard, the model README and the model folder's plots/.

Built on :class:`matplotlib.figure.Figure` objects, never ``pyplot``, because pyplot's global state is not safe
across the app's concurrent sessions. The README's plots are these same figures, so the README and the app show
the same thing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..formatting import format_number
from .dashboard import localization_rows, operating_point_at

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
                label=f"AUC {format_number(metrics.get('auc'))} (95% CI {format_number(lo)}-{format_number(hi)})")
        ax.plot([0, 1], [0, 1], ":", color=_MUTED, label="chance")
        if threshold is not None:
            op = operating_point_at(metrics, threshold)
            ax.plot([1 - op.specificity], [op.sensitivity], "o", color=_SECOND, ms=9,
                    label=f"threshold {threshold:.2f}")
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
                        label=f"{'after' if key == 'calibrated' else 'before'} calibration (ECE {format_number(ece)})")
        _finish_reliability(ax, "Reliability")
    return fig


def _finish_reliability(ax: Axes, title: str) -> None:
    """The diagonal, axes and legend every reliability plot shares."""
    ax.plot([0, 1], [0, 1], ":", color=_MUTED, label="perfect")
    ax.set(xlabel="predicted P(malignant)", ylabel="observed malignant rate", xlim=(0, 1), ylim=(0, 1.02),
           title=title)
    ax.legend(loc="upper left")


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


def write_plots(metrics: dict[str, Any], out_dir: Path, prefix: str) -> list[Path]:
    """``{prefix}_{roc,pr,reliability}.png`` and, for 3-class results, ``{prefix}_confusion.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {"roc": roc_figure(metrics, metrics.get("threshold")), "pr": pr_figure(metrics),
               "reliability": reliability_figure(metrics)}
    if "confusion_matrix" in metrics:
        figures["confusion"] = confusion_figure(metrics)
    paths = []
    for name, fig in figures.items():
        path = out_dir / f"{prefix}_{name}.png"
        path.write_bytes(figure_png(fig))
        paths.append(path)
    return paths


def site_reliability_figure(report: Mapping[str, Any]) -> Figure:
    """Local validation: reliability of the shipped calibration and, when fitted, the site profile's, on the
    cases the report judges them on."""
    with matplotlib.rc_context(_STYLE):
        fig, ax = _figure()
        rows = [("shipped calibration", "o--", _MUTED, report["shipped"]["metrics"])]
        if report.get("profile") and "metrics" in report["profile"]:
            rows.append((f"site profile {report['profile']['profile']['name']}", "o-", _ACCENT,
                         report["profile"]["metrics"]))
        for name, style, colour, m in rows:
            rel = m["reliability"]
            ax.plot(rel["confidence"], rel["accuracy"], style, color=colour,
                    label=f"{name} (ECE {format_number(m['ece'])})")
        _finish_reliability(ax, "Reliability at this site")
    return fig
