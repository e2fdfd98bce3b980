"""How well the model's lesion outline matches the radiologists' masks: overlap, boundary distance, and whether the
orientation and shape read from the outline agree with the same rules applied to the radiologists' mask.

Every mask here is (H, W) bool over the original image (the outline the app shows, at the image's resolution).

- Dice (Sorensen 1948) and IoU (Jaccard) of the outline with the union of the radiologists' masks.
- HD95: the 95th percentile of the symmetric surface distances (Huttenlocher et al. 1993; the robust form used by
  the Medical Segmentation Decathlon, Antonelli et al. 2022). Surface = boundary pixels (the mask minus its
  erosion); each boundary pixel of one mask is given its Euclidean distance to the other mask's nearest boundary
  pixel (``scipy.ndimage.distance_transform_edt`` of the complement of that boundary), both directions pooled.
  In pixels, or in mm when a pixel spacing is known (BUSI's and BUS-BRA's PNGs carry none).
- Conventions on a lesion image: no outline (empty prediction) is a miss: Dice 0, IoU 0, HD95 NaN, counted as
  ``missed``; HD95 is averaged over the outlined lesions only.
- Agreement: the principal outlined lesion's orientation and shape (:func:`medapp.lesion.geometry.measure`) against
  the same rules on one radiologist lesion (:data:`TRUTH_LESION_RULE`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..lesion.geometry import LesionGeometry, Orientation, Shape, components, measure
from ..serving.lesion_finding import LesionFinding

MISSED = "missed"  # the predicted column of a lesion the model drew no outline for
HD95_PERCENTILE = 95.0
TRUTH_LESION_RULE = (
    "the radiologists' masks are united and split into lesions by the rule the model's outline follows "
    "(lesion.geometry.components: 8-connected, holes filled, specks under 0.1% of the image or a tenth of the largest "
    "dropped); the lesion compared is the one overlapping the model's principal outline most, else the largest"
)
CATEGORIES: dict[str, tuple[str, ...]] = {"orientation": tuple(o.value for o in Orientation),
                                          "shape": tuple(s.value for s in Shape)}


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred).astype(bool, copy=False), np.asarray(truth).astype(bool, copy=False)
    if pred.ndim != 2 or pred.shape != truth.shape:
        raise ValueError(f"masks must be (H, W) of one shape; got prediction {pred.shape} and truth {truth.shape}")
    return pred, truth


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|P & T| / (|P| + |T|) in [0, 1] of two (H, W) bool masks; 1 when both are empty (nothing to find, none
    drawn)."""
    pred, truth = _check_pair(pred, truth)
    total = int(pred.sum()) + int(truth.sum())
    return 2.0 * int((pred & truth).sum()) / total if total else 1.0


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """|P & T| / |P | T| in [0, 1] of two (H, W) bool masks; 1 when both are empty."""
    pred, truth = _check_pair(pred, truth)
    union = int((pred | truth).sum())
    return int((pred & truth).sum()) / union if union else 1.0


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: the mask minus its erosion (cross element, so the boundary is 8-connected; pixels on the
    image edge count as boundary)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_distances(pred: np.ndarray, truth: np.ndarray,
                      spacing: tuple[float, float] | None = None) -> np.ndarray:
    """(N,) float64 symmetric surface distances: each boundary pixel of ``pred`` to ``truth``'s boundary, then each
    of ``truth``'s to ``pred``'s, via the Euclidean distance transform of the complement of the other boundary.
    ``spacing`` (row_mm, col_mm) gives mm; None gives pixels. Both masks must be non-empty."""
    pred, truth = _check_pair(pred, truth)
    if not pred.any() or not truth.any():
        raise ValueError("surface distances need two non-empty masks")
    surface_pred, surface_truth = _surface(pred), _surface(truth)
    sampling = None if spacing is None else tuple(float(s) for s in spacing)
    to_truth = ndimage.distance_transform_edt(~surface_truth, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~surface_pred, sampling=sampling)
    return np.concatenate([to_truth[surface_pred], to_pred[surface_truth]])


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float] | None = None) -> float:
    """95th percentile Hausdorff distance of two (H, W) bool masks (see :func:`surface_distances`), in pixels or in
    mm with ``spacing``; 0 when both are empty, NaN when exactly one is (a missed or spurious outline)."""
    pred, truth = _check_pair(pred, truth)
    if not pred.any() and not truth.any():
        return 0.0
    if not pred.any() or not truth.any():
        return float("nan")
    return float(np.percentile(surface_distances(pred, truth, spacing), HD95_PERCENTILE))


