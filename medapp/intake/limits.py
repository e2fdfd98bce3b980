"""Intake limits: what image sizes medapp accepts, checked *before* any pixel is decoded.

A 40 kB PNG can declare 30000 x 30000 pixels and expand to gigabytes when decoded (a "decompression bomb"), so the
declared dimensions are read from the header and refused first. An image a few pixels wide cannot be judged by a
model trained on ultrasound scans hundreds of pixels wide, so it is refused too, naming the minimum.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidImageError, UnsupportedImageError
from ..settings import MB, Settings


@dataclass(frozen=True)
class IntakeLimits:
    """Limits for :func:`medapp.intake.imaging.load_image`; the defaults and their reasons are
    :class:`medapp.settings.Settings`' (set through ``MEDAPP_MAX_FILE_MB``, ``MEDAPP_MAX_PIXELS``,
    ``MEDAPP_MIN_SIDE``)."""

    max_file_bytes: int = Settings.max_file_bytes
    max_pixels: int = Settings.max_pixels
    min_side: int = Settings.min_side

    @classmethod
    def from_settings(cls, settings: Settings) -> IntakeLimits:
        return cls(settings.max_file_bytes, settings.max_pixels, settings.min_side)


def check_file_size(n_bytes: int, limits: IntakeLimits) -> None:
    """Refuse files over ``limits.max_file_bytes`` before reading them whole."""
    if n_bytes > limits.max_file_bytes:
        raise UnsupportedImageError(
            f"file is {n_bytes / MB:.1f} MB, over the {limits.max_file_bytes / MB:.0f} MB limit; "
            "export a single image or a smaller series"
        )


def read_regular_file(path: str | Path, limits: IntakeLimits) -> bytes:
    """The bytes of a regular file (a link to one is followed), its size checked before reading and the read
    bounded by the limit too (the file may grow meanwhile). A device (``/dev/zero``), a pipe (which would block
    for ever) or a folder is refused; the message never repeats the path."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: opening a FIFO must not wait for a writer
    except FileNotFoundError as e:
        raise InvalidImageError("no such file; check the path") from e
    except IsADirectoryError as e:
        raise InvalidImageError("is a folder, not a file; choose the image files inside it") from e
    except OSError as e:
        raise InvalidImageError(f"cannot read the file ({type(e).__name__}); check its permissions") from e
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InvalidImageError("is a folder, not a file; choose the image files inside it")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidImageError("is not a regular file (a device, pipe or socket); choose an image file")
        check_file_size(info.st_size, limits)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limits.max_file_bytes + 1)
    except OSError as e:
        raise InvalidImageError(f"cannot read the file ({type(e).__name__}); check its permissions") from e
    finally:
        os.close(fd)
    check_file_size(len(data), limits)
    return data


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


def check_frame_index(frame: int | None, n_frames: int) -> int:
    """The 0-based frame to decode (None: the first), refused when the file has no such frame."""
    index = 0 if frame is None else frame
    if not 0 <= index < n_frames:
        raise InvalidImageError(f"frame {index} requested but the file has {n_frames} (0 to {n_frames - 1})")
    return index
