"""Lesion geometry (issue 14, items 2-3): calipers, depth and the BI-RADS-style descriptors on drawn shapes.

Ellipses drawn with skimage.draw.ellipse at known diameters and angles must measure those diameters within a pixel;
a seven-spiked star is the irregular, not circumscribed case.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from skimage.draw import disk, ellipse, polygon
from skimage.measure import find_contours

from medapp.lesion.geometry import (
    ROUND_RATIO,
    Margin,
    Orientation,
    Shape,
    components,
    measure,
    shape_measures,
)

SIZE = (240, 240)
CENTRE = (120, 120)
LONG, SHORT = 80, 40  # drawn diameters


def drawn_ellipse(angle_deg: float, long: int = LONG, short: int = SHORT, shape=SIZE, centre=CENTRE) -> np.ndarray:
    """An ellipse ``long`` x ``short`` px, its long axis ``angle_deg`` counter-clockwise from horizontal."""
    mask = np.zeros(shape, bool)
    rr, cc = ellipse(*centre, short / 2, long / 2, shape=shape, rotation=math.radians(angle_deg))
    mask[rr, cc] = True
    return mask


def star(spikes: int = 7, outer: float = 80, inner: float = 35) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 2 * spikes, endpoint=False)
    radius = np.where(np.arange(2 * spikes) % 2 == 0, outer, inner)
    mask = np.zeros(SIZE, bool)
    rr, cc = polygon(CENTRE[0] + radius * np.sin(angles), CENTRE[1] + radius * np.cos(angles), SIZE)
    mask[rr, cc] = True
    return mask


def _direction(caliper) -> np.ndarray:
    return np.subtract(caliper.end, caliper.start)


@pytest.mark.parametrize(("angle", "orientation"), [
    (0, Orientation.PARALLEL),
    (30, Orientation.PARALLEL),
    (60, Orientation.NOT_PARALLEL),
    (90, Orientation.NOT_PARALLEL),
])
def test_ellipse_calipers_angle_and_orientation(angle, orientation):
    g = measure(drawn_ellipse(angle))
    assert g.long_axis.length_px == pytest.approx(LONG, abs=1.0)
    assert g.short_axis.length_px == pytest.approx(SHORT, abs=1.0)
    assert g.long_axis_angle_deg == pytest.approx(angle, abs=2.0)
    assert g.orientation == orientation
    assert (g.aspect_ratio > 1.0) == (orientation == Orientation.NOT_PARALLEL)
    assert g.shape == Shape.OVAL
    assert g.margin == Margin.CIRCUMSCRIBED
    assert g.axis_ratio == pytest.approx(SHORT / LONG, abs=0.03)
    assert g.centroid == pytest.approx(CENTRE, abs=0.5)


@pytest.mark.parametrize("angle", [0, 30, 60, 90])
def test_calipers_are_perpendicular_and_end_on_the_boundary(angle):
    mask = drawn_ellipse(angle)
    g = measure(mask)
    long_dir, short_dir = _direction(g.long_axis), _direction(g.short_axis)
    cosine = np.dot(long_dir, short_dir) / (np.linalg.norm(long_dir) * np.linalg.norm(short_dir))
    assert abs(cosine) < 1e-6
    boundary = find_contours(np.pad(mask, 1).astype(float), 0.5)[0] - 1.0
    for point in (g.long_axis.start, g.long_axis.end, g.short_axis.start, g.short_axis.end):
        assert np.min(np.linalg.norm(boundary - np.asarray(point), axis=1)) < 0.75  # on the outline (vertex spacing)


def test_circle_is_round_and_circumscribed():
    mask = np.zeros(SIZE, bool)
    rr, cc = disk(CENTRE, 30, shape=SIZE)
    mask[rr, cc] = True
    g = measure(mask)
    assert g.long_axis.length_px == pytest.approx(60, abs=1.0)
    assert g.short_axis.length_px == pytest.approx(60, abs=1.0)
    assert g.axis_ratio >= ROUND_RATIO
    assert g.shape == Shape.ROUND
    assert g.margin == Margin.CIRCUMSCRIBED
    assert g.orientation == Orientation.PARALLEL  # as tall as wide is not taller than wide


def test_star_is_irregular_and_not_circumscribed():
    g = measure(star())
    assert g.shape == Shape.IRREGULAR
    assert g.margin == Margin.NOT_CIRCUMSCRIBED
    assert g.solidity < 0.9
    assert g.roughness > 1.1


def test_shape_measures_unsmoothed_are_what_measure_reads_and_smoothing_removes_wobble_not_spikes():
    """Smoothing (bench/shape_rule.py's option) takes a hand-drawn wobble off an ellipse's boundary but leaves a
    star's spikes: shape is the gross form, the margin keeps the boundary detail."""
    g = measure(star())
    assert shape_measures(star(), 0.0) == pytest.approx((g.solidity, g.ellipse_residual))
    angles = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    radius = 1 + 0.06 * np.sin(40 * angles)  # a polygon with 40 small bumps around an 80 x 40 ellipse
    wobbly = np.zeros(SIZE, bool)
    rr, cc = polygon(CENTRE[0] + 20 * radius * np.sin(angles), CENTRE[1] + 40 * radius * np.cos(angles), SIZE)
    wobbly[rr, cc] = True
    raw_solidity, _ = shape_measures(wobbly, 0.0)
    smooth_solidity, smooth_residual = shape_measures(wobbly, 0.04)
    assert smooth_solidity > raw_solidity and smooth_solidity > 0.97 and smooth_residual < 0.1
    star_solidity, _ = shape_measures(star(), 0.04)
    assert star_solidity < 0.9


def test_depth_extents_and_area():
    mask = np.zeros(SIZE, bool)
    mask[50:70, 30:110] = True  # 20 rows x 80 columns
    g = measure(mask, skin_row=12.0)
    assert g.depth_px == pytest.approx(50 - 12.0)
    assert (g.height_px, g.width_px) == (20.0, 80.0)
    assert g.aspect_ratio == pytest.approx(0.25)
    assert g.area_px == 20 * 80
    assert measure(mask).depth_px == 50.0


def test_to_dict_is_plain_json():
    d = measure(drawn_ellipse(30)).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["orientation"] == "parallel" and type(d["orientation"]) is str
    assert set(d["long_axis"]) == {"length_px", "start", "end"} and len(d["long_axis"]["start"]) == 2
    assert isinstance(d["area_px"], int) and isinstance(d["centroid"], list)


def test_empty_or_split_mask_is_refused():
    with pytest.raises(ValueError, match="empty"):
        measure(np.zeros(SIZE, bool))
    two = drawn_ellipse(0, centre=(60, 60)) | drawn_ellipse(0, centre=(180, 180))
    with pytest.raises(ValueError, match="components"):
        measure(two)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        measure(np.ones((4, 4, 3), bool))


def test_components_order_filter_and_fill():
    big = drawn_ellipse(0, long=100, short=60, centre=(70, 70))
    small = drawn_ellipse(0, long=40, short=30, centre=(190, 190))
    mask = big | small
    mask[225:228, 10] = True  # a 3-pixel speck
    mask[65:75, 65:75] = False  # a hole in the big one
    found = components(mask)
    assert len(found) == 2
    assert found[0].sum() > found[1].sum()
    assert found[0][70, 70] and not found[0][190, 190]  # principal first, hole filled
    assert not any(c[226, 10] for c in found)  # the speck dropped
    assert all(c.dtype == bool and c.shape == SIZE for c in found)


def test_components_principal_is_the_surest_not_the_largest():
    prob = np.zeros(SIZE, np.float32)
    prob[drawn_ellipse(0, long=100, short=60, centre=(70, 70))] = 0.55  # large, barely above threshold
    prob[drawn_ellipse(0, long=80, short=50, centre=(180, 170))] = 0.99  # smaller, sure
    found = components(prob)
    assert len(found) == 2
    assert found[0][180, 170] and found[0].sum() < found[1].sum()


def test_components_drops_small_relative_to_the_largest_and_handles_nothing():
    mask = drawn_ellipse(0, long=120, short=80, centre=(100, 100))
    rr, cc = disk((220, 220), 5, shape=SIZE)  # ~80 px: above the image floor, below 10 % of the largest
    mask[rr, cc] = True
    assert len(components(mask)) == 1
    assert len(components(mask, min_fraction_of_largest=0.0)) == 2
    assert components(np.zeros(SIZE, np.float32)) == []


def test_a_large_mask_is_measured_fast():
    mask = drawn_ellipse(17, long=700, short=400, shape=(600, 800), centre=(300, 400))
    measure(mask)
    best = min(_timed(measure, mask) for _ in range(3))
    assert best < 0.5  # ~20 ms here; the bound only catches an all-pairs regression on a busy machine


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hole_filling_matches_scipy(seed):
    from scipy.ndimage import binary_fill_holes

    from medapp.lesion.geometry import _fill_holes

    noisy = np.random.default_rng(seed).random((60, 80)) < 0.55
    assert np.array_equal(_fill_holes(noisy), binary_fill_holes(noisy))
