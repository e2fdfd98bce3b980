"""Image intake: bytes, a path or a file object -> :class:`MedicalImage`.

(First version: raster images only. DICOM and the full refusal rules arrive with the intake issue.)
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidImageError


@dataclass
class MedicalImage:
    """A decoded image. ``pixels`` (H, W) float32 in [0, 1] feeds the model; ``display`` (H, W, 3) uint8 is for eyes."""

    pixels: np.ndarray
    display: np.ndarray
    source_kind: str
    original_size: tuple[int, int]  # (height, width)
    pixel_spacing_mm: tuple[float, float] | None = None
    frame_index: int = 0
    frame_count: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _read_bytes(source: bytes | str | Path | IO[bytes]) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    return source.read()


def load_image(source: bytes | str | Path | IO[bytes], *, frame: int | None = None) -> MedicalImage:
    """Decode a raster image to grayscale pixels (ITU-R 601 luma, as Pillow's "L") and an RGB display copy."""
    data = _read_bytes(source)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"))
            gray = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
            kind = (im.format or "raster").lower()
    except (UnidentifiedImageError, OSError) as e:
        raise InvalidImageError(f"could not read the image ({e}); upload a PNG, JPEG or DICOM file") from e
    return MedicalImage(pixels=gray, display=rgb, source_kind=kind, original_size=gray.shape)
