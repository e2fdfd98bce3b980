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

from ..evaluation.metrics import ECE_BINS, equal_count_bins
from ..formatting import format_number
from ..model.card import MALIGNANT
from .dashboard import LOCALIZATION_COLUMNS, localization_rows, operating_point_at

# Colours for the dark app theme (.streamlit/config.toml): figure background matches the page.
_STYLE = {
    "figure.facecolor": "#0e1117", "axes.facecolor": "#0e1117", "savefig.facecolor": "#0e1117",
    "axes.edgecolor": "#8b949e", "axes.labelcolor": "#e6edf3", "text.color": "#e6edf3",
    "xtick.color": "#c9d1d9", "ytick.color": "#c9d1d9", "grid.color": "#30363d", "axes.grid": True,
    "legend.facecolor": "#161b22", "legend.edgecolor": "#30363d", "font.size": 10,
}  # fmt: skip
_ACCENT, _SECOND, _MUTED, _GREEN, _PURPLE = "#58a6ff", "#f0883e", "#8b949e", "#3fb950", "#bc8cff"
# Reliability diagrams: equal-count bins of at least MIN_PER_BIN images, at most MAX_RELIABILITY_BINS of them; the
# count strip below in HISTOGRAM_BINS equal-width bins; stored equal-width bins under SMALL_BIN images drawn hollow.
MIN_PER_BIN, MAX_RELIABILITY_BINS, HISTOGRAM_BINS, SMALL_BIN = 20, 10, 20, 5

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
    """Observed malignant rate against predicted P(malignant), with how many images each point rests on.

    From the stored per-image predictions: bins of equal count (:func:`reliability_bin_count`), each point with
    its Wilson 95% interval, and a strip below with the images per 0.05 of P(malignant). Without predictions (an
    older metrics file): the stored equal-width bins, those under :data:`SMALL_BIN` images drawn hollow, with
    their counts. The legend sits above the plot, off the data.
    """
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(4.6, 4.6))
        ax, strip = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08})
        title = (f"Reliability, ECE {format_number(metrics.get('ece'))} "
                 f"(uncalibrated {format_number(metrics.get('ece_uncalibrated'))})")
        predictions = metrics.get("predictions")
        if predictions:
            y = np.array([p["label"] == MALIGNANT for p in predictions])
            prob = np.array([p["p_malignant"] for p in predictions], dtype=np.float64)
            bins = equal_count_bins(y, prob, reliability_bin_count(len(prob)))
            conf, acc = np.array(bins["confidence"]), np.array(bins["accuracy"])
            err = np.clip(np.vstack([acc - np.array(bins["ci_low"]), np.array(bins["ci_high"]) - acc]), 0, None)
            n_lo, n_hi = min(bins["count"]), max(bins["count"])
            sizes = f"{n_lo}" if n_lo == n_hi else f"{n_lo}-{n_hi}"
            ax.errorbar(conf, acc, yerr=err, fmt="o-", color=_ACCENT, ecolor=_ACCENT, elinewidth=1, capsize=2,
                        label=f"observed rate in {len(conf)} bins of {sizes} images, 95% CI")
            edges = np.linspace(0, 1, HISTOGRAM_BINS + 1)
            counts, _ = np.histogram(prob, bins=edges)
            strip.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=_MUTED, edgecolor="#0e1117")
            _label_counts(strip, edges[:-1] + np.diff(edges) / 2, counts)
        else:
            rel = metrics["curves"]["reliability"]["calibrated"]
            conf, acc, count = (np.asarray(rel[k], dtype=np.float64) for k in ("confidence", "accuracy", "count"))
            small = count < SMALL_BIN
            ax.plot(conf[~small], acc[~small], "o-", color=_ACCENT, label=f"bins of {SMALL_BIN} or more images")
            ax.plot(conf[small], acc[small], "o", mfc="none", color=_ACCENT, label=f"under {SMALL_BIN} images")
            left = np.floor(np.minimum(conf * ECE_BINS, ECE_BINS - 1)) / ECE_BINS  # the stored equal-width bins
            strip.bar(left, count, width=1 / ECE_BINS, align="edge", color=_MUTED, edgecolor="#0e1117")
            _label_counts(strip, left + 0.5 / ECE_BINS, count)
        strip.set(xlabel="predicted P(malignant)", ylabel="images", xlim=(0, 1))
        _finish_reliability(ax, title)
        ax.set_xlabel("")
    return fig


