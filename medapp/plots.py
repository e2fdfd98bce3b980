"""PNG figures of a metrics dict for the README and the model card.

The figures are the dashboard's own (:mod:`medapp.performance`), so the README and the app show the same plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .performance import confusion_figure, figure_png, pr_figure, reliability_figure, roc_figure


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
