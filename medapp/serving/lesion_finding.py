"""The lesion as the model outlines it: each outlined lesion's mask and measurements, in millimetres where the image
is calibrated, with the rule for which lesion the result is about.

The outline probability map comes from the decoder (:mod:`medapp.model.lesion_outline`) at the original image's
resolution; this module turns it into lesions (:func:`medapp.lesion.geometry.components`: connected regions above
a minimum size, the principal one first: the lesion the outline is most sure of, by summed probability), measures
each (:mod:`medapp.lesion.geometry`) and converts to millimetres only with the image's own calibration
(:mod:`medapp.lesion.calibration`). Every number here is computed from the model's outline, not measured by a
person; the page, the PDF and the JSON say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..intake.medical_image import MedicalImage
from ..lesion.calibration import PixelScale, area_mm2, length_mm, pixel_scale
from ..lesion.geometry import LesionGeometry, components, measure

OUTLINE_SOURCE = "computed from the model's outline of the lesion, not measured by a person"
NO_LESION_OUTLINED = "no lesion outlined: the model's outline found no region large enough to measure"


@dataclass(frozen=True)
class OutlinedLesion:
    """One outlined lesion: its (H, W) bool mask over the original image, geometry, and the pixel scale at it."""

    mask: np.ndarray
    geometry: LesionGeometry
    scale: PixelScale | None
    no_mm_reason: str

    @property
    def long_axis_mm(self) -> float | None:
        return length_mm(self.geometry.long_axis, self.scale) if self.scale else None

    @property
    def short_axis_mm(self) -> float | None:
        return length_mm(self.geometry.short_axis, self.scale) if self.scale else None

    @property
    def depth_mm(self) -> float | None:
        return self.geometry.depth_px * self.scale.row_mm if self.scale else None

    @property
    def area_mm2(self) -> float | None:
        return area_mm2(self.geometry.area_px, self.scale) if self.scale else None

    def to_dict(self) -> dict[str, Any]:
        """The ``lesion`` object of ``predict --json`` (mm fields null without a calibration, and why)."""
        g = self.geometry

        def mm(value: float | None) -> float | None:
            return None if value is None else round(value, 2)

        return {
            "area_px": int(g.area_px),
            "area_mm2": mm(self.area_mm2),
            "long_axis_px": round(g.long_axis.length_px, 2),
            "short_axis_px": round(g.short_axis.length_px, 2),
            "long_axis_mm": mm(self.long_axis_mm),
            "short_axis_mm": mm(self.short_axis_mm),
            "depth_px": round(g.depth_px, 2),
            "depth_mm": mm(self.depth_mm),
            "calibration": self.scale.source if self.scale else None,
            "mm_unavailable_reason": None if self.scale else self.no_mm_reason,
            **{k: v for k, v in g.to_dict().items() if k not in ("area_px", "depth_px")},
        }


@dataclass(frozen=True)
class LesionFinding:
    """The outlined lesions, principal first, and how sure the outline is (soft Dice of the probability map with
    the drawn outline: 1 when every pixel is clearly in or out, lower when the border is uncertain)."""

    lesions: tuple[OutlinedLesion, ...]
    confidence: float
    threshold: float

    @property
    def principal(self) -> OutlinedLesion:
        return self.lesions[0]

    @property
    def outline_mask(self) -> np.ndarray:
        """(H, W) bool union of every outlined lesion (what ``--mask-dir`` writes)."""
        out = np.zeros_like(self.principal.mask)
        for lesion in self.lesions:
            out |= lesion.mask
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**self.principal.to_dict(), "outline_confidence": round(self.confidence, 4),
                "outline_threshold": self.threshold, "source": OUTLINE_SOURCE,
                "principal_rule": "the lesion the outline is most sure of (largest summed outline probability)",
                "other_lesions": [lesion.to_dict() for lesion in self.lesions[1:]]}


def outline_confidence(probability: np.ndarray, mask: np.ndarray) -> float:
    """Soft Dice between the (H, W) probability map and the binary outline."""
    total = float(probability.sum() + mask.sum())
    return 2.0 * float(probability[mask].sum()) / total if total > 0 else 0.0


def find_lesions(probability: np.ndarray, threshold: float, image: MedicalImage) -> LesionFinding | None:
    """(H, W) outline probability over the original image -> the outlined lesions, or None when none is found."""
    masks = components(probability, threshold=threshold)
    if not masks:
        return None
    skin_row = float(image.scan_region[0]) if image.scan_region else 0.0
    lesions = []
    for mask in masks:
        geometry = measure(mask, skin_row=skin_row)
        scale, reason = pixel_scale(image, geometry.centroid)
        lesions.append(OutlinedLesion(mask, geometry, scale, reason))
    union = np.logical_or.reduce(masks)
    return LesionFinding(tuple(lesions), outline_confidence(probability, union), float(threshold))
