"""Intake limits: what image sizes medapp accepts, checked *before* any pixel is decoded.

A 40 kB PNG can declare 30000 x 30000 pixels and expand to gigabytes when decoded (a "decompression bomb"), so the
declared dimensions are read from the header and refused first. An image a few pixels wide cannot be judged by a
model trained on ultrasound scans hundreds of pixels wide, so it is refused too, naming the minimum.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import UnsupportedImageError

MIB = 1024 * 1024


@dataclass(frozen=True)
class IntakeLimits:
    """Limits for :func:`medapp.imaging.load_image`.

    ``max_file_bytes`` bounds what is read into memory at all; ``max_pixels`` bounds one decoded frame (40 Mpx is
    larger than any mammogram or ultrasound, and keeps the float32 working copies under ~200 MB each);
    ``min_side`` is the shortest side worth judging.
    """

    max_file_bytes: int = 128 * MIB
    max_pixels: int = 40_000_000
    min_side: int = 32

    @classmethod
    def from_env(cls) -> IntakeLimits:
        """Defaults, overridden by ``MEDAPP_MAX_FILE_MB``, ``MEDAPP_MAX_PIXELS`` and ``MEDAPP_MIN_SIDE`` if set."""
        base = cls()
        try:
            return cls(
                max_file_bytes=int(float(os.environ.get("MEDAPP_MAX_FILE_MB", base.max_file_bytes / MIB)) * MIB),
                max_pixels=int(os.environ.get("MEDAPP_MAX_PIXELS", base.max_pixels)),
                min_side=int(os.environ.get("MEDAPP_MIN_SIDE", base.min_side)),
            )
        except ValueError as e:
            raise ValueError(f"invalid intake limit in the environment ({e}); use plain numbers") from e


DEFAULT_LIMITS = IntakeLimits()


def check_file_size(n_bytes: int, limits: IntakeLimits) -> None:
    """Refuse files over ``limits.max_file_bytes`` before reading them whole."""
    if n_bytes > limits.max_file_bytes:
        raise UnsupportedImageError(
            f"file is {n_bytes / MIB:.1f} MB, over the {limits.max_file_bytes / MIB:.0f} MB limit; "
            "export a single image or a smaller series"
        )


def check_dimensions(height: int, width: int, limits: IntakeLimits, *, what: str = "image") -> None:
    """Refuse declared (height, width) that are too large (decompression bomb) or too small to judge."""
    if height <= 0 or width <= 0:
        raise UnsupportedImageError(f"{what} declares an empty size ({width}x{height} px); the file is damaged")
    if height * width > limits.max_pixels:
        raise UnsupportedImageError(
            f"{what} declares {width}x{height} px ({height * width / 1e6:.0f} Mpx), over the limit of "
            f"{limits.max_pixels / 1e6:.0f} Mpx; refused before decoding (possible decompression bomb)"
        )
    if min(height, width) < limits.min_side:
        raise UnsupportedImageError(
            f"{what} is {width}x{height} px, too small to judge; the shortest side must be at least "
            f"{limits.min_side} px, upload the original image rather than a thumbnail"
        )
