"""One lesion's outline -> the calipers, depth, orientation, shape and margin a radiologist reports, in pixels.

Everything is measured on the boundary the mask draws: the 0.5-level contour of the mask (holes filled), padded by
one pixel so a lesion touching the image edge still closes, in image coordinates (row, col) with pixel centres at
integers. An ellipse of semi-axes a, b drawn with ``skimage.draw.ellipse`` therefore measures 2a and 2b within a
pixel.

The descriptors follow the BI-RADS ultrasound lexicon's terms (ACR BI-RADS Atlas, 5th ed., 2013: orientation
parallel / not parallel, shape oval / round / irregular, margin circumscribed / not circumscribed), but they are
geometric proxies with the stated rules below, not a radiologist's reading. The rules:

- orientation: "not parallel" when the lesion is taller than wide (height / width > :data:`ASPECT_NOT_PARALLEL`,
  extents along the image's rows and columns; the skin line is taken as the image's top edge), else "parallel".
- shape: "irregular" when solidity (outline area / its convex hull's area) < :data:`SOLIDITY_IRREGULAR` or the
  ellipse residual (1 - IoU of the mask with the ellipse of the same second moments) > :data:`RESIDUAL_IRREGULAR`;
  else "round" when short / long axis >= :data:`ROUND_RATIO`; else "oval".
- margin: "not circumscribed" when roughness (perimeter of the outline / perimeter of its convex hull)
  > :data:`ROUGHNESS_LIMIT` or solidity < :data:`SOLIDITY_IRREGULAR`; else "circumscribed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import cdist
from skimage.measure import find_contours, label

from ..choices import Choice

SOLIDITY_IRREGULAR = 0.90  # below: lobes or spikes (irregular shape, not circumscribed margin)
RESIDUAL_IRREGULAR = 0.20  # above: the outline departs from its moment ellipse by more than a fifth (irregular)
ROUND_RATIO = 0.85  # short / long axis at or above: round rather than oval
ROUGHNESS_LIMIT = 1.10  # outline perimeter / hull perimeter above: an angular, jagged or spiculated margin
ASPECT_NOT_PARALLEL = 1.0  # height / width above: taller than wide, long axis not parallel to the skin
LONG_AXIS_TIE_PX = 0.5  # diameters this close to the longest are equal at pixel resolution
SHORT_AXIS_STEP_PX = 0.25  # spacing of the perpendicular chords searched for the short axis
MIN_LESION_FRACTION = 0.001  # a component smaller than this fraction of the image is noise, not a lesion


class Orientation(Choice):
    PARALLEL = "parallel"
    NOT_PARALLEL = "not parallel"


class Shape(Choice):
    OVAL = "oval"
    ROUND = "round"
    IRREGULAR = "irregular"


class Margin(Choice):
    CIRCUMSCRIBED = "circumscribed"
    NOT_CIRCUMSCRIBED = "not circumscribed"


@dataclass(frozen=True)
class Caliper:
    """A measured diameter: its length and its (row, col) endpoints in image pixels (subpixel), to be drawn."""

    length_px: float
    start: tuple[float, float]
    end: tuple[float, float]


@dataclass(frozen=True)
class LesionGeometry:
    """What a radiologist reports about one lesion's outline, in pixels (see the module docstring for the rules).

    ``area_px`` is the pixel count (holes filled); ``depth_px`` the lesion's top row below ``skin_row``;
    ``width_px``/``height_px`` its extent along the image's columns/rows; ``aspect_ratio`` height / width;
    ``long_axis_angle_deg`` the long axis' angle from horizontal in [0, 90]; ``axis_ratio`` short / long axis;
    ``centroid`` (row, col).
    """

    area_px: int
    long_axis: Caliper
    short_axis: Caliper
    depth_px: float
    width_px: float
    height_px: float
    aspect_ratio: float
    orientation: Orientation
    long_axis_angle_deg: float
    shape: Shape
    solidity: float
    ellipse_residual: float
    axis_ratio: float
    margin: Margin
    roughness: float
    centroid: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: numbers, strings, lists, and a dict per caliper."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Caliper):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Choice):
        return str(value.value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer | int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value)
    return value


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a lesion mask is (H, W); got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` (background 4-connected, so holes match 8-connected lesions), done by one
    labelling of the background instead of repeated dilation: about twice as fast on a frame-sized lesion."""
    background, _ = ndimage.label(np.pad(~mask, 1, constant_values=True))  # 4-connectivity, the border is one
    return background[1:-1, 1:-1] != background[0, 0]


