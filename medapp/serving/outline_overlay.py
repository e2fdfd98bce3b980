"""The model's lesion outline as people see it: drawn over the image with its two calipers, and its measurements
and BI-RADS-lexicon descriptors in words (the Diagnose page, the PDF report and ``predict``'s line share them).

Colours are from the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), chosen to stay apart for
readers with any common colour-vision deficiency and to stand out on a grey ultrasound image: the measured lesion's
outline in yellow, its calipers in sky blue, other outlined lesions dashed in vermillion. Lines are drawn without
anti-aliasing, so every changed pixel holds exactly one of these colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..lesion.geometry import Caliper, outline_polygon
from .lesion_finding import OUTLINE_SOURCE, LesionFinding, OutlinedLesion

OUTLINE_COLOUR = (240, 228, 66)  # Okabe-Ito yellow #F0E442: the outline of the lesion the result is about
CALIPER_COLOUR = (86, 180, 233)  # Okabe-Ito sky blue #56B4E9: its long and short axis
OTHER_COLOUR = (213, 94, 0)  # Okabe-Ito vermillion #D55E00: other outlined lesions (dashed)
PALETTE = (OUTLINE_COLOUR, CALIPER_COLOUR, OTHER_COLOUR)
MIN_LINE_PX = 2  # the line width on an image up to LINE_SCALE_PX on its short side; wider on larger images
LINE_SCALE_PX = 300
TICK_WIDTHS = 3  # a caliper's end tick reaches this many line widths either side of the line
DASH_WIDTHS = 4  # dash and gap of another lesion's outline, in line widths
SOURCE_SENTENCE = OUTLINE_SOURCE[0].upper() + OUTLINE_SOURCE[1:] + "."
LEGEND = ("On the image: the lesion's outline in yellow, its long and short axis in sky blue, other outlined lesions "
          "dashed in vermillion.")


def line_width(shape: tuple[int, ...]) -> int:
    """Line width in pixels for an image of ``shape`` (H, W, ...): 2 px, growing with the short side."""
    return max(MIN_LINE_PX, round(min(shape[0], shape[1]) / LINE_SCALE_PX))


def _xy(points: np.ndarray) -> list[tuple[float, float]]:
    """(N, 2) (row, col) -> PIL's [(x, y), ...]."""
    return [(float(c), float(r)) for r, c in points]


