"""The size a compressed DICOM frame's own codestream declares, read from its header before anything is decoded.

A DICOM's Rows and Columns say 256 x 256, but the JPEG or JPEG 2000 codestream inside can say 60000 x 60000, and
the decoder allocates what the codestream says: more than 4 GB in 15 s (issue 12). So the codestream's header
(JPEG's SOF segment, JPEG-LS's SOF55, JPEG 2000's SIZ) is parsed here and must agree with Rows and Columns before
the frame reaches a decoder. RLE needs no check: pydicom's RLE decoder fills a buffer sized by Rows and Columns.
"""

from __future__ import annotations

import struct

from pydicom.uid import UID

# JPEG start-of-frame markers (ITU-T T.81 B.1.1.3: SOF0-3, 5-7, 9-11, 13-15) and JPEG-LS's SOF55 (T.87).
_SOF_MARKERS = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn carry no length
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_HEADER_WINDOW = 1 << 16  # a codestream's size is in its first segments; never scan further than this


def declared_size(frame: bytes, transfer_syntax: UID) -> tuple[int, int] | None:
    """(rows, columns) that ``frame``'s codestream declares, or None for a syntax without such a header (RLE,
    deflate) or a header that cannot be found (the decoder will then fail on its own, with Rows/Columns'
    allocation). Raises ValueError for a header that is there but cut short."""
    if transfer_syntax.is_compressed and frame[:2] == b"\xff\xd8":
        return _jpeg_size(frame)
    at = frame.find(_J2K_SOC_SIZ, 0, _HEADER_WINDOW)  # a bare codestream, or inside a JP2 box
    if at >= 0:
        return _j2k_size(frame, at + 4)
    return None


def _jpeg_size(frame: bytes) -> tuple[int, int] | None:
    at = 2
    end = min(len(frame), _HEADER_WINDOW)
    while at + 4 <= end:
        if frame[at] != 0xFF:
            return None  # not at a marker: entropy-coded data before any SOF, so there is no frame header
        marker = frame[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        (length,) = struct.unpack(">H", frame[at + 2 : at + 4])
        if marker in _SOF_MARKERS:
            if at + 9 > len(frame):
                raise ValueError("the JPEG frame header is cut short")
            rows, columns = struct.unpack(">HH", frame[at + 5 : at + 9])
            return rows, columns
        if marker == 0xDA:  # start of scan before a frame header
            return None
        at += 2 + length
    return None


def _j2k_size(frame: bytes, siz: int) -> tuple[int, int]:
    # SIZ (ITU-T T.800 A.5.1): Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4); the image is (X - XO) x (Y - YO)
    if siz + 20 > len(frame):
        raise ValueError("the JPEG 2000 image header (SIZ) is cut short")
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", frame[siz + 4 : siz + 20])
    return max(ysiz - yosiz, 0), max(xsiz - xosiz, 0)
