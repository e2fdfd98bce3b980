"""DICOM bytes -> :class:`~medapp.intake.medical_image.MedicalImage`, through pydicom and the pylibjpeg plugins.

A DICOM image is not ready to look at as stored: stored values pass through the modality LUT (or rescale
slope/intercept) into physical units, then the VOI LUT (or window centre/width) picks the range a radiologist
would see, and MONOCHROME1 means "bright is low". Skipping any step feeds the model a wrongly decoded image that
it answers confidently. Every step taken is recorded in ``notes``. Only the frame asked for is decoded.
"""

from __future__ import annotations

import io
import logging
import struct

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import get_frame
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..errors import InvalidImageError, MedAppError, UnsupportedImageError
from .codestream import declared_size
from .color import luma_601
from .limits import IntakeLimits, check_dimensions, check_frame_index
from .medical_image import SPACING_IMAGER, SPACING_PIXEL_SPACING, SPACING_US_REGION, MedicalImage
from .privacy import safe_metadata
from .us_regions import region_calibrations, scan_region

log = logging.getLogger(__name__)


class _NoDecoderTracebacks(logging.Filter):
    """pydicom logs a traceback for each decoder plugin that fails before it raises; medapp's typed error already
    says what failed (the cause stays chained), so those records would only print tracebacks on a clinician's
    terminal (issue 12)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


logging.getLogger("pydicom.pixels.decoders.base").addFilter(_NoDecoderTracebacks())  # where pydicom logs them

GRAY = ("MONOCHROME1", "MONOCHROME2")
COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")  # pydicom returns these as RGB
# Percentiles of the robust min-max used when the file gives no window: ignores a few hot or dead pixels.
ROBUST_PERCENTILES = (0.5, 99.5)
_VOI_KEYWORDS = ("WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence")
# Real objects nest a handful of levels (a structured report's content tree, the deepest common case, rarely
# passes 10); anything deeper than this is refused before any recursive processing.
MAX_SEQUENCE_DEPTH = 32
_TOO_DEEP = (f"DICOM sequences are nested more than {MAX_SEQUENCE_DEPTH} deep; real images nest a few levels, so "
             "the file is malformed or hostile; re-export it from the scanner or PACS")
_MODALITY_KEYWORDS = ("RescaleSlope", "RescaleIntercept", "ModalityLUTSequence")


def _check_nesting(ds: Dataset) -> None:
    """Refuse sequences nested deeper than :data:`MAX_SEQUENCE_DEPTH`, walking them without recursion: a file
    nested 3,000 deep drove recursive processing (de-identification's copy) past 5 GB (issue 12)."""
    stack = [(ds, 1)]
    while stack:
        item, depth = stack.pop()
        for raw in item.elements():  # raw elements: only sequences are parsed further
            if raw.VR != "SQ":
                continue
            if depth >= MAX_SEQUENCE_DEPTH:
                raise UnsupportedImageError(_TOO_DEEP)
            stack.extend((sub, depth + 1) for sub in item[raw.tag].value or ())


def read_dataset(data: bytes) -> Dataset:
    """Parse DICOM bytes (with or without the Part 10 preamble) into a Dataset; damaged headers are refused."""
    try:
        ds = dcmread(io.BytesIO(data), force=True)
        if len(ds) == 0 or not any(t.group > 0x0002 for t in ds.keys()):
            raise InvalidImageError("DICOM file holds no dataset (only a header); the file is empty or truncated")
        ds.get("SOPClassUID")  # forces the first values to parse, so header damage surfaces here
        _check_nesting(ds)
    except MedAppError:
        raise
    except RecursionError as e:  # pydicom parses nested sequences recursively: hundreds of levels end here
        raise UnsupportedImageError(_TOO_DEEP) from e
    except Exception as e:
        raise InvalidImageError(
            f"DICOM header is damaged ({type(e).__name__}: {_first_line(e)}); re-export the file from the PACS"
        ) from e
    return ds


def _first_line(e: BaseException, limit: int = 240) -> str:
    """The exception's text on one line (pydicom lists each plugin's reason on its own line)."""
    return " ".join(line.strip() for line in str(e).strip().splitlines())[:limit]


def _describe_non_image(ds: Dataset) -> str:
    """What a DICOM without Pixel Data (7FE0,0010) most likely is, in words."""
    modality = str(ds.get("Modality", "") or "")
    sop = UID(str(ds.get("SOPClassUID", "") or "")).name
    if "DirectoryRecordSequence" in ds:
        return "a DICOMDIR index of a disc; open the image files it lists instead"
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return "floating-point pixels, a parametric map; medapp reads integer images only"
    if "EncapsulatedDocument" in ds:
        return "an encapsulated document (PDF or CDA), not an image"
    if modality == "SR" or "SR" in sop.split():
        return "a structured report, not an image"
    if "WaveformSequence" in ds:
        return "a waveform (e.g. ECG), not an image"
    if modality.startswith("RT"):
        return f"a radiotherapy object ({modality}), not an image"
    return f"SOP class {sop}" if sop else "an object of unknown type"


def _ensure_transfer_syntax(ds: Dataset, notes: list[str]) -> UID:
    """Transfer Syntax UID from the file meta, or inferred from the encoding for native (uncompressed) data."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        meta = ds.file_meta = FileMetaDataset()
    ts = meta.get("TransferSyntaxUID")
    if ts:
        return UID(ts)
    if ds["PixelData"].is_undefined_length:
        raise InvalidImageError("DICOM pixel data is compressed but the file names no transfer syntax; re-export it")
    implicit, little = ds.original_encoding
    ts = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    meta.TransferSyntaxUID = ts
    notes.append(f"file names no transfer syntax: read as uncompressed {ts.name}")
    return ts


def _lut_view(ds: Dataset, index: int) -> Dataset:
    """The modality and VOI attributes that apply to frame ``index``.

    Enhanced multi-frame objects keep them in functional groups (PS3.3 C.7.6.16.2.9 Pixel Value Transformation,
    C.7.6.16.2.10 Frame VOI LUT), per frame or shared; classic objects at the top level.
    """
    view = Dataset()
    view.file_meta = ds.file_meta
    for keyword in ("BitsStored", "BitsAllocated", "PixelRepresentation", "PhotometricInterpretation",
                    *_MODALITY_KEYWORDS, *_VOI_KEYWORDS):  # fmt: skip
        if keyword in ds:
            view[keyword] = ds[keyword]
    for groups_kw in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(groups_kw)
        if not groups:
            continue
        item = groups[min(index, len(groups) - 1)] if groups_kw.startswith("PerFrame") else groups[0]
        for macro in ("PixelValueTransformationSequence", "FrameVOILUTSequence"):
            if item.get(macro):
                for elem in item[macro][0]:
                    view[elem.tag] = elem
    return view


def _apply_window(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Window centre/width to [0, 1]: PS3.3 C.11.2.1.2 (LINEAR), C.11.2.1.3.1 (SIGMOID), C.11.2.1.3.2 (EXACT)."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if width <= 1:
        return (x > center - 0.5).astype(np.float64)
    return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _first_value(value: object) -> float:
    return float(value[0]) if isinstance(value, MultiValue | list | tuple) else float(value)  # type: ignore[index]


def _robust_unit(x: np.ndarray, sample: np.ndarray) -> tuple[np.ndarray, bool]:
    """Min-max scale of ``x`` between the ROBUST_PERCENTILES of ``sample``; a flat image becomes 0."""
    lo, hi = np.percentile(sample, ROBUST_PERCENTILES)
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        return np.zeros(x.shape), False
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0), True


def _values_to_unit(values: np.ndarray, view: Dataset, sample_at: np.ndarray, notes: list[str]) -> np.ndarray:
    """Stored values -> [0, 1]: modality LUT or rescale (PS3.3 C.11.1), then VOI LUT or window (C.11.2), else a
    robust min-max over the image's values at the flat positions ``sample_at``."""
    bits_stored = int(view.get("BitsStored", values.dtype.itemsize * 8))
    signed = int(view.get("PixelRepresentation", 0)) == 1
    x, rescaled = values, False
    if view.get("ModalityLUTSequence"):
        x, rescaled = apply_modality_lut(values, view), True
        notes.append("applied the modality LUT")
    elif "RescaleSlope" in view and "RescaleIntercept" in view:
        slope, intercept = float(view.RescaleSlope), float(view.RescaleIntercept)
        x = values.astype(np.float64) * slope + intercept
        if (slope, intercept) != (1.0, 0.0):
            rescaled = True
            unit = f" ({view.RescaleType})" if view.get("RescaleType") else ""
            notes.append(f"applied rescale slope {slope:g} intercept {intercept:g}{unit}")
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise InvalidImageError("DICOM pixel values are not finite after rescale; the rescale attributes are damaged")
    center, width = view.get("WindowCenter"), view.get("WindowWidth")
    if width is not None and _first_value(width) <= 0:
        notes.append(f"ignored an invalid window (W={_first_value(width):g})")
    if view.get("VOILUTSequence"):
        item = view.VOILUTSequence[0]
        n_entries = int(item.LUTDescriptor[0]) or 65536
        first = int(item.LUTDescriptor[1])
        # The LUT's own output range, found by passing its whole input domain through it (PS3.3 C.11.2.1.1).
        span = apply_voi(np.arange(first, first + n_entries), view)
        lo, hi = float(span.min()), float(span.max())
        out = (apply_voi(np.rint(x).astype(np.int64), view) - lo) / max(hi - lo, 1.0)
        notes.append("applied the file's VOI LUT")
    elif center is not None and width is not None and _first_value(width) > 0:
        center, width = _first_value(center), _first_value(width)  # several windows: the first is the default
        function = str(view.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        out = _apply_window(x, center, width, function)
        shape = "" if function == "LINEAR" else f" ({function.lower()})"
        notes.append(f"applied window C={center:g} W={width:g}{shape}")
    elif not rescaled and not signed and bits_stored <= 8:
        out = x / float(2**bits_stored - 1)
    else:
        out, varied = _robust_unit(x, x.ravel()[sample_at])
        p_lo, p_hi = ROBUST_PERCENTILES
        notes.append(
            f"no window in the file: contrast stretched between the {p_lo:g}th and {p_hi:g}th percentile"
            if varied else "image is uniform (a single grey level)"
        )  # fmt: skip
    if str(view.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        out = 1.0 - out  # PS3.3 C.7.6.3.1.2: the minimum sample value is intended to be displayed as white
        notes.append("inverted MONOCHROME1 (the file stores bright as low values)")
    return np.clip(out, 0.0, 1.0)


def _gray_to_unit(arr: np.ndarray, ds: Dataset, index: int, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) stored values -> (pixels (H, W) float32 in [0, 1], grey (H, W) uint8 for display).

    Up to 16 bits, the LUT chain runs once per possible value and each pixel is one table lookup: identical
    results, a fraction of the time of float maths over millions of pixels.
    """
    view = _lut_view(ds, index)
    step = max(1, arr.size // 1_000_000)  # percentiles from ~1M pixels are as good as from all
    if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2:
        lo = 0 if arr.dtype.kind == "u" else int(arr.min())
        lookup = arr if lo == 0 else np.subtract(arr, lo, dtype=np.int32)
        table = _values_to_unit(np.arange(lo, int(arr.max()) + 1), view, lookup.ravel()[::step], notes)
        return table.astype(np.float32)[lookup], np.round(table * 255).astype(np.uint8)[lookup]
    pixels = _values_to_unit(arr, view, np.arange(0, arr.size, step), notes).astype(np.float32)
    return pixels, np.round(pixels * 255).astype(np.uint8)


def _color_to_uint8(arr: np.ndarray, ds: Dataset, photometric: str, notes: list[str]) -> np.ndarray:
    """PALETTE COLOR through its LUT (PS3.3 C.7.6.3.1.5), RGB/YBR (already RGB from pydicom) to (H, W, 3) uint8."""
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        notes.append("converted palette colour to RGB")
    else:
        rgb = arr
        if photometric != "RGB":
            notes.append(f"converted {photometric} colour to RGB")
    if rgb.dtype == np.uint8:
        return np.ascontiguousarray(rgb[..., :3])
    full = float(2 ** int(ds.get("BitsStored", rgb.dtype.itemsize * 8)) - 1)
    if photometric == "PALETTE COLOR":
        full = 255.0 if rgb.max() <= 255 else 65535.0  # some 16-bit palettes hold 8-bit entries
    return np.round(np.clip(rgb[..., :3].astype(np.float64) / full, 0, 1) * 255).astype(np.uint8)


def _pixel_spacing(ds: Dataset, notes: list[str]) -> tuple[tuple[float, float] | None, str]:
    """(row, column) spacing in mm and the attribute it was read from (one of :data:`SPACING_SOURCES`; "" when
    none): PixelSpacing, the enhanced Pixel Measures macro, detector or US regions."""
    try:
        shared = ds.get("SharedFunctionalGroupsSequence")
        measures = shared[0].get("PixelMeasuresSequence") if shared else None
        for spacing in (ds.get("PixelSpacing"), measures[0].get("PixelSpacing") if measures else None):
            if spacing:
                return (float(spacing[0]), float(spacing[1])), SPACING_PIXEL_SPACING
        if ds.get("ImagerPixelSpacing"):
            notes.append("pixel spacing is at the detector (not corrected for magnification)")
            return (float(ds.ImagerPixelSpacing[0]), float(ds.ImagerPixelSpacing[1])), SPACING_IMAGER
        for region in ds.get("SequenceOfUltrasoundRegions") or []:
            # PS3.3 C.8.5.5.1.15: physical units code 3 = cm
            if region.get("PhysicalUnitsXDirection") == 3 and region.get("PhysicalUnitsYDirection") == 3:
                row_mm, col_mm = abs(float(region.PhysicalDeltaY)) * 10, abs(float(region.PhysicalDeltaX)) * 10
                return (row_mm, col_mm), SPACING_US_REGION
    except (AttributeError, IndexError, TypeError, ValueError):
        notes.append("pixel spacing in the file is unreadable and was ignored")
    return None, ""


def _safe_fields(ds: Dataset, ts: UID) -> dict[str, object]:
    signed = ds.get("PixelRepresentation")
    return safe_metadata({
        "modality": str(ds.get("Modality", "") or ""),
        "body_part": str(ds.get("BodyPartExamined", "") or ""),
        "manufacturer": str(ds.get("Manufacturer", "") or ""),
        "manufacturer_model": str(ds.get("ManufacturerModelName", "") or ""),
        "sop_class": UID(str(ds.get("SOPClassUID", "") or "")).name,
        "photometric_interpretation": str(ds.PhotometricInterpretation),
        "transfer_syntax": ts.name,
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.get("BitsStored", ds.BitsAllocated)),
        "pixel_representation": None if signed is None else ("signed" if int(signed) else "unsigned"),
        "samples_per_pixel": int(ds.get("SamplesPerPixel", 1)),
        "burned_in_annotation": str(ds.get("BurnedInAnnotation", "") or ""),
        "laterality": str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "")[:1].upper(),  # L/R/B/U
    })  # fmt: skip


def _check_codestream(ds: Dataset, ts: UID, index: int, n_frames: int, rows: int, cols: int,
                      limits: IntakeLimits) -> None:
    """Refuse a compressed frame whose own codestream declares more pixels than Rows x Columns (or than the limit)
    before any decoder sees it: decoders allocate what the codestream says (:mod:`medapp.intake.codestream`)."""
    if not ts.is_encapsulated:
        return
    try:
        frame = get_frame(ds.PixelData, index, number_of_frames=n_frames)
        declared = declared_size(frame, ts)
    except (ValueError, IndexError, KeyError, struct.error) as e:
        raise InvalidImageError(f"the compressed DICOM pixel data is damaged ({_first_line(e)}); re-export it") from e
    if declared is None:
        return
    check_dimensions(*declared, limits, what="the compressed image inside the DICOM")
    if declared[0] * declared[1] > rows * cols:
        raise UnsupportedImageError(
            f"the compressed image inside the DICOM declares {declared[1]}x{declared[0]} px but the header says "
            f"{cols}x{rows}; refused before decoding (inconsistent file, possible decompression bomb)"
        )


def decode_dicom(ds: Dataset, *, frame: int | None, limits: IntakeLimits) -> MedicalImage:
    """Decode one frame of ``ds`` (default: the first, index 0) after checking its declared geometry."""
    if "PixelData" not in ds:
        sop = UID(str(ds.get("SOPClassUID", "") or "")).name
        if "Rows" in ds or "Image Storage" in sop:  # an image object whose pixels are missing: cut short
            raise InvalidImageError(
                f"DICOM is an image ({sop or 'Rows/Columns present'}) but has no pixel data; the file is probably "
                "truncated, re-export it"
            )
        raise UnsupportedImageError(f"DICOM has no pixel data ({_describe_non_image(ds)}); upload an image instead")
    missing = [k for k in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation") if ds.get(k) is None]
    if missing:
        raise InvalidImageError(
            f"DICOM pixel data lacks required Image Pixel attributes (PS3.3 C.7.6.3): {', '.join(missing)}; "
            "the file is incomplete, re-export it"
        )
    rows, cols, bits = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    check_dimensions(rows, cols, limits, what="DICOM image")
    if bits == 1:
        raise UnsupportedImageError(
            "DICOM has 1-bit pixels (a segmentation or binary mask, not a scan); upload the image it was drawn on"
        )
    if bits not in (8, 16, 32) or photometric not in (*GRAY, *COLOR, "PALETTE COLOR"):
        raise UnsupportedImageError(
            f"DICOM pixel format {photometric} with {bits} bits allocated is not supported; expected MONOCHROME1/2, "
            "PALETTE COLOR, RGB or YBR with 8, 16 or 32 bits"
        )
    n_frames = max(1, int(ds.get("NumberOfFrames") or 1))
    index = check_frame_index(frame, n_frames)
    notes: list[str] = []
    ts = _ensure_transfer_syntax(ds, notes)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as e:
        raise UnsupportedImageError(
            f"DICOM pixel data is compressed as {ts.name}, which medapp cannot decode; export the image "
            "uncompressed or as JPEG/JPEG 2000"
        ) from e
    if not decoder.is_available:
        raise UnsupportedImageError(f"no decoder installed for {ts.name}; install the pylibjpeg plugins")
    _check_codestream(ds, ts, index, n_frames, rows, cols, limits)
    try:
        arr = pixel_array(ds, index=index)
    except MemoryError as e:
        raise UnsupportedImageError("DICOM frame is too large to decode in memory") from e
    except Exception as e:
        raise InvalidImageError(
            f"could not decode the DICOM pixel data ({ts.name}): {_first_line(e)}; the file may be truncated "
            "or damaged"
        ) from e
    if photometric in GRAY:
        if arr.ndim != 2:
            raise InvalidImageError(f"DICOM says {photometric} but decoded to shape {arr.shape}; the file is damaged")
        pixels, gray8 = _gray_to_unit(arr, ds, index, notes)
        display = np.stack([gray8, gray8, gray8], axis=-1)
    else:
        display = _color_to_uint8(arr, ds, photometric, notes)
        pixels = luma_601(display)
        notes.append("colour converted to grey for the model (ITU-R BT.601 luma)")
    if n_frames > 1:
        notes.append(f"frame {index + 1} of {n_frames}")
    if ts.is_compressed and str(ds.get("LossyImageCompression", "")) == "01":
        notes.append("the image was lossy-compressed before it reached medapp; fine detail may be altered")
    log.info("decoded a DICOM image: %dx%d px, frame %d of %d, %s", cols, rows, index + 1, n_frames, ts.name)
    spacing, spacing_source = _pixel_spacing(ds, notes)
    return MedicalImage(
        pixels=pixels,
        display=display,
        source_kind="dicom",
        original_size=(rows, cols),
        pixel_spacing_mm=spacing,
        pixel_spacing_source=spacing_source,
        scan_region=scan_region(ds, rows, cols),
        us_calibrations=region_calibrations(ds, rows, cols),
        frame_index=index,
        frame_count=n_frames,
        metadata=_safe_fields(ds, ts),
        notes=notes,
    )