def _dashes(contour: np.ndarray, period: float) -> list[np.ndarray]:
    """The "on" pieces of ``contour`` when it is dashed by arc length: dash and gap of ``period`` each."""
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(contour, axis=0), axis=1))])
    on = (s // period) % 2 == 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
    return [contour[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= 2]


def _caliper(draw: ImageDraw.ImageDraw, caliper: Caliper, width: int) -> None:
    """The diameter from ``start`` to ``end`` with a tick across each end, as on a scanner's measurement."""
    start, end = np.asarray(caliper.start, dtype=np.float64), np.asarray(caliper.end, dtype=np.float64)
    length = float(np.linalg.norm(end - start))
    if length == 0.0:
        return
    across = np.array([-(end - start)[1], (end - start)[0]]) / length * TICK_WIDTHS * width
    draw.line(_xy(np.stack([start, end])), fill=CALIPER_COLOUR, width=width)
    for point in (start, end):
        draw.line(_xy(np.stack([point - across, point + across])), fill=CALIPER_COLOUR, width=width)


def draw_outline(display: np.ndarray, finding: LesionFinding, calipers: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 -> a copy with the principal lesion's outline (solid, :data:`OUTLINE_COLOUR`), the other
    outlined lesions (dashed, :data:`OTHER_COLOUR`) and, with ``calipers``, the principal lesion's long and short
    axis (:data:`CALIPER_COLOUR`) drawn :func:`line_width` px wide. The masks must have the image's (H, W): the
    finding is over the original image, so draw before any crop or resize."""
    image = np.asarray(display)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {image.shape} dtype {image.dtype}")
    if finding.principal.mask.shape != image.shape[:2]:
        raise ValueError(f"the outline's shape {finding.principal.mask.shape} does not match the image's "
                         f"{image.shape[:2]}; draw on the image the prediction was made from, before cropping")
    width = line_width(image.shape)
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for other in finding.lesions[1:]:
        for piece in _dashes(outline_polygon(other.mask), DASH_WIDTHS * width):
            draw.line(_xy(piece), fill=OTHER_COLOUR, width=max(1, width - 1))
    draw.line(_xy(outline_polygon(finding.principal.mask)), fill=OUTLINE_COLOUR, width=width, joint="curve")
    if calipers:
        geometry = finding.principal.geometry
        _caliper(draw, geometry.long_axis, width)
        _caliper(draw, geometry.short_axis, width)
    return np.asarray(canvas, dtype=np.uint8).copy()


@dataclass(frozen=True)
class LesionDescription:
    """What is said about the outlined lesion: ``rows`` of (label, value), the source sentence, the scale
    sentence (where the millimetres come from, or why sizes are in pixels), and the drawing's legend."""

    rows: tuple[tuple[str, str], ...]
    source: str
    scale: str
    legend: str = LEGEND


def _axes(lesion: OutlinedLesion) -> tuple[str, str, str]:
    """(long, short, unit): "14.2", "9.1", "mm" from the image's calibration, else "142", "91", "px"."""
    if lesion.scale:
        return f"{lesion.long_axis_mm:.1f}", f"{lesion.short_axis_mm:.1f}", "mm"
    g = lesion.geometry
    return f"{g.long_axis.length_px:.0f}", f"{g.short_axis.length_px:.0f}", "px"


def _size(lesion: OutlinedLesion) -> str:
    """"14.2 x 9.1 mm" or "142 x 91 px"."""
    long, short, unit = _axes(lesion)
    return f"{long} x {short} {unit}"


def lesion_summary(finding: LesionFinding) -> str:
    """One short phrase for a terminal line: "lesion 14.2 x 9.1 mm, oval, parallel" (pixels: "(no calibration)")."""
    lesion, g = finding.principal, finding.principal.geometry
    unit = "" if lesion.scale else " (no calibration)"
    more = f", {len(finding.lesions) - 1} more outlined" if len(finding.lesions) > 1 else ""
    return f"lesion {_size(lesion)}{unit}, {g.shape.value}, {g.orientation.value}{more}"


def describe_lesion(finding: LesionFinding) -> LesionDescription:
    """The measurements and descriptors of the principal lesion, with the number behind each descriptor (the rules
    are in :mod:`medapp.lesion.geometry`), and the other outlined lesions' sizes."""
    lesion, g = finding.principal, finding.principal.geometry
    if lesion.scale:
        depth = f"{lesion.depth_mm:.1f} mm"
        area = f"{lesion.area_mm2:.0f} mm²" if lesion.area_mm2 >= 10 else f"{lesion.area_mm2:.1f} mm²"
        scale = f"Millimetres from the image's own calibration: {lesion.scale.source}."
    else:
        depth, area = f"{g.depth_px:.0f} px", f"{g.area_px} px²"
        scale = f"Sizes in pixels: {lesion.no_mm_reason}."
    long, short, unit = _axes(lesion)
    shape = (f"{g.shape.value} (solidity {g.solidity:.2f}, ellipse residual {g.ellipse_residual:.2f}, "
             f"short/long axis {g.axis_ratio:.2f})")
    rows = [
        ("Size", f"long axis {long} {unit}, short axis {short} {unit} (perpendicular to it)"),
        ("Depth, area", f"top edge {depth} below the top of the scan; area {area}"),
        ("Orientation", f"{g.orientation.value} (height/width {g.aspect_ratio:.2f})"),
        ("Shape", shape),
        ("Margin", f"{g.margin.value} (roughness {g.roughness:.2f}, solidity {g.solidity:.2f})"),
        ("Outline confidence", f"{finding.confidence:.2f}"),
    ]
    if len(finding.lesions) > 1:
        others = "; ".join(_size(other) for other in finding.lesions[1:])
        rows.append(("Other lesions", (f"{len(finding.lesions) - 1} more outlined (dashed): {others}. The one "
                                       "measured is the lesion the outline is most sure of")))
    return LesionDescription(tuple(rows), SOURCE_SENTENCE, scale)
