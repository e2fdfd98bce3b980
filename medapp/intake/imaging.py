"""Image intake: bytes, a path or a file object -> :class:`MedicalImage`, or a typed refusal.

The type is decided from the content, never the file name: a ``.dcm`` uploaded as ``application/octet-stream``, a
DICOM without extension or a PNG named ``.jpg`` all load. Raster formats (PNG 8/16-bit, JPEG, BMP, TIFF) go through
Pillow, DICOM through :mod:`medapp.intake.dicom`. Declared dimensions are checked against the
:class:`~medapp.intake.limits.IntakeLimits` before any pixel is decoded. Every failure is an
:class:`~medapp.errors.InvalidImageError` (not a readable image) or :class:`~medapp.errors.UnsupportedImageError`
(readable, but medapp will not judge it), whose message says what was found and what to do; no other exception
leaves :func:`load_image`. File names are never logged (they often contain the patient's name).
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from ..errors import InvalidImageError, MedAppError, UnsupportedImageError
from ..settings import get_settings
from .color import luma_601
from .limits import IntakeLimits, check_dimensions, check_file_size, check_frame_index, read_regular_file
from .medical_image import MedicalImage

log = logging.getLogger(__name__)
# Pillow warns (to stderr, with its source line) when an image declares over Image.MAX_IMAGE_PIXELS (89 Mpx) and
# refuses at twice that. Intake checks every declared size, page and frame against its own limit before decoding
# (medapp.intake.limits), so the warning only duplicates a refusal as library noise on the terminal (issue 12's
# battery: a 144 Mpx PNG printed it). Filtered once, process-wide: warnings.catch_warnings is not thread-safe.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

RASTER_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
# Magic numbers of what clinicians actually upload; anything else is "unrecognised".
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"BM", "bmp"), (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"), (b"%PDF", "pdf"), (b"GIF8", "gif"), (b"PK\x03\x04", "zip"), (b"\x1f\x8b", "gzip"),
    (b"\x00\x00\x00\x0cjP  ", "jp2"), (b"\xff\x4f\xff\x51", "jp2"),
)  # fmt: skip
# First tags of a dataset written without the Part 10 header, little and big endian: (0002,0000), (0002,0001),
# (0008,0005), (0008,0008), (0008,0012), (0008,0016). Anything else of unknown kind still gets a parse attempt.
_BARE_DICOM_STARTS = frozenset(
    {b"\x02\x00\x00\x00", b"\x02\x00\x01\x00", b"\x08\x00\x05\x00", b"\x08\x00\x08\x00", b"\x08\x00\x12\x00",
     b"\x08\x00\x16\x00", b"\x00\x02\x00\x00", b"\x00\x08\x00\x05", b"\x00\x08\x00\x08", b"\x00\x08\x00\x16"}
)  # fmt: skip
_REFUSED_KINDS = {
    "pdf": "a PDF document, not an image; export the image itself as PNG, JPEG or DICOM",
    "gif": "a GIF image; medapp reads PNG, JPEG, BMP, TIFF and DICOM, convert it to PNG",
    "webp": "a WebP image; medapp reads PNG, JPEG, BMP, TIFF and DICOM, convert it to PNG",
    "jp2": "a bare JPEG 2000 file; medapp reads JPEG 2000 inside DICOM only, upload the DICOM or a PNG",
    "zip": "a ZIP archive; extract it and upload the image files one by one",
    "gzip": "a gzip-compressed file; decompress it and upload the image",
    "svg": "an SVG drawing, not a scan; export the image as PNG",
    "text": "text, not an image; upload a PNG, JPEG, BMP, TIFF or DICOM file",
}


def looks_like_dicom(data: bytes) -> bool:
    """True for a Part 10 file ("DICM" at offset 128, PS3.10 7.1) or a bare dataset starting at group 0002/0008."""
    if data[128:132] == b"DICM":
        return True
    return data[:4] in _BARE_DICOM_STARTS


def sniff_kind(data: bytes) -> str:
    """The content type from the first bytes: a raster format, "dicom", a refused kind, or "unknown"."""
    if not data:
        return "empty"
    if looks_like_dicom(data):
        return "dicom"
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    head = data[:4096]
    if not any(b < 9 or 13 < b < 32 for b in head):  # no control bytes: text (CSV, JSON, HTML, a note ...)
        return "svg" if b"<svg" in head.lower() else "text"
    return "unknown"


def _read_bytes(source: bytes | bytearray | memoryview | str | Path | IO[bytes], limits: IntakeLimits) -> bytes:
    """The whole input, refusing over-limit files before reading them (messages never repeat the path)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        check_file_size(len(source), limits)
        return bytes(source)
    if isinstance(source, (str, Path)):
        return read_regular_file(source, limits)
    if not hasattr(source, "read"):
        raise InvalidImageError(f"expected bytes, a path or a binary file object, got {type(source).__name__}")
    try:
        if getattr(source, "seekable", lambda: False)():
            position = source.tell()
            check_file_size(source.seek(0, io.SEEK_END) - position, limits)
            source.seek(position)
        data = source.read(limits.max_file_bytes + 1)
    except MedAppError:
        raise
    except (OSError, ValueError, AttributeError) as e:
        raise InvalidImageError(f"cannot read the uploaded file ({type(e).__name__}); upload it again") from e
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidImageError("the file object returned text, not bytes; open the file in binary mode ('rb')")
    check_file_size(len(data), limits)
    return bytes(data)


