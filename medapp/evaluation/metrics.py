"""Metric functions over predicted probabilities (scikit-learn underneath), each one hand-checkable in tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_auc_score, roc_curve

ECE_BINS = 15


def binary_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when only one class is present (AUC is undefined there, not 0.5)."""
    y = np.asarray(is_positive, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, score))


def bootstrap_auc_ci(is_positive: np.ndarray, score: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95, groups: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC, resampling cases with replacement (one-class resamples skipped); with
    ``groups`` (each case's patient), whole patients are resampled, since one patient's images are not
    independent evidence."""
    return grouped_bootstrap_ci(lambda y, s: float(roc_auc_score(y, s)), is_positive, score, n_boot=n_boot,
                                seed=seed, level=level, groups=groups)


def grouped_bootstrap_ci(statistic: Callable[[np.ndarray, np.ndarray], float], is_positive: np.ndarray,
                         score: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                         groups: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(y, score)``, resampling cases (or whole ``groups``) with
    replacement; resamples holding one class only are skipped; (NaN, NaN) when every resample does."""
    y = np.asarray(is_positive, dtype=bool)
    s = np.asarray(score, dtype=np.float64)
    members: list[np.ndarray] = []
    if groups is not None and len(y):
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot if len(y) else 0):
        idx = (rng.integers(0, len(y), len(y)) if groups is None
               else np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))]))
        if y[idx].all() or not y[idx].any():
            continue
        values.append(statistic(y[idx], s[idx]))
    values = [v for v in values if np.isfinite(v)]
    if not values:  # one class only (e.g. a scanner with no cancers in the split): undefined
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class OperatingPoint:
    """Malignant-vs-rest counts when ``score >= threshold`` flags a case, and the rates they give (NaN where
    undefined: PPV when nothing is flagged, sensitivity without positives)."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @staticmethod
    def _ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

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

    @property
    def accuracy(self) -> float:
        return self._ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn)


def operating_point(is_positive: np.ndarray, score: np.ndarray, threshold: float) -> OperatingPoint:
    """Counts and rates of ``score >= threshold`` on these cases."""
    y = np.asarray(is_positive, dtype=bool)
    flag = np.asarray(score) >= threshold
    return OperatingPoint(threshold=float(threshold), tp=int((flag & y).sum()), fp=int((flag & ~y).sum()),
                          tn=int((~flag & ~y).sum()), fn=int((~flag & y).sum()))


def reliability_bins(is_positive: np.ndarray, prob: np.ndarray, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Equal-width bins over [0, 1]: mean predicted probability, observed frequency and count per non-empty bin."""
    y = np.asarray(is_positive, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    conf, acc, count = [], [], []
    for b in range(bins):
        mask = index == b
        if mask.any():
            conf.append(float(p[mask].mean()))
            acc.append(float(y[mask].mean()))
            count.append(int(mask.sum()))
    return {"confidence": conf, "accuracy": acc, "count": count}


def equal_count_bins(is_positive: np.ndarray, prob: np.ndarray, bins: int) -> dict[str, list[float]]:
    """Reliability on bins of (nearly) equal size: the images sorted by ``prob`` and cut into ``bins`` runs whose
    sizes differ by at most one (fewer bins when there are fewer images).

    Equal-width bins leave most bins nearly empty when predictions crowd near 0 and 1, and a bin of one or two
    images draws a zig-zag that is noise; equal counts give every point the same weight of evidence. Returns, per
    bin, the mean ``prob`` ("confidence"), the observed positive rate ("accuracy"), "count", the lowest and highest
    ``prob`` in it ("low", "high") and the Wilson 95% interval of the observed rate ("ci_low", "ci_high").
    """
    y = np.asarray(is_positive, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    keys = ("confidence", "accuracy", "count", "low", "high", "ci_low", "ci_high")
    out: dict[str, list[float]] = {k: [] for k in keys}
    for run in np.array_split(order, max(1, min(int(bins), len(p)))):
        if not run.size:
            continue
        k, n = float(y[run].sum()), int(run.size)
        lo, hi = wilson_interval(k, n)
        for key, value in zip(keys, (float(p[run].mean()), k / n, n, float(p[run].min()), float(p[run].max()),
                                     lo, hi), strict=True):
            out[key].append(value)
    return out


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927; Brown, Cai & DasGupta 2001): unlike the normal
    approximation it stays inside [0, 1] and is not zero-width at 0 of n or n of n. (nan, nan) when ``n`` is 0."""
    if n <= 0:
        return math.nan, math.nan
    rate, z2 = successes / n, z * z
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def expected_calibration_error(is_positive: np.ndarray, prob: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of a binary probability (Naeini et al. 2015): sum over bins of |mean p - observed rate| * share."""
    r = reliability_bins(is_positive, prob, bins)
    n = sum(r["count"])
    return float(sum(c * abs(p - a) for p, a, c in zip(r["confidence"], r["accuracy"], r["count"], strict=True)) / n)


def curve_points(is_positive: np.ndarray, score: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """ROC and PR curve points (thresholds clipped to [0, 1] for JSON: sklearn's first ROC threshold is inf)."""
    y = np.asarray(is_positive, dtype=bool)
    fpr, tpr, roc_t = roc_curve(y, score)
    precision, recall, pr_t = precision_recall_curve(y, score)
    return {
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": np.clip(roc_t, 0, 1).tolist()},
        "pr": {"precision": precision.tolist(), "recall": recall.tolist(), "thresholds": pr_t.tolist()},
    }


def multiclass_summary(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> dict[str, object]:
    """3-class accuracy (argmax), macro one-vs-rest AUC and the confusion matrix (rows true, columns predicted)."""
    y = np.asarray(labels)
    pred = probs.argmax(1)
    present = np.unique(y)
    macro = (float(roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=list(range(num_classes))))
             if len(present) == num_classes else float("nan"))
    return {
        "accuracy_3class": float((pred == y).mean()),
        "macro_auc_3class": macro,
        "confusion_matrix": confusion_matrix(y, pred, labels=list(range(num_classes))).tolist(),
    }