@dataclass(frozen=True)
class OutlineScore:
    """One lesion image's outline against the radiologists' mask: Dice and IoU in [0, 1], HD95 in pixels (NaN when
    missed)."""

    dice: float
    iou: float
    hd95_px: float
    missed: bool


def score_outline(pred: np.ndarray | None, truth: np.ndarray) -> OutlineScore:
    """``pred`` the (H, W) bool outline (None or empty: no outline, a miss), ``truth`` the non-empty union of the
    radiologists' masks."""
    truth = np.asarray(truth).astype(bool, copy=False)
    if not truth.any():
        raise ValueError("an outline is scored on a lesion image; the radiologists' mask is empty")
    if pred is None or not np.asarray(pred).any():
        return OutlineScore(dice=0.0, iou=0.0, hd95_px=float("nan"), missed=True)
    return OutlineScore(dice=dice(pred, truth), iou=iou(pred, truth), hd95_px=hd95(pred, truth), missed=False)


def _stat(values: list[float], how: Any) -> float:
    return float(how(values)) if values else float("nan")


def summarize_outlines(scores: Sequence[OutlineScore]) -> dict[str, Any]:
    """Mean and median Dice and IoU over every scored lesion (a miss counts 0), HD95 over the outlined ones, and how
    many were missed (no outline)."""
    outlined = [s.hd95_px for s in scores if not s.missed]
    return {"n": len(scores),
            "dice_mean": _stat([s.dice for s in scores], np.mean),
            "dice_median": _stat([s.dice for s in scores], np.median),
            "iou_mean": _stat([s.iou for s in scores], np.mean),
            "iou_median": _stat([s.iou for s in scores], np.median),
            "hd95_mean_px": _stat(outlined, np.mean),
            "hd95_median_px": _stat(outlined, np.median),
            "n_outlined": len(outlined),
            "missed": len(scores) - len(outlined)}


def truth_lesion(truth: np.ndarray, principal: np.ndarray | None) -> np.ndarray:
    """The radiologist lesion the principal outline is compared with (:data:`TRUTH_LESION_RULE`): (H, W) bool.

    A lesion smaller than the components' size floor is still a lesion the radiologist drew: when nothing passes
    the floor, every drawn region is a candidate.
    """
    truth = np.asarray(truth).astype(bool, copy=False)
    if not truth.any():
        raise ValueError("the radiologists' mask is empty: there is no lesion to compare with")
    candidates = components(truth) or components(truth, min_area_px=1)
    if principal is None or len(candidates) == 1:
        return candidates[0]
    overlaps = [int((c & principal).sum()) for c in candidates]
    best = int(np.argmax(overlaps))  # first of ties: candidates are largest first
    return candidates[best] if overlaps[best] > 0 else candidates[0]


@dataclass(frozen=True)
class LesionPair:
    """The radiologist lesion's geometry and the principal outline's (None: no outline, a miss)."""

    truth: LesionGeometry
    predicted: LesionGeometry | None


def pair_lesion(principal: np.ndarray | None, truth: np.ndarray,
                predicted: LesionGeometry | None = None) -> LesionPair:
    """Measure the radiologist lesion matched to ``principal`` (the principal outlined lesion's (H, W) bool mask, or
    None when the model drew none). ``predicted`` is the principal's geometry when already measured (the
    Predictor's), else it is measured here."""
    if principal is not None and not np.asarray(principal).any():
        principal = None
    matched = measure(truth_lesion(truth, principal))
    if principal is None:
        return LesionPair(matched, None)
    return LesionPair(matched, predicted if predicted is not None else measure(principal))