def _label_counts(strip: Axes, centres: np.ndarray, counts: np.ndarray) -> None:
    """Each non-empty bar's count above it, on a log-like scale so that 1 and 100 images both show."""
    strip.set_yscale("symlog", linthresh=10)
    strip.set_ylim(0, max(1.0, float(np.max(counts, initial=0))) * 4)  # room for the count over the tallest bar
    for x, c in zip(centres, counts, strict=True):
        if c:
            strip.annotate(f"{c:.0f}", (x, c), ha="center", va="bottom", fontsize=6, color=_MUTED)


def reliability_bin_count(n: int) -> int:
    """Bins for a reliability diagram of ``n`` images: at least :data:`MIN_PER_BIN` images each, at most
    :data:`MAX_RELIABILITY_BINS` bins (BUSI's 156 test images: 7 bins of 22-23)."""
    return max(1, min(MAX_RELIABILITY_BINS, n // MIN_PER_BIN))


def _finish_reliability(ax: Axes, title: str) -> None:
    """The diagonal, axes and legend every reliability plot shares; the legend above the axes, never on data."""
    ax.plot([0, 1], [0, 1], ":", color=_MUTED, label="perfect calibration")
    ax.set(xlabel="predicted P(malignant)", ylabel="observed malignant rate", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(title, pad=8 + 10 * len(ax.get_legend_handles_labels()[0]))
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=1, fontsize=7, frameon=False, borderaxespad=0.2)


def localization_figure(metrics: Mapping[str, Any]) -> Figure:
    with matplotlib.rc_context(_STYLE):
        rows = localization_rows(metrics)
        fig, ax = _figure((5.2, 3.8))
        y = np.arange(len(rows))
        for key, offset, colour in (("pointing_game", -0.2, _ACCENT), ("energy_in_mask", 0.2, _SECOND)):
            ax.barh(y + offset, [r[key] or 0 for r in rows], height=0.4, color=colour,
                    label=LOCALIZATION_COLUMNS[key][0].lower())
        ax.set(yticks=y, yticklabels=[r["method"] for r in rows], xlim=(0, 1), xlabel="share (higher is better)")
        ax.set_title("Where the heatmap lands on test lesions", pad=30)
        ax.invert_yaxis()
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=7, frameon=False, borderaxespad=0.2)
    return fig


def training_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """Per epoch, in three panels: the training objective, the validation loss, the validation scores.

    The training loss (augmented images, label smoothing, the lesion-mask term, dropout on) and the validation
    cross-entropy (plain, unaugmented) are different quantities, so they never share an axis
    (:func:`medapp.reporting.dashboard.training_note` says why on the page).
    """
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(4.6, 5.6))
        train_ax, val_ax, score_ax = fig.subplots(3, 1, sharex=True, gridspec_kw={"hspace": 0.7})
        epoch = history.get("epoch") or list(range(1, len(next(iter(history.values()))) + 1))
        sites = [k for k in history if k.startswith("val_auc_")]
        panels = (
            (train_ax, "Training objective", (("train_loss", _ACCENT, "-", "total"),
                                              ("train_lesion_loss", _SECOND, "-", "lesion-mask term"))),
            (val_ax, "Validation cross-entropy", (("val_loss", _ACCENT, "-", "unaugmented"),)),
            (score_ax, "Validation scores", (
                ("val_auc", _ACCENT, "-", "AUC, all sites"),
                *((k, colour, "-", f"AUC, {k.removeprefix('val_auc_')}")
                  for k, colour in zip(sites, (_SECOND, _GREEN, _PURPLE, _MUTED), strict=False)),
                ("val_accuracy_3class", _MUTED, "--", "3-class accuracy"))),
        )
        for ax, title, series in panels:
            for key, colour, style, label in series:
                if key in history:
                    ax.plot(epoch, history[key], style, color=colour, label=label, lw=1.5)
            ax.set_title(title, fontsize=9, loc="left", pad=4)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6.5, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False,
                          borderaxespad=0.1, handlelength=1.5, columnspacing=1.0)
        train_ax.set_ylabel("loss")
        val_ax.set_ylabel("loss")
        score_ax.set(xlabel="epoch", ylabel="score")
        fig.suptitle("Training curves (separate scales: not comparable)", fontsize=10, y=0.99)
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