def _boundary(filled: np.ndarray) -> np.ndarray:
    """(N, 2) closed polygon (first point repeated last) of the filled mask's 0.5-level contour, in ``filled``'s
    coordinates. ``fully_connected="high"`` keeps diagonal neighbours in one outline (8-connectivity); with holes
    filled and the mask padded, each 8-connected component has exactly one closed contour, so more than one contour
    means more than one lesion."""
    contours = find_contours(np.pad(filled, 1).astype(np.float32), 0.5, fully_connected="high")
    if len(contours) != 1:
        raise ValueError("the lesion mask holds more than one connected lesion; split it with components() first")
    return contours[0] - 1.0


def _cropped(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The lesion's bounding box (top, left, bottom, right; exclusive) and the mask inside it with holes filled:
    every measure works on the box, which is far smaller than the frame."""
    mask = _as_mask(mask)
    if not mask.any():
        raise ValueError("the lesion mask is empty: there is no outline to measure")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, left, bottom, right = int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1
    return _fill_holes(mask[top:bottom, left:right]), (top, left, bottom, right)


def outline_polygon(mask: np.ndarray) -> np.ndarray:
    """(N, 2) closed (row, col) polygon, in image pixels, of one lesion's outline: the boundary :func:`measure`
    measures (holes filled, 0.5-level contour), for drawing it."""
    crop, (top, left, _, _) = _cropped(mask)
    return _boundary(crop) + np.array([top, left], dtype=np.float64)


def _polygon_area(poly: np.ndarray) -> float:
    """Signed shoelace area of a closed (N, 2) polygon."""
    r, c = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(r[:-1], c[1:]) - np.dot(r[1:], c[:-1]))


def _long_axis(hull_points: np.ndarray, major_direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The farthest pair among the convex hull's vertices (the diameter of a set lies on its hull).

    A pixelated outline offers many near-equal diameters (a flat tip several pixels wide); of those within
    :data:`LONG_AXIS_TIE_PX` of the longest, the one nearest the lesion's principal axis (``major_direction``,
    unit (row, col)) is taken, so a horizontal ellipse is not reported a few degrees tilted.
    """
    d = cdist(hull_points, hull_points)
    i, j = np.nonzero(np.triu(d >= d.max() - LONG_AXIS_TIE_PX, k=1))
    chords = hull_points[j] - hull_points[i]
    alignment = np.abs(chords @ major_direction) / np.linalg.norm(chords, axis=1)
    best = int(np.argmax(alignment))
    return hull_points[i[best]], hull_points[j[best]]


def _short_axis(poly: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The longest chord perpendicular to the long axis, as a radiologist places the second caliper.

    In the long axis' frame (u along it, v across), the perpendicular line at each u (every
    :data:`SHORT_AXIS_STEP_PX`) crosses the polygon's edges; the chord spans the outermost crossings.
    """
    axis = (end - start) / np.linalg.norm(end - start)
    across = np.array([-axis[1], axis[0]])
    rel = poly - start
    u, v = rel @ axis, rel @ across
    u0, u1, v0, v1 = u[:-1], u[1:], v[:-1], v[1:]
    keep = u0 != u1  # an edge along the chord adds no crossing its neighbours do not
    u0, u1, v0, v1 = u0[keep], u1[keep], v0[keep], v1[keep]
    u_min = float(u.min())
    positions = u_min + SHORT_AXIS_STEP_PX * np.arange(int((float(u.max()) - u_min) / SHORT_AXIS_STEP_PX) + 1)
    first = np.ceil((np.minimum(u0, u1) - u_min) / SHORT_AXIS_STEP_PX).astype(np.int64)
    last = np.minimum(np.floor((np.maximum(u0, u1) - u_min) / SHORT_AXIS_STEP_PX).astype(np.int64),
                      len(positions) - 1)
    counts = np.maximum(last - first + 1, 0)
    edge = np.repeat(np.arange(len(u0)), counts)
    k = np.repeat(first, counts) + np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    crossing = v0[edge] + (positions[k] - u0[edge]) * (v1[edge] - v0[edge]) / (u1[edge] - u0[edge])
    v_high = np.full(len(positions), -np.inf)
    v_low = np.full(len(positions), np.inf)
    np.maximum.at(v_high, k, crossing)
    np.minimum.at(v_low, k, crossing)
    chord = np.where(np.isfinite(v_high), v_high - v_low, -np.inf)
    best = int(np.argmax(chord))
    if not np.isfinite(chord[best]):  # no crossing at all: a degenerate outline; the chord through the middle
        return start, start
    base = start + positions[best] * axis
    return base + v_low[best] * across, base + v_high[best] * across


def _caliper(a: np.ndarray, b: np.ndarray) -> Caliper:
    return Caliper(length_px=float(np.linalg.norm(b - a)), start=(float(a[0]), float(a[1])),
                   end=(float(b[0]), float(b[1])))


def _moment_ellipse(filled: np.ndarray) -> tuple[tuple[float, float], float, np.ndarray]:
    """The mask's centroid (row, col), its ellipse residual, and its principal axis as a unit (row, col) vector.

    The ellipse of the same second moments (as regionprops' ``axis_major_length``/``axis_minor_length``: semi-axes
    2 * sqrt of the covariance's eigenvalues) is laid over the mask; residual = 1 - IoU, the ellipse counted by its
    area (pi * a * b), the overlap pixel by pixel.
    """
    weight = filled.astype(np.float32)
    n = float(np.count_nonzero(filled))
    rows, cols = np.arange(filled.shape[0], dtype=np.float64), np.arange(filled.shape[1], dtype=np.float64)
    row_sums, col_sums = weight.sum(axis=1, dtype=np.float64), weight.sum(axis=0, dtype=np.float64)
    mean_r, mean_c = row_sums @ rows / n, col_sums @ cols / n
    dr, dc = rows - mean_r, cols - mean_c
    cov_rc = float(dr @ (weight @ dc.astype(np.float32)).astype(np.float64)) / n
    cov = np.array([[row_sums @ dr**2 / n, cov_rc], [cov_rc, col_sums @ dc**2 / n]])
    eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
    minor_semi, major_semi = 2.0 * np.sqrt(np.maximum(eigvals, 0.0)) + 1e-9
    minor, major = eigvecs[:, 0], eigvecs[:, 1]
    # inside the ellipse: x^T Q x <= 1 with Q = sum over its axes of axis axis^T / semi^2
    q = np.outer(major, major) / major_semi**2 + np.outer(minor, minor) / minor_semi**2
    dr32, dc32 = dr.astype(np.float32), dc.astype(np.float32)
    form = np.multiply.outer(dr32, (2 * q[0, 1]) * dc32)
    form += (q[0, 0] * dr32**2)[:, None]
    form += (q[1, 1] * dc32**2)[None, :]
    inside = form <= 1.0
    overlap = float(np.count_nonzero(inside & filled))
    union = max(n, n + math.pi * major_semi * minor_semi - overlap)  # at least the mask (a line has no area)
    return (float(mean_r), float(mean_c)), max(0.0, 1.0 - overlap / union), major


def _solidity(poly: np.ndarray, hull: ConvexHull) -> float:
    return min(1.0, abs(_polygon_area(poly)) / hull.volume)  # 2D hull: volume is its area, area its perimeter


def _smoothed(filled: np.ndarray, smoothing: float) -> np.ndarray:
    """The lesion's gross form: its filled mask blurred by a Gaussian of sigma = ``smoothing`` x its equivalent
    diameter and cut at 0.5 (corners and wobble of the boundary go, lobes the size of the lesion stay); the largest
    piece if the blur splits a thin neck, holes filled."""
    sigma = smoothing * math.sqrt(4.0 * float(filled.sum()) / math.pi)
    pad = int(math.ceil(3 * sigma)) + 1
    blurred = ndimage.gaussian_filter(np.pad(filled, pad).astype(np.float32), sigma) >= 0.5
    labels = label(blurred, connectivity=2)
    if labels.max() == 0:
        return filled
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return _fill_holes(labels == largest)


def shape_measures(mask: np.ndarray, smoothing: float = 0.0) -> tuple[float, float]:
    """(solidity, ellipse residual) that the shape rule reads, on the outline smoothed at ``smoothing`` (0: as
    drawn, what :func:`measure` uses). For choosing the rule on validation (bench/shape_rule.py): smoothing would
    make a hand-drawn mask and the model's smooth outline read alike, at the cost of calling fewer lesions
    irregular (docs/design_choices.md)."""
    filled = _cropped(mask)[0]
    smooth = _smoothed(filled, smoothing) if smoothing > 0 else filled
    rows, cols = np.flatnonzero(smooth.any(axis=1)), np.flatnonzero(smooth.any(axis=0))
    smooth = smooth[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    poly = _boundary(smooth)
    return _solidity(poly, ConvexHull(poly[:-1])), float(_moment_ellipse(smooth)[1])


def measure(mask: np.ndarray, skin_row: float = 0.0) -> LesionGeometry:
    """Measure one connected lesion.

    ``mask`` is (H, W) bool (any dtype; nonzero is lesion), one 8-connected component (split an outline with
    :func:`components` first); holes are filled, since a lesion's outline encloses them. ``skin_row`` is the row of
    the skin line for the depth. Raises ValueError for an empty mask or more than one component.
    """
    crop, (top, left, bottom, right) = _cropped(mask)
    offset = np.array([top, left], dtype=np.float64)

    poly = _boundary(crop)  # crop coordinates; refuses more than one lesion
    hull = ConvexHull(poly[:-1])
    centroid, residual, major = _moment_ellipse(crop)
    start, end = _long_axis(poly[hull.vertices], major)
    short_start, short_end = _short_axis(poly, start, end)
    long_axis = _caliper(start + offset, end + offset)
    short_axis = _caliper(short_start + offset, short_end + offset)

    solidity = _solidity(poly, hull)
    perimeter = float(np.linalg.norm(np.diff(poly, axis=0), axis=1).sum())
    roughness = perimeter / hull.area
    axis_ratio = short_axis.length_px / long_axis.length_px

    height, width = float(bottom - top), float(right - left)
    aspect = height / width
    d_row, d_col = end - start
    angle = math.degrees(math.atan2(abs(float(d_row)), abs(float(d_col))))
    if solidity < SOLIDITY_IRREGULAR or residual > RESIDUAL_IRREGULAR:
        shape = Shape.IRREGULAR
    else:
        shape = Shape.ROUND if axis_ratio >= ROUND_RATIO else Shape.OVAL
    rough = roughness > ROUGHNESS_LIMIT or solidity < SOLIDITY_IRREGULAR
    return LesionGeometry(
        area_px=int(crop.sum()),
        long_axis=long_axis,
        short_axis=short_axis,
        depth_px=float(top - skin_row),
        width_px=width,
        height_px=height,
        aspect_ratio=aspect,
        orientation=Orientation.NOT_PARALLEL if aspect > ASPECT_NOT_PARALLEL else Orientation.PARALLEL,
        long_axis_angle_deg=angle,
        shape=shape,
        solidity=solidity,
        ellipse_residual=residual,
        axis_ratio=axis_ratio,
        margin=Margin.NOT_CIRCUMSCRIBED if rough else Margin.CIRCUMSCRIBED,
        roughness=roughness,
        centroid=(centroid[0] + top, centroid[1] + left),
    )


def components(
    mask_or_prob: np.ndarray,
    threshold: float = 0.5,
    min_area_px: int | None = None,
    min_fraction_of_largest: float = 0.1,
) -> list[np.ndarray]:
    """The connected lesions of an outline, principal first, each an (H, W) bool mask with its holes filled.

    ``mask_or_prob`` is an (H, W) bool mask or an outline probability map in [0, 1] (lesion where >= ``threshold``).
    Lesions are 8-connected (holes filled first, so a blob inside a ring belongs to the ring). A lesion is kept when
    its area is at least ``min_area_px`` (default :data:`MIN_LESION_FRACTION` of the image) and at least
    ``min_fraction_of_largest`` of the largest one's. Order: the lesion the classification is about is the one the
    outline is most sure of: largest summed outline probability (for a bool mask, the largest), then the rest by the
    same sum.
    """
    values = np.asarray(mask_or_prob)
    if values.ndim != 2:
        raise ValueError(f"an outline is (H, W); got shape {values.shape}")
    if values.dtype == bool:
        binary, weight = values, values.astype(np.float64)
    else:
        weight = np.nan_to_num(values.astype(np.float64), nan=0.0)
        binary = weight >= threshold
    labels, n = label(_fill_holes(binary), connectivity=2, return_num=True)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    sums = ndimage.sum_labels(weight, labels, index=index)
    floor = max(1, math.ceil(MIN_LESION_FRACTION * values.size)) if min_area_px is None else min_area_px
    keep = (areas >= floor) & (areas >= min_fraction_of_largest * areas.max())
    order = sorted(np.flatnonzero(keep), key=lambda i: (-sums[i], -areas[i], i))
    return [labels == index[i] for i in order]