def agreement(pairs: Sequence[LesionPair]) -> dict[str, Any]:
    """Confusion tables ``{truth: {predicted: count}}`` of orientation and shape (a ``missed`` column for lesions
    without an outline) and the share that agree: ``agreement`` over the outlined lesions,
    ``agreement_counting_missed`` over all (a miss counts as a disagreement), and Cohen's kappa of the outlined ones."""
    outlined = [p for p in pairs if p.predicted is not None]
    out: dict[str, Any] = {"n": len(pairs), "n_outlined": len(outlined), "missed": len(pairs) - len(outlined),
                           "truth_rule": TRUTH_LESION_RULE}
    for name, values in CATEGORIES.items():
        table = {t: {p: 0 for p in (*values, MISSED)} for t in values}
        for pair in pairs:
            truth = str(getattr(pair.truth, name).value)
            table[truth][MISSED if pair.predicted is None else str(getattr(pair.predicted, name).value)] += 1
        agree = sum(table[v][v] for v in values)
        out[name] = {"confusion": table,
                     "agreement": agree / len(outlined) if outlined else float("nan"),
                     "agreement_counting_missed": agree / len(pairs) if pairs else float("nan"),
                     "kappa": cohen_kappa(table, values)}
    return out


def cohen_kappa(table: dict[str, dict[str, int]], values: Sequence[str]) -> float:
    """Cohen's kappa (1960) of the outlined lesions' table: agreement beyond what the two sides' category rates give
    by chance (most lesions are parallel, so raw agreement on orientation is high by base rate alone). NaN when
    undefined (no lesions, or chance agreement 1)."""
    counts = np.array([[table[t][p] for p in values] for t in values], dtype=np.float64)
    n = counts.sum()
    if n == 0:
        return float("nan")
    observed = np.trace(counts) / n
    chance = float((counts.sum(axis=1) @ counts.sum(axis=0)) / n**2)
    return float((observed - chance) / (1.0 - chance)) if chance < 1.0 else float("nan")


@dataclass(frozen=True)
class OutlineCase:
    """One lesion image as the app showed it: ``out_of_scope`` (no outline given, Dice counted 0), the outline's
    score, and the orientation/shape pair (None when out of scope)."""

    score: OutlineScore
    pair: LesionPair | None
    out_of_scope: bool


def score_case(finding: LesionFinding | None, truth: np.ndarray, in_scope: bool) -> OutlineCase:
    """A lesion image's Predictor result (``Prediction.lesion``, ``in_scope``) against the radiologists' union
    ``truth``: Dice/IoU/HD95 of the union outline, the principal lesion's orientation and shape."""
    if not in_scope:
        return OutlineCase(score_outline(None, truth), None, out_of_scope=True)
    if finding is None:
        return OutlineCase(score_outline(None, truth), pair_lesion(None, truth), out_of_scope=False)
    principal = finding.principal
    return OutlineCase(score_outline(finding.outline_mask, truth),
                       pair_lesion(principal.mask, truth, principal.geometry), out_of_scope=False)


def outline_report(cases: Sequence[OutlineCase]) -> dict[str, Any]:
    """The outline section of one set of lesion images: Dice/IoU/HD95 over all of them (``all_lesion_images``,
    out-of-scope ones counted as missed with Dice 0) and over those in the model's scope (``in_scope``), how many
    were out of scope, and the orientation/shape agreement on the in-scope ones."""
    in_scope = [c for c in cases if not c.out_of_scope]
    return {"n_lesion_images": len(cases),
            "outline_skipped_out_of_scope": len(cases) - len(in_scope),
            "all_lesion_images": summarize_outlines([c.score for c in cases]),
            "in_scope": summarize_outlines([c.score for c in in_scope]),
            "agreement": agreement([c.pair for c in in_scope if c.pair is not None])}


__all__ = ["MISSED", "TRUTH_LESION_RULE", "LesionPair", "OutlineCase", "OutlineScore", "agreement", "cohen_kappa", "dice", "hd95",
           "iou", "outline_report", "pair_lesion", "score_case", "score_outline", "summarize_outlines",
           "surface_distances", "truth_lesion"]