def _raster_arrays(im: Image.Image, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A loaded Pillow image -> (pixels (H, W) float32 [0, 1], display (H, W, 3) uint8), by mode."""
    mode = im.mode
    if mode == "L":  # one float32 pass each (bit-identical to x / 255): intake stays near a bare decode's time
        gray8 = np.asarray(im)
        return np.divide(gray8, np.float32(255), dtype=np.float32), np.stack([gray8, gray8, gray8], axis=-1)
    if mode == "RGB":
        return np.divide(np.asarray(im.convert("L")), np.float32(255), dtype=np.float32), np.asarray(im)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(im).astype(np.float64)
        if values.min() >= 0 and values.max() <= 65535:
            pixels = (values / 65535.0).astype(np.float32)
            notes.append("16-bit image scaled over its full 16-bit range")
        else:
            lo, hi = float(values.min()), float(values.max())
            pixels = ((values - lo) / (hi - lo or 1.0)).astype(np.float32)
            notes.append("32-bit integer image contrast stretched between its minimum and maximum")
        return pixels, np.repeat(np.round(pixels * 255).astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":
        values = np.asarray(im, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InvalidImageError("floating-point image contains NaN or infinite values; export it as PNG")
        lo, hi = float(values.min()), float(values.max())
        pixels = ((values - lo) / (hi - lo or 1.0)).astype(np.float32)
        notes.append("floating-point image contrast stretched between its minimum and maximum")
        return pixels, np.repeat(np.round(pixels * 255).astype(np.uint8)[..., None], 3, axis=2)
    has_alpha = "A" in mode or "a" in mode or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        alpha = rgba[..., 3:4].astype(np.uint16)
        rgb = rgba[..., :3]
        if (alpha < 255).any():
            rgb = ((rgb.astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
            notes.append("transparent areas shown as black")
    else:
        rgb = np.asarray(im.convert("RGB"))
        if mode not in ("P", "RGBX"):
            notes.append(f"converted {mode} colour to RGB")
    return luma_601(rgb), rgb


def _load_raster(data: bytes, kind: str, frame: int | None, limits: IntakeLimits) -> MedicalImage:
    notes: list[str] = []
    try:
        im = Image.open(io.BytesIO(data), formats=RASTER_FORMATS)
    except Image.DecompressionBombError as e:  # Pillow's own guard, at twice Image.MAX_IMAGE_PIXELS
        found = re.search(r"\((\d+) pixels\)", str(e))
        pillow_limit = 2 * Image.MAX_IMAGE_PIXELS / 1e6
        declared = f"{int(found.group(1)) / 1e6:.0f} Mpx" if found else f"over {pillow_limit:.0f} Mpx"
        raise UnsupportedImageError(
            f"{kind.upper()} image declares {declared}, over the limit of {limits.max_pixels / 1e6:.0f} Mpx; "
            "refused before decoding (possible decompression bomb)"
        ) from e
    except Exception as e:
        raise InvalidImageError(
            f"file starts like a {kind.upper()} but its header is damaged or truncated; re-export the image"
        ) from e
    with im:
        width, height = im.size
        check_dimensions(height, width, limits, what=f"{kind.upper()} image")
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        index = check_frame_index(frame, n_frames)
        if im.mode == "1":
            raise UnsupportedImageError(
                "image is 1-bit black and white (a mask or a scanned drawing, not a scan); upload the grey image"
            )
        try:
            if index:
                im.seek(index)
                # each page of a TIFF (each frame of a GIF) has its own size: check the one to be decoded
                check_dimensions(im.size[1], im.size[0], limits, what=f"{kind.upper()} page {index + 1}")
            im.load()
        except MedAppError:
            raise
        except Exception as e:
            reason = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
            raise InvalidImageError(f"{kind.upper()} image is damaged or truncated ({reason}); re-export it") from e
        bit_depth = 16 if im.mode.startswith("I;16") else None
        if im.getexif().get(0x0112, 1) not in (1, None):  # EXIF Orientation (CIPA DC-008 tag 274)
            im = ImageOps.exif_transpose(im)
            notes.append("turned upright as the file's EXIF orientation says")
        pixels, display = _raster_arrays(im, notes)
        mode = im.mode
    if n_frames > 1:
        notes.append(f"frame {index + 1} of {n_frames}")
    log.info("decoded a %s image: %dx%d px, mode %s", kind.upper(), display.shape[1], display.shape[0], mode)
    return MedicalImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        display=np.ascontiguousarray(display, dtype=np.uint8),
        source_kind=kind,
        original_size=(int(pixels.shape[0]), int(pixels.shape[1])),
        frame_index=index,
        frame_count=n_frames,
        metadata={"format": kind.upper(), "mode": mode, "bit_depth": bit_depth or 8},  # privacy.SAFE_METADATA_KEYS
        notes=notes,
    )


def _load_dicom(data: bytes, frame: int | None, limits: IntakeLimits, *, sniffed: bool) -> MedicalImage:
    """DICOM by its marker (``sniffed``), or content of unknown kind that pydicom can parse as a dataset."""
    from . import dicom

    if sniffed:
        return dicom.decode_dicom(dicom.read_dataset(data), frame=frame, limits=limits)
    unrecognised = "not a PNG, JPEG, BMP, TIFF or DICOM image (unrecognised content); upload one of those"
    try:
        ds = dicom.read_dataset(data)
    except InvalidImageError as e:
        raise InvalidImageError(unrecognised) from e
    if "PixelData" not in ds and "SOPClassUID" not in ds:
        raise InvalidImageError(unrecognised)
    return dicom.decode_dicom(ds, frame=frame, limits=limits)


def load_image(
    source: bytes | str | Path | IO[bytes],
    *,
    frame: int | None = None,
    limits: IntakeLimits | None = None,
) -> MedicalImage:
    """Decode ``source`` (bytes, a path or a binary file object) into a :class:`MedicalImage`.

    ``frame`` is the 0-based frame of a multi-frame DICOM or TIFF; the default ``None`` means the first frame
    (index 0), which is defined for every file. ``limits`` default to the deployment's (:mod:`medapp.settings`).
    Raises :class:`InvalidImageError` or :class:`UnsupportedImageError`, and nothing else.
    """
    limits = limits or IntakeLimits.from_settings(get_settings())
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 0):
        raise InvalidImageError(f"frame must be a non-negative integer (0 is the first), got {frame!r}")
    data = _read_bytes(source, limits)
    kind = sniff_kind(data)
    try:
        if kind == "empty":
            raise InvalidImageError("file is empty (0 bytes); upload the image again")
        if kind in _REFUSED_KINDS:
            raise (InvalidImageError if kind == "text" else UnsupportedImageError)(f"file is {_REFUSED_KINDS[kind]}")
        if kind in ("png", "jpeg", "bmp", "tiff"):
            return _load_raster(data, kind, frame, limits)
        return _load_dicom(data, frame, limits, sniffed=kind == "dicom")
    except MedAppError:
        raise
    except MemoryError as e:
        raise UnsupportedImageError("image is too large to decode in memory; upload a smaller image") from e
    except Exception as e:  # the contract: callers only ever see MedAppError; the cause stays chained
        raise InvalidImageError(
            f"could not read the {kind} file ({type(e).__name__}); it may be damaged, re-export it"
        ) from e
