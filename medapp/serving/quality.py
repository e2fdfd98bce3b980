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


def assess_quality(pixels: np.ndarray, limits: QualityLimits) -> list[QualityFlag]:
    """Flags for an (H, W) float32 image in [0, 1]; an empty list means no quality problem was found."""
    if pixels.ndim != 2:
        raise ValueError(f"expected a (H, W) grayscale array, got shape {pixels.shape}")
    flags: list[QualityFlag] = []
    if min(pixels.shape) < limits.min_side:
        flags.append(QualityFlag.TOO_SMALL)
    # subsample large images: the statistics below are stable to well under 1% on 64k pixels
    step = max(1, int(np.sqrt(pixels.size / 65536)))
    sample = pixels[::step, ::step]
    if float(sample.std()) < limits.min_std:
        flags.append(QualityFlag.NEARLY_CONSTANT)
    elif (float((sample >= limits.white_level).mean()) > limits.max_white_share
          or float((sample <= limits.black_level).mean()) > limits.max_black_share):
        flags.append(QualityFlag.SATURATED)
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
    return ("image is largely clipped to pure white or pure black (saturated); re-export without burned-in "
            "overlays or extreme gain")
