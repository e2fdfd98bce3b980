"""One lesion, several views: is combining the per-view P(malignant) better than one view? (issue 13, item 9).

Radiologists image a lesion in two orthogonal planes, and a model that sees only one may miss what the other
shows. :func:`~medapp.serving.lesion_estimate.combine_views` is the rule the app applies to a lesion the clinician
groups; :func:`view_table` measures, per lesion, a single view against each rule on a labelled set where lesions have several views (BUS-BRA:
two views of most lesions, one lesion per patient), so the rule is chosen on validation data, not assumed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..serving.lesion_estimate import RULES, combine_views
from .metrics import binary_auc, grouped_bootstrap_ci


def group_lesions(predictions: Sequence[dict[str, Any]], key: str = "patient") -> dict[str, list[dict[str, Any]]]:
    """Predictions grouped by lesion (``key`` names the lesion: BUS-BRA has one lesion per patient)."""
    lesions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in predictions:
        lesions[str(row[key])].append(row)
    return dict(lesions)


def view_table(lesions: dict[str, list[dict[str, Any]]], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per-lesion AUC (malignant vs benign) of one view against each rule, on lesions with two or more views.

    "one view" is the expected AUC when a single view is picked at random (the mean over both picks of the first
    and the second view, which are the only choices for two-view lesions); each rule's AUC comes with a lesion
    bootstrap CI and the CI of its difference from one view (paired: the same resampled lesions).
    """
    multi = {k: sorted(v, key=lambda r: str(r["image"])) for k, v in lesions.items() if len(v) >= 2}
    y = np.array([v[0]["label"] == "malignant" for v in multi.values()])
    per_view = np.array([[r["p_malignant"] for r in v[:2]] for v in multi.values()], dtype=np.float64)
    scores = {"first view": per_view[:, 0], "second view": per_view[:, 1]}
    scores |= {rule: np.array([combine_views([r["p_malignant"] for r in v], rule) for v in multi.values()])
               for rule in RULES}
    index = np.arange(len(y), dtype=np.float64)

    def one_view_auc(yy: np.ndarray, idx: np.ndarray) -> float:
        rows = idx.astype(int)
        return (binary_auc(yy, per_view[rows, 0]) + binary_auc(yy, per_view[rows, 1])) / 2

    table: dict[str, Any] = {"lesions": len(y), "malignant": int(y.sum()), "benign": int((~y).sum()),
                             "one view": {"auc": one_view_auc(y, index),
                                          "ci": grouped_bootstrap_ci(one_view_auc, y, index, n_boot=n_boot, seed=seed)}}
    for name, s in scores.items():
        def gain(yy: np.ndarray, idx: np.ndarray, s: np.ndarray = s) -> float:
            return binary_auc(yy, s[idx.astype(int)]) - one_view_auc(yy, idx)

        table[name] = {"auc": binary_auc(y, s),
                       "ci": grouped_bootstrap_ci(lambda yy, idx, s=s: binary_auc(yy, s[idx.astype(int)]), y, index,
                                                  n_boot=n_boot, seed=seed),
                       "gain_vs_one_view": gain(y, index),
                       "gain_ci": grouped_bootstrap_ci(gain, y, index, n_boot=n_boot, seed=seed)}
    return table
