"""Millimetres only when the image says so, never guessed.

An ultrasound DICOM states the physical size of its pixels per region of the frame (Sequence of Ultrasound Regions,
PS3.3 C.8.5.5: PhysicalDeltaX/Y in cm), so a split screen may hold two scales; other DICOMs may state Pixel Spacing
(PS3.3 C.7.6.2.1.1, or the enhanced Pixel Measures macro). A PNG, JPEG, BMP or TIFF states nothing a scanner
calibrated, and a size read off it would be a guess: those sizes stay in pixels, with the reason said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..intake.medical_image import SPACING_US_REGION, MedicalImage
from .geometry import Caliper

MAX_MM_PER_PIXEL = 10.0  # a stated pixel larger than 1 cm is a damaged header, not a breast ultrasound
US_REGION_SOURCE = "DICOM Ultrasound Region (PhysicalDeltaX/Y)"
PIXEL_SPACING_SOURCE = "DICOM Pixel Spacing"
_RASTER_KINDS = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP", "tiff": "TIFF", "gif": "GIF", "webp": "WebP"}


@dataclass(frozen=True)
class PixelScale:
    """Millimetres per pixel down the rows (``row_mm``) and across the columns (``col_mm``), and where it was read."""

    row_mm: float
    col_mm: float
    source: str


def _plausible(row_mm: float, col_mm: float) -> bool:
    return all(math.isfinite(v) and 0.0 < v <= MAX_MM_PER_PIXEL for v in (row_mm, col_mm))


def pixel_scale(image: MedicalImage, point: tuple[float, float]) -> tuple[PixelScale | None, str]:
    """The scale at ``point`` (row, col; the lesion's centroid), or None and a plain reason why sizes stay in pixels.

    Order: the ultrasound region containing the point (the first, if regions overlap); else the image's Pixel
    Spacing; else None. A region or spacing that is not positive or exceeds :data:`MAX_MM_PER_PIXEL` is not used.
    Intake also copies a region's scale into ``pixel_spacing_mm`` when the file has no Pixel Spacing (its
    ``pixel_spacing_source`` says so); such a copy is not used for a point outside every region, since the file
    calibrated only the regions. The reason is "" when a scale is returned.
    """
    for region in image.us_calibrations:
        if region.contains(point) and _plausible(region.row_mm, region.col_mm):
            return PixelScale(region.row_mm, region.col_mm, US_REGION_SOURCE), ""
    spacing = image.pixel_spacing_mm
    if spacing is not None:
        row_mm, col_mm = float(spacing[0]), float(spacing[1])
        if _plausible(row_mm, col_mm) and image.pixel_spacing_source != SPACING_US_REGION:
            return PixelScale(row_mm, col_mm, PIXEL_SPACING_SOURCE), ""
    kind = image.source_kind.lower()
    if kind in _RASTER_KINDS:
        return None, f"{_RASTER_KINDS[kind]} images carry no calibration, so sizes are in pixels"
    if kind == "dicom":
        if image.us_calibrations or spacing is not None:
            return None, ("the DICOM's calibration does not cover this point or is implausible "
                          f"(over {MAX_MM_PER_PIXEL:g} mm per pixel, or not positive), so sizes are in pixels")
        return None, ("the DICOM states no Ultrasound Region calibration or Pixel Spacing for this point, "
                      "so sizes are in pixels")
    return None, f"the image ({image.source_kind}) states no pixel size, so sizes are in pixels"


def length_mm(caliper: Caliper, scale: PixelScale) -> float:
    """A caliper's length in mm; pixels may be anisotropic, so each direction takes its own scale."""
    d_row = (caliper.end[0] - caliper.start[0]) * scale.row_mm
    d_col = (caliper.end[1] - caliper.start[1]) * scale.col_mm
    return math.hypot(d_row, d_col)


def area_mm2(area_px: float, scale: PixelScale) -> float:
    """An area of ``area_px`` pixels in mm^2."""
    return float(area_px) * scale.row_mm * scale.col_mm
