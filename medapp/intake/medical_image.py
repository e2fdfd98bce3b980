"""The decoded image every later stage works on. Imports nothing from medapp, so any layer may depend on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


# where ``MedicalImage.pixel_spacing_mm`` was read from
SPACING_PIXEL_SPACING = "Pixel Spacing"
SPACING_IMAGER = "Imager Pixel Spacing (at the detector)"
SPACING_US_REGION = "Ultrasound Region (the first calibrated one, copied)"


@dataclass(frozen=True)
class RegionCalibration:
    """The physical size of one pixel inside one region of the frame, as the file states it.

    ``box`` is (top, left, bottom, right) in pixels, bottom/right exclusive; ``row_mm`` and ``col_mm`` are the
    millimetres one pixel spans down the rows and across the columns inside that box (DICOM Ultrasound Region
    Sequence, PS3.3 C.8.5.5: PhysicalDeltaY and PhysicalDeltaX).
    """

    box: tuple[int, int, int, int]
    row_mm: float
    col_mm: float

    def contains(self, point: tuple[float, float]) -> bool:
        """True when the (row, col) ``point`` lies inside ``box``."""
        top, left, bottom, right = self.box
        return top <= point[0] < bottom and left <= point[1] < right


@dataclass
class MedicalImage:
    """A decoded image.

    ``pixels`` (H, W) float32 in [0, 1] feeds the model; ``display`` (H, W, 3) uint8 shows the natural colours.
    ``source_kind`` is the detected format ("png", "jpeg", "bmp", "tiff", "dicom"); ``original_size`` is
    (height, width) as displayed; ``pixel_spacing_mm`` is (row, column) spacing when the file states it, and
    ``pixel_spacing_source`` which attribute stated it (``SPACING_*``; a region's scale copied here holds only
    inside that region);
    ``scan_region`` is the (top, left, bottom, right) box of the scan itself when the file states it (DICOM
    Ultrasound Region Sequence), which exports are cropped to; ``us_calibrations`` are the regions of that
    Sequence that state a physical pixel size (one per calibrated 2D region, so a split screen keeps both scales);
    ``frame_index`` is 0-based; ``metadata`` holds only :data:`medapp.privacy.SAFE_METADATA_KEYS`; ``notes`` says in
    plain words what intake did ("inverted MONOCHROME1", "applied window C=40 W=400", "frame 1 of 10").
    """

    pixels: np.ndarray
    display: np.ndarray
    source_kind: str
    original_size: tuple[int, int]  # (height, width)
    pixel_spacing_mm: tuple[float, float] | None = None
    pixel_spacing_source: str = ""
    scan_region: tuple[int, int, int, int] | None = None
    us_calibrations: tuple[RegionCalibration, ...] = ()
    frame_index: int = 0
    frame_count: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
