"""Millimetres only when the image says so (issue 14, items 2-3).

An ultrasound DICOM is built here with a Sequence of Ultrasound Regions (PhysicalDeltaX 0.01 cm per column,
PhysicalDeltaY 0.012 cm per row) and read through the real intake; a caliper inside the region gets millimetres,
a point outside it falls back to Pixel Spacing, and a PNG or an uncalibrated region says why it stays in pixels.
"""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest
from intake_fixtures import dicom_bytes, encode, make_dataset

from medapp.intake.imaging import load_image
from medapp.intake.medical_image import RegionCalibration
from medapp.lesion.calibration import (
    PIXEL_SPACING_SOURCE,
    US_REGION_SOURCE,
    PixelScale,
    area_mm2,
    length_mm,
    pixel_scale,
)
from medapp.lesion.geometry import Caliper

HEIGHT, WIDTH = 200, 300
REGION = (40, 20, 180, 260)  # top, left, bottom, right (exclusive)
INSIDE, OUTSIDE = (100.0, 150.0), (10.0, 10.0)


def _region(units: int = 3, dx: float = 0.01, dy: float = 0.012) -> pydicom.Dataset:
    region = pydicom.Dataset()
    region.RegionSpatialFormat, region.RegionDataType = 1, 1  # 2D, tissue
    top, left, bottom, right = REGION
    region.RegionLocationMinX0, region.RegionLocationMinY0 = left, top
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = right - 1, bottom - 1  # inclusive in DICOM
    region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = units, units
    region.PhysicalDeltaX, region.PhysicalDeltaY = dx, dy
    return region


def ultrasound_dicom(*regions: pydicom.Dataset, **attrs: object) -> bytes:
    pixels = np.random.default_rng(3).integers(0, 200, (HEIGHT, WIDTH), dtype=np.uint8)
    extra = {"SequenceOfUltrasoundRegions": list(regions)} if regions else {}
    return dicom_bytes(make_dataset(pixels, modality="US", **extra, **attrs))


def test_region_calibration_read_through_intake():
    image = load_image(ultrasound_dicom(_region()))
    assert image.us_calibrations == (RegionCalibration(box=REGION, row_mm=pytest.approx(0.12),
                                                       col_mm=pytest.approx(0.1)),)
    scale, reason = pixel_scale(image, INSIDE)
    assert reason == ""
    assert scale.source == US_REGION_SOURCE
    assert (scale.row_mm, scale.col_mm) == (pytest.approx(0.12), pytest.approx(0.1))


@pytest.mark.parametrize(("d_row", "d_col"), [(0, 100), (50, 0), (30, 40)])
def test_caliper_length_in_mm_is_anisotropic(d_row, d_col):
    scale, _ = pixel_scale(load_image(ultrasound_dicom(_region())), INSIDE)
    caliper = Caliper(length_px=math.hypot(d_row, d_col), start=INSIDE, end=(INSIDE[0] + d_row, INSIDE[1] + d_col))
    expected = math.hypot(d_row * 0.12, d_col * 0.1)  # 100 columns = 10 mm, 50 rows = 6 mm, (30, 40) = 5.41 mm
    assert length_mm(caliper, scale) == pytest.approx(expected, rel=0.01)
    assert area_mm2(100, scale) == pytest.approx(100 * 0.12 * 0.1)


def test_point_outside_every_region_falls_back_to_pixel_spacing():
    image = load_image(ultrasound_dicom(_region(), PixelSpacing=[0.2, 0.25]))
    assert pixel_scale(image, INSIDE)[0].source == US_REGION_SOURCE  # the region wins where it applies
    scale, reason = pixel_scale(image, OUTSIDE)
    assert scale == PixelScale(0.2, 0.25, PIXEL_SPACING_SOURCE) and reason == ""


def test_region_scale_is_not_stretched_outside_its_region():
    image = load_image(ultrasound_dicom(_region()))  # intake copies the region into pixel_spacing_mm
    assert image.pixel_spacing_mm == pytest.approx((0.12, 0.1))
    scale, reason = pixel_scale(image, OUTSIDE)
    assert scale is None and "does not cover this point" in reason


def test_png_has_no_calibration():
    image = load_image(encode(np.zeros((40, 60), np.uint8), "PNG"))
    scale, reason = pixel_scale(image, (20.0, 30.0))
    assert scale is None
    assert reason == "PNG images carry no calibration, so sizes are in pixels"


def test_dicom_without_calibration_says_so():
    scale, reason = pixel_scale(load_image(ultrasound_dicom()), INSIDE)
    assert scale is None
    assert "states no Ultrasound Region calibration or Pixel Spacing" in reason


@pytest.mark.parametrize("region", [_region(units=0), _region(dx=0.0), _region(dx=-0.01), _region(dy=2.0)],
                         ids=["units 0", "zero", "negative", "2 cm per pixel"])
def test_uncalibrated_or_absurd_region_is_not_used(region):
    image = load_image(ultrasound_dicom(region))
    scale, reason = pixel_scale(image, INSIDE)
    assert scale is None and reason


def test_malformed_region_is_skipped_without_raising():
    broken = _region()
    del broken.PhysicalDeltaY
    image = load_image(ultrasound_dicom(broken, _region(dx=0.02)))
    assert [(c.row_mm, c.col_mm) for c in image.us_calibrations] == [(pytest.approx(0.12), pytest.approx(0.2))]
