"""PNG figures of a metrics dict for the README and model card (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write_plots(metrics: dict[str, Any], out_dir: Path, prefix: str) -> list[Path]:
    """ROC, precision-recall, reliability (before/after temperature) and, for 3 classes, the confusion matrix."""
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = metrics["curves"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    lo, hi = metrics["auc_ci"]
    axes[0].plot(curves["roc"]["fpr"], curves["roc"]["tpr"], label=f"AUC {metrics['auc']:.3f} [{lo:.3f}, {hi:.3f}]")
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, malignant vs rest")
    axes[0].legend(loc="lower right")
    axes[1].plot(curves["pr"]["recall"], curves["pr"]["precision"])
    axes[1].set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall")
    for key, style in (("uncalibrated", "o--"), ("calibrated", "o-")):
        r = curves["reliability"][key]
        ece = metrics["ece"] if key == "calibrated" else metrics["ece_uncalibrated"]
        axes[2].plot(r["confidence"], r["accuracy"], style, label=f"{key} (ECE {ece:.3f})")
    axes[2].plot([0, 1], [0, 1], ":", color="grey")
    axes[2].set(xlabel="predicted P(malignant)", ylabel="observed malignant rate", title="Reliability")
    axes[2].legend(loc="upper left")
    fig.suptitle(f"{metrics['model']} on {metrics['dataset']} {metrics['split']} (n={metrics['n']})")
    fig.tight_layout()
    paths = [out_dir / f"{prefix}_curves.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    if "confusion_matrix" in metrics:
        fig, ax = plt.subplots(figsize=(4.2, 3.8))
        cm = metrics["confusion_matrix"]
        ax.imshow(cm, cmap="Blues")
        names = metrics["class_names"]
        ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
               xlabel="predicted", ylabel="true", title="Confusion matrix (argmax)")
        for i, row in enumerate(cm):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center")
        fig.tight_layout()
        paths.append(out_dir / f"{prefix}_confusion.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths
