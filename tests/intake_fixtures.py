"""Builders shared by the intake tests: synthetic DICOMs (one full of PHI), raster files and a bad-input corpus.

Imported by test_imaging.py, test_privacy.py and test_inspect_cli.py (not a conftest: the lead owns that).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, UltrasoundImageStorage

from medapp.data.datasets import data_dir

# Every value here must never appear in anything medapp shows, logs or writes.
PHI = {
    "PatientName": "Doe^Jane^Quincy",
    "PatientID": "PID-99887766",
    "PatientBirthDate": "19610203",
    "AccessionNumber": "ACC5551234",
    "InstitutionName": "St Elsewhere General Hospital",
    "ReferringPhysicianName": "House^Gregory",
    "OperatorsName": "Operator^Olga",
    "StudyID": "STUDY-4242",
    "ImageComments": "Jane has a lump left breast",
    # Free text the Basic Profile table removes, which an earlier hand-picked list kept (issue 12).
    "StudyComments": "Seen by Dr Quimby after the fall",
    "AcquisitionComments": "Patient Jane anxious, scanned twice",
    "ReasonForTheRequestedProcedure": "Lump found by Jane at home",
    "TimezoneOffsetFromUTC": "+0230",
}
# Free text and identifiers inside sequences: phi_dataset nests them (equipment, procedure codes, two levels deep).
NESTED_PHI = {
    "ContributionDescription": "Retouched by Operator Olga at Elsewhere",
    "LocalCodeMeaning": "Breast US for Jane Doe follow-up",
    "NestedPersonName": "Nurse^Nightingale",
    "NestedComment": "Call Jane on 555-0199",
}
PRIVATE_VALUE = "SECRET-PRIVATE-VALUE-777"
STUDY_UID = "1.2.826.0.1.3680043.9.9999.1.1"
SERIES_UID = "1.2.826.0.1.3680043.9.9999.1.2"
SOP_UID = "1.2.826.0.1.3680043.9.9999.1.3"
PHI_STRINGS = [*PHI.values(), *NESTED_PHI.values(), "Doe", "Quincy", "Gregory", "Elsewhere", "Quimby", "Nightingale",
               "555-0199", PRIVATE_VALUE, STUDY_UID, SERIES_UID, SOP_UID]


def dicom_data_dir() -> Path:
    """The shared ``data/dicom`` folder, or skip the test clearly."""
    root = data_dir() / "dicom"
    if not root.is_dir():
        pytest.skip(f"shared DICOM files not found at {root} (set MEDAPP_DATA_DIR to the folder holding dicom/)")
    return root


def make_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    modality: str = "OT",
    signed: bool = False,
    bits_stored: int | None = None,
    **attrs: object,
) -> Dataset:
    """A minimal uncompressed DICOM around ``pixels`` ((H, W) or (H, W, 3), uint8/uint16/int16)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop_class = UltrasoundImageStorage if modality == "US" else SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = SOP_UID
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, SOP_UID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, SERIES_UID
    ds.Modality = modality
    bits = pixels.dtype.itemsize * 8
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits_stored or bits, (bits_stored or bits) - 1
    ds.PixelRepresentation = int(signed)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def dicom_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def phi_dataset(*, burned_in: str | None = "NO") -> Dataset:
    """An ultrasound DICOM carrying every PHI field of :data:`PHI` plus a private tag."""
    gradient = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    ds = make_dataset(gradient, modality="US", Manufacturer="ACME Medical", **PHI)
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    ds.private_block(0x0011, "ACME PRIVATE", create=True).add_new(0x01, "LO", PRIVATE_VALUE)
    equipment = Dataset()
    equipment.Manufacturer, equipment.ContributionDescription = "ACME Medical", NESTED_PHI["ContributionDescription"]
    procedure = Dataset()
    procedure.CodeValue, procedure.CodingSchemeDesignator = "US-BR-17", "99STELSE"  # a hospital's local code
    procedure.CodeMeaning = NESTED_PHI["LocalCodeMeaning"]
    inner = Dataset()  # two levels down: a person, a comment and an instance UID
    inner.PersonName, inner.TextValue = NESTED_PHI["NestedPersonName"], NESTED_PHI["NestedComment"]
    inner.ReferencedSOPInstanceUID = SOP_UID
    procedure.ContentSequence = Sequence([inner])
    ds.ContributingEquipmentSequence = Sequence([equipment])
    ds.ProcedureCodeSequence = Sequence([procedure])
    return ds


def encode(array: np.ndarray, fmt: str, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **save)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header declares width x height 8-bit grey pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def pdf_bytes() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> "
        b"endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )


def compressed_dicom_declaring(codec: str, side: int, *, rows: int = 256, columns: int = 256,
                               truncate: bool = False) -> bytes:
    """A DICOM whose Rows/Columns say ``rows`` x ``columns`` but whose JPEG (``codec="jpeg"``) or JPEG 2000
    (``"j2k"``) codestream declares ``side`` x ``side``: the compressed-DICOM decompression bomb of issue 12.
    The codestream is a real one, encoded by Pillow, with its frame header's size patched; ``truncate`` keeps only
    its first third (a file cut short in transfer)."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

    gradient = (np.arange(rows * columns, dtype=np.uint32) % 251).astype(np.uint8).reshape(rows, columns)
    if codec == "jpeg":
        stream = bytearray(encode(gradient, "JPEG", quality=90))
        patch_frame_header(stream, side, side)
        syntax = JPEGBaseline8Bit
    else:
        stream = bytearray(encode(gradient, "JPEG2000", no_jp2=True, irreversible=False))
        siz = stream.find(b"\xff\x4f\xff\x51") + 4
        stream[siz + 4 : siz + 12] = struct.pack(">II", side, side)
        syntax = JPEG2000Lossless
    ds = make_dataset(gradient, modality="US")
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([bytes(stream[: len(stream) // 3] if truncate else stream)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return dicom_bytes(ds)


def dicom_nested(depth: int) -> bytes:
    """A small valid image DICOM with Content Sequences nested ``depth`` deep (undefined lengths, written by
    hand: pydicom's writer itself recurses), inserted before the pixel data."""
    sq = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff"  # (0040,A730) SQ, undefined length
    item, item_end, sq_end = (b"\xfe\xff\x00\xe0\xff\xff\xff\xff", b"\xfe\xff\x0d\xe0\x00\x00\x00\x00",
                              b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    nested = (sq + item) * depth + (item_end + sq_end) * depth
    base = dicom_bytes(make_dataset(np.zeros((64, 64), np.uint8), modality="US"))
    at = base.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data
    return base[:at] + nested + base[at:]


# --- More hostile inputs for the issue 12 battery (tests/hostile_battery.py) ---


def patch_frame_header(stream: bytearray, rows: int, columns: int, *, marker: bytes = b"\xff\xc0") -> int:
    """Make every JPEG frame header ``marker`` (SOF0, FFC0; JPEG-LS's SOF55 is FFF7) in ``stream`` declare
    ``rows`` x ``columns`` (ITU-T T.81 B.2.2: length, precision, Y, X); returns how many were patched. Entropy-coded
    data cannot hold these markers (a 0xFF there is followed by 0x00, or by a byte below 0x80 in JPEG-LS)."""
    count, at = 0, stream.find(marker)
    while at >= 0:
        stream[at + 5 : at + 9] = struct.pack(">HH", rows, columns)
        count, at = count + 1, stream.find(marker, at + 9)
    return count


def jpeg_declaring(width: int, height: int) -> bytes:
    """A 64 x 64 px JPEG (about 1 kB) whose frame header declares ``width`` x ``height``: a JPEG bomb's header."""
    stream = bytearray(encode(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1)), "JPEG", quality=90))
    patch_frame_header(stream, height, width)
    return bytes(stream)


def tiff_with_page_declaring(width: int, height: int) -> bytes:
    """A two-page TIFF (about 9 kB): page 1 is a valid 64 x 64 px image, page 2's header (its IFD's ImageWidth and
    ImageLength, TIFF 6.0 section 8) declares ``width`` x ``height``: the later-page bomb of issue 12, item 2."""
    pages = [Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))) for _ in range(2)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    data = bytearray(buf.getvalue())
    assert data[:4] == b"II*\x00", "Pillow writes little-endian TIFF"
    (first,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, first)
    (second,) = struct.unpack_from("<I", data, first + 2 + 12 * count)  # the next IFD's offset: page 2
    (count,) = struct.unpack_from("<H", data, second)
    for entry in range(second + 2, second + 2 + 12 * count, 12):
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            struct.pack_into("<H" if kind == 3 else "<I", data, entry + 8, width if tag == 256 else height)
    return bytes(data)


def jpeg_ls_dicom_declaring(side: int) -> bytes:
    """The shared JPEG-LS DICOM (pydicom's ``emri_small_jpeg_ls_lossless.dcm``: 10 frames of 64 x 64) with every
    frame's codestream (SOF55) patched to declare ``side`` x ``side``; skips when the shared data is absent
    (Pillow cannot write JPEG-LS)."""
    path = dicom_data_dir() / "emri_small_jpeg_ls_lossless.dcm"
    if not path.is_file():
        pytest.skip(f"{path} not found (it ships with the shared data)")
    data = bytearray(path.read_bytes())
    assert patch_frame_header(data, side, side, marker=b"\xff\xf7") > 0
    return bytes(data)


def structured_report() -> Dataset:
    """A Basic Text SR: a DICOM with a header and no pixel data (what a PACS export of a report looks like)."""
    ds = make_dataset(np.zeros((64, 64), np.uint8))
    del ds.PixelData, ds.Rows, ds.Columns
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR Storage
    ds.Modality = "SR"
    return ds
