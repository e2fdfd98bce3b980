"""Colour to grey exactly as the model's training images were made (Pillow's "L" conversion)."""

from __future__ import annotations

import numpy as np

# The model was trained on Pillow "L" images: L = (299 R + 587 G + 114 B) / 1000 (ITU-R BT.601), with Pillow's
# fixed-point rounding, reproduced exactly here for colour DICOM.
_LUMA_FIXED = (19595, 38470, 7471)
UNIT8 = np.arange(256, dtype=np.float32) / np.float32(255.0)  # uint8 -> [0, 1] table, bit-identical to x / 255


def luma_601(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) float32 in [0, 1], bit-identical to Pillow's ``convert("L")`` / 255."""
    x = rgb.astype(np.uint32)
    r, g, b = _LUMA_FIXED
    luma = (x[..., 0] * r + x[..., 1] * g + x[..., 2] * b + 0x8000) >> 16
    return UNIT8[luma]
