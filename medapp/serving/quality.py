"""Image-quality flags: cheap pixel checks that catch inputs no model output should be trusted on.

The limits are the model card's (``serving.quality``, :class:`~medapp.model.card.QualityLimits`, which says how
they were set against BUSI), so a flag means the image is unlike anything that model was trained on.
"""

from __future__ import annotations

import numpy as np

from ..choices import Choice
from ..model.card import QualityLimits


class QualityFlag(Choice):
    TOO_SMALL = "too_small"
    NEARLY_CONSTANT = "nearly_constant"
    SATURATED = "saturated"
    COLOUR_FLOW = "colour_flow"


def _subsample(image: np.ndarray) -> np.ndarray:
    """Every k-th row and column, k chosen to leave about 64k pixels: the statistics here are stable to well under
    1% on that many."""
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 65536)))
    return image[::step, ::step]


def colour_share(display: np.ndarray, level: int) -> float:
    """Share of pixels whose channels differ by at least ``level`` (of 255): colour-flow or elastography boxes.

    Grey pixels have equal channels whatever their brightness, so burned-in grey text does not count; the small
    coloured marks some scanners draw (calipers, a logo) stay far below a Doppler box.
    """
    sample = _subsample(display).astype(np.int16)
    return float(((sample.max(axis=2) - sample.min(axis=2)) >= level).mean())


def assess_quality(pixels: np.ndarray, limits: QualityLimits, display: np.ndarray | None = None) -> list[QualityFlag]:
    """Flags for an (H, W) float32 image in [0, 1] and, when given, its (H, W, 3) uint8 display colours; an empty
    list means no quality problem was found."""
    if pixels.ndim != 2:
        raise ValueError(f"expected a (H, W) grayscale array, got shape {pixels.shape}")
    flags: list[QualityFlag] = []
    if min(pixels.shape) < limits.min_side:
        flags.append(QualityFlag.TOO_SMALL)
    sample = _subsample(pixels)
    if float(sample.std()) < limits.min_std:
        flags.append(QualityFlag.NEARLY_CONSTANT)
    elif (float((sample >= limits.white_level).mean()) > limits.max_white_share
          or float((sample <= limits.black_level).mean()) > limits.max_black_share):
        flags.append(QualityFlag.SATURATED)
    if display is not None and display.ndim == 3 and display.shape[2] == 3 \
            and colour_share(display, limits.colour_level) > limits.max_colour_share:
        flags.append(QualityFlag.COLOUR_FLOW)
    return flags


def describe_flag(flag: QualityFlag | str, limits: QualityLimits, pixels_shape: tuple[int, int] | None = None) -> str:
    """Clinician wording for one flag: what was found and what to do."""
    flag = QualityFlag.parse(str(flag))
    if flag is QualityFlag.TOO_SMALL:
        size = f" ({pixels_shape[1]}x{pixels_shape[0]} px)" if pixels_shape else ""
        return (f"image is too small to judge{size}; the shortest side must be at least {limits.min_side} px — "
                "use the original scan, not a thumbnail")
    if flag is QualityFlag.NEARLY_CONSTANT:
        return "image is nearly uniform (blank or almost one grey level); check the export or the frame chosen"
    if flag is QualityFlag.COLOUR_FLOW:
        return (f"more than {limits.max_colour_share:.0%} of the image is in colour (a Doppler or elastography "
                "overlay); the model reads grey-scale B-mode only — send the B-mode frame without the colour box")
    return ("image is largely clipped to pure white or pure black (saturated); re-export without burned-in "
            "overlays or extreme gain")


BORDERLINE_SCOPE = 1.25  # a scope score within 25% above its limit is "just outside": worth another view


def refusal_advice(scope_score: float, scope_threshold: float, quality_flags: list[str]) -> str:
    """What a clinician can do about a refused image: how far outside it is, and what to try."""
    tips = []
    if scope_score > scope_threshold:
        ratio = scope_score / scope_threshold if scope_threshold > 0 else float("inf")
        if ratio <= BORDERLINE_SCOPE:
            tips.append(f"Borderline: the scope score {scope_score:.2f} is just above its limit {scope_threshold:.2f} "
                        f"({ratio - 1:.0%} over). Another view of the lesion, or a frame without calipers, text or "
                        "colour boxes over it, will often be accepted.")
        else:
            tips.append(f"Far outside: the scope score {scope_score:.2f} is {ratio:.1f} times its limit "
                        f"{scope_threshold:.2f}; this does not look like a grey-scale breast ultrasound frame.")
    if quality_flags:
        tips.append("Fix the image problem above (a larger, unsaturated grey-scale frame) and upload it again.")
    tips.append("You can still record your own assessment and download a report documenting the refusal.")
    return " ".join(tips)
