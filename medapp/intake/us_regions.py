"""The scan area of an ultrasound frame, from the DICOM Ultrasound Region Sequence (PS3.3 C.8.5.5).

Ultrasound scanners draw the patient's name, ID, the date and the institution in the pixels around the image, and
state in the header where the image itself lies: each region of the Sequence of Ultrasound Regions gives its
spatial format (1 = 2D), data type (1 = tissue) and bounding box. medapp crops every export to that box, so the
drawn text around it cannot leave with a report (:mod:`medapp.reporting.export_region`).

A 2D region also states the physical size of its pixels (PhysicalDeltaX/Y in the units PhysicalUnitsX/YDirection
name); :func:`region_calibrations` keeps those in centimetres, one per region, so a lesion is measured in
millimetres with the scale of the region it lies in (:mod:`medapp.lesion.calibration`).
"""

from __future__ import annotations

import math

from pydicom.dataset import Dataset

from .medical_image import RegionCalibration

_SPATIAL_2D = 1  # RegionSpatialFormat: 2D image (not M-mode, spectral or waveform)
_TISSUE = 1  # RegionDataType: tissue (not colour flow, Doppler trace or ECG)
_CENTIMETRES = 3  # PhysicalUnitsX/YDirection code 3 = cm (PS3.3 C.8.5.5.1.15)
MIN_REGION_FRACTION = 0.05  # a "scan region" smaller than 5% of the frame is a thumbnail or an icon, not the scan


def scan_region(ds: Dataset, rows: int, cols: int) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right), bottom/right exclusive, of the 2D tissue regions' union, or None.

    2D regions of other data types count when no region says tissue. The box is clipped to the frame; None when
    the header states no usable region (none, unreadable, or too small to be the scan).
    """
    boxes = {True: [], False: []}
    try:
        for region in ds.get("SequenceOfUltrasoundRegions") or []:
            if int(region.get("RegionSpatialFormat", 0) or 0) != _SPATIAL_2D:
                continue
            box = (int(region.RegionLocationMinY0), int(region.RegionLocationMinX0),
                   int(region.RegionLocationMaxY1) + 1, int(region.RegionLocationMaxX1) + 1)  # inclusive -> exclusive
            boxes[int(region.get("RegionDataType", 0) or 0) == _TISSUE].append(box)
    except (AttributeError, TypeError, ValueError):
        return None
    chosen = boxes[True] or boxes[False]
    if not chosen:
        return None
    top, left = max(0, min(b[0] for b in chosen)), max(0, min(b[1] for b in chosen))
    bottom, right = min(rows, max(b[2] for b in chosen)), min(cols, max(b[3] for b in chosen))
    if bottom <= top or right <= left or (bottom - top) * (right - left) < MIN_REGION_FRACTION * rows * cols:
        return None
    return top, left, bottom, right


def region_calibrations(ds: Dataset, rows: int, cols: int) -> tuple[RegionCalibration, ...]:
    """The pixel size of each 2D region that states it in centimetres, as millimetres per row and per column.

    PhysicalDeltaX is cm per column (-> ``col_mm``), PhysicalDeltaY cm per row (-> ``row_mm``); boxes are clipped
    to the frame, bottom/right exclusive. A region in other units (none, dB, seconds, ...), with an unreadable or
    non-finite value, or whose box misses the frame is skipped; this never raises, since a header that cannot be
    read only means no millimetres. Whether a stated size is plausible is judged by the reader of the scale.
    """
    found: list[RegionCalibration] = []
    try:
        regions = list(ds.get("SequenceOfUltrasoundRegions") or [])
    except (AttributeError, TypeError, ValueError):
        return ()
    for region in regions:
        try:
            if int(region.get("RegionSpatialFormat", 0) or 0) != _SPATIAL_2D:
                continue
            if (int(region.get("PhysicalUnitsXDirection", 0) or 0) != _CENTIMETRES
                    or int(region.get("PhysicalUnitsYDirection", 0) or 0) != _CENTIMETRES):
                continue
            col_mm, row_mm = 10.0 * float(region.PhysicalDeltaX), 10.0 * float(region.PhysicalDeltaY)
            top, left = max(0, int(region.RegionLocationMinY0)), max(0, int(region.RegionLocationMinX0))
            bottom = min(rows, int(region.RegionLocationMaxY1) + 1)  # inclusive -> exclusive
            right = min(cols, int(region.RegionLocationMaxX1) + 1)
        except (AttributeError, TypeError, ValueError, OverflowError):
            continue
        if not (math.isfinite(row_mm) and math.isfinite(col_mm)) or bottom <= top or right <= left:
            continue
        found.append(RegionCalibration(box=(top, left, bottom, right), row_mm=row_mm, col_mm=col_mm))
    return tuple(found)
