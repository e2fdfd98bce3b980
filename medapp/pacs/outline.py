"""The lesion as the model outlined it, as standard DICOM: a Segmentation (SEG) aligned with the source image, and the
SR's lesion measurement groups that point into it.

**The SEG** (PS3.3 A.51, built with highdicom): BINARY, one segment per outlined lesion (the principal first; a
lone lesion's segment is labelled "Lesion"), each with Segmented Property Category (49755003, SCT, "Morphologically
Abnormal Structure") from CID 7150 and Type (4147007, SCT, "Mass") from CID 7159 "Lesion Segmentation Type" (the
BI-RADS ultrasound lexicon describes masses; nothing here says benign or malignant), Anatomic Region (76752008,
SCT, "Breast"), Segment Algorithm Type AUTOMATIC and the model as the Segmentation Algorithm Identification
(family (123110, DCM, "Artificial Intelligence"), name, version, weights SHA-256, outline threshold). Its frames
are the source frame's pixel grid, row for row (Derivation Image Sequence, Spatial Locations Preserved YES):
ultrasound images rarely state a patient frame of reference or pixel spacing, and highdicom's documented way for
a source without a Frame of Reference is exactly this, a pixel array matching the single source frame. For a
multi-frame source the analysed frame alone is segmented, referenced by its number (PS3.3 C.7.6.1.1.2); highdicom
is given a one-frame view of the source (its identifiers and matrix size, nothing else) and the frame number is
written into the references afterwards. The SEG copies no more of the source than the SR: the identifiers of
:func:`~medapp.pacs.results.source_header`.

**The SR's lesion groups**: per outlined lesion one TID 1410 "Planar ROI Measurements and Qualitative Evaluations"
group whose region is its segment in the SEG (Referenced Segmentation Frame, 121214 DCM), with the same tracking
UID as the segment, finding (4147007, SCT, "Mass"), finding site breast, Measurement Method
(:data:`FROM_OUTLINE`: the numbers are computed from the model's outline, not measured by a person) and the model
as the algorithm. Measurements (TID 300; the same rounded values as ``Prediction.lesion.to_dict()``, which the app
shows), in millimetres with UCUM "mm"/"mm2" when the image is calibrated, else in UCUM "{pixels}":

- long axis (103339001, SCT) and short axis (103340004, SCT), from CID 6165 "Breast Linear Measurement";
- area (42798000, SCT);
- depth as distance from skin (121243, DCM; CID 6165): the lesion's top below the scan region's top edge;
- height/width ratio (:data:`ASPECT_RATIO`, local code: the standard has none).

Qualitative evaluations, the BI-RADS ultrasound lexicon's terms as DICOM codes them (geometric proxies, see
:mod:`medapp.lesion.geometry`): Orientation (111354, DCM) parallel (111355, DCM) / not parallel (111356, DCM) from
CID 6152; Shape (300842002, SCT) oval (84360004, SCT) / round (42700002, SCT) / irregular (49608001, SCT) from CID
6005 "Shape Characteristic from BI-RADS"; Margins (111037, DCM) circumscribed (129738007, SCT) from CID 6007, and
"not circumscribed" (:data:`NOT_CIRCUMSCRIBED`, local code: CID 6007 names only its subtypes, indistinct, angular,
microlobulated, spiculated, which medapp does not tell apart).
"""

from __future__ import annotations

import copy
import datetime as dt

import highdicom as hd
import numpy as np
from highdicom.sr import (
    AlgorithmIdentification,
    CodedConcept,
    FindingSite,
    Measurement,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    ReferencedSegmentationFrame,
    SourceImageForSegmentation,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UltrasoundImageStorage

from .. import __version__
from ..lesion.geometry import Margin, Orientation, Shape
from ..serving.lesion_finding import LesionFinding, OutlinedLesion
from ..serving.predict import Prediction
from .results import (
    MANUFACTURER,
    NO_UNITS,
    SCHEME,
    SEG_SERIES_NUMBER,
    OutlineObjects,
    ResultUids,
    _now,
    _series_description,
    _uid,
    source_header,
)

LESION_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure  # (49755003, SCT), CID 7150
LESION_TYPE = codes.SCT.Mass  # (4147007, SCT), CID 7159
CONTENT_LABEL = "LESION"  # CS, 16 characters at most
CONTENT_DESCRIPTION = "Lesion outline drawn by a model, not by a person"

MM = CodedConcept("mm", "UCUM", "millimeter")
MM2 = CodedConcept("mm2", "UCUM", "square millimeter")
PIXELS = CodedConcept("{pixels}", "UCUM", "pixels")
LONG_AXIS, SHORT_AXIS, AREA = codes.SCT.LongAxis, codes.SCT.ShortAxis, codes.SCT.Area
DEPTH = codes.DCM.DistanceFromSkin  # (121243, DCM)
ASPECT_RATIO = CodedConcept("MA-ASPECT", SCHEME, "Lesion height to width ratio")
FROM_OUTLINE = CodedConcept("MA-FROM-OUTLINE", SCHEME, "Computed from the model's outline, not measured by a person")
NOT_CIRCUMSCRIBED = CodedConcept("MA-MARGIN-NOT-CIRC", SCHEME, "Not circumscribed (margin)")
ORIENTATION, SHAPE, MARGIN = codes.DCM.Orientation, codes.SCT.Shape, codes.DCM.Margins
ORIENTATION_CODES = {Orientation.PARALLEL: codes.DCM.Parallel, Orientation.NOT_PARALLEL: codes.DCM.NotParallel}
SHAPE_CODES = {Shape.OVAL: codes.SCT.OvoidShapeOval, Shape.ROUND: codes.SCT.RoundShape,
               Shape.IRREGULAR: codes.SCT.Irregular}
MARGIN_CODES = {Margin.CIRCUMSCRIBED: codes.SCT.CircumscribedLesion, Margin.NOT_CIRCUMSCRIBED: NOT_CIRCUMSCRIBED}

# What highdicom needs of the source besides :func:`source_header`: its matrix size and modality.
_MATRIX_KEYWORDS = ("Rows", "Columns", "Modality")


def segment_label(number: int, count: int) -> str:
    """A segment's label: "Lesion" for a lone lesion, else "Lesion 1 (principal)", "Lesion 2", ..."""
    if count == 1:
        return "Lesion"
    return f"Lesion {number} (principal)" if number == 1 else f"Lesion {number}"


def _tracking(uids: ResultUids, number: int, count: int) -> tuple[str, str]:
    """(UID, identifier): the same tracking UID names a segment in the SEG and its measurement group in every SR
    of the image."""
    return _uid("lesion tracking", uids.seg, str(number)), f"medapp {segment_label(number, count).lower()}"


def _seg_algorithm(model: dict[str, str], finding: LesionFinding) -> hd.AlgorithmIdentificationSequence:
    parameters = {"weights SHA-256": model.get("sha256", "?"), "site profile": model.get("site_profile") or "none",
                  "outline threshold": f"{finding.threshold:.6g}"}
    return hd.AlgorithmIdentificationSequence(name=model.get("name", "?"), version=model.get("version", "?"),
                                              family=codes.DCM.ArtificialIntelligence, parameters=parameters)


def _source_view(source: Dataset) -> Dataset:
    """One frame's worth of the source for highdicom: its identifiers, matrix size and modality, nothing else (no
    Frame of Reference, no equipment: highdicom would copy the acquisition equipment)."""
    view = source_header(source)
    for keyword in _MATRIX_KEYWORDS:
        if keyword in source:
            setattr(view, keyword, source[keyword].value)
    if "NumberOfFrames" in source:
        # highdicom takes a multi-frame SOP class for an enhanced image (functional groups, a frame of reference):
        # the view is a single-frame ultrasound image, and the SEG's references get the true class back
        view.SOPClassUID = UltrasoundImageStorage
    return view


def _reference_source(seg: hd.seg.Segmentation, source: Dataset, frame_index: int, frame_count: int) -> None:
    """Point every reference to the source in ``seg`` at its true SOP class and, for a multi-frame source, the
    references that may name frames (Image SOP Instance Reference Macro) at the analysed one (1-based)."""
    uid = str(source.SOPInstanceUID)
    for series in seg.ReferencedSeriesSequence:  # highdicom shares these items with the Source Image Sequence
        series.ReferencedInstanceSequence = [copy.deepcopy(ref) for ref in series.ReferencedInstanceSequence]
    framed = [ref for ref in [*seg.SourceImageSequence,
                              *(r for item in seg.PerFrameFunctionalGroupsSequence
                                for d in item.get("DerivationImageSequence", []) for r in d.SourceImageSequence)]
              if ref.ReferencedSOPInstanceUID == uid]
    listed = [ref for series in seg.ReferencedSeriesSequence for ref in series.ReferencedInstanceSequence
              if ref.ReferencedSOPInstanceUID == uid]
    for ref in (*framed, *listed):
        ref.ReferencedSOPClassUID = source.SOPClassUID
    if frame_count > 1:
        for ref in framed:
            ref.ReferencedFrameNumber = frame_index + 1


def build_seg(prediction: Prediction, source: Dataset, uids: ResultUids, *, frame_index: int = 0,
              frame_count: int = 1, created: dt.datetime | None = None) -> hd.seg.Segmentation:
    """The SEG of ``prediction``'s outlined lesions over ``source`` (the analysed instance's header; pixel data not
    needed). Raises ValueError when the prediction has no outline or the outline does not match the source's
    rows and columns."""
    finding = prediction.lesion
    if finding is None:
        raise ValueError(f"the prediction has no lesion outline ({prediction.lesion_note or 'none was made'}); "
                         "a SEG is made only for an outlined lesion")
    shape = (int(source.Rows), int(source.Columns))
    if finding.outline_mask.shape != shape:
        raise ValueError(f"the lesion outline is {finding.outline_mask.shape[0]}x{finding.outline_mask.shape[1]} "
                         f"pixels but the source image is {shape[0]}x{shape[1]}; they must be the same grid")
    count = len(finding.lesions)
    pixels = np.stack([lesion.mask for lesion in finding.lesions], axis=-1)[None].astype(np.uint8)  # (1, H, W, n)
    algorithm = _seg_algorithm(prediction.model, finding)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n, segment_label=segment_label(n, count), segmented_property_category=LESION_CATEGORY,
            segmented_property_type=LESION_TYPE, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, anatomic_regions=[codes.SCT.Breast],
            tracking_uid=tracking_uid, tracking_id=tracking_id)
        for n in range(1, count + 1)
        for tracking_uid, tracking_id in [_tracking(uids, n, count)]
    ]
    model = prediction.model
    created = _now(created)
    header = source_header(source)
    seg = hd.seg.Segmentation(
        source_images=[_source_view(source)], pixel_array=pixels, segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=uids.seg_series, series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=uids.seg, instance_number=int(header.get("InstanceNumber") or 1), manufacturer=MANUFACTURER,
        manufacturer_model_name=f"{model.get('name', '?')} {model.get('version', '')}"[:64],
        software_versions=f"medapp {__version__}",
        device_serial_number=model.get("sha256", "") or "unknown",  # the weights identify the "device"
        content_label=CONTENT_LABEL, content_description=CONTENT_DESCRIPTION,
        series_description=_series_description(model, "lesion outline (SEG)"),
        content_date=created.date(), content_time=created.time().replace(tzinfo=None),
        omit_empty_frames=False,
    )
    seg.TimezoneOffsetFromUTC = "+0000"
    # General Image (C.7.6.1): Patient Orientation is Type 2C, required when there is no plane orientation
    seg.PatientOrientation = source.get("PatientOrientation", None)
    _reference_source(seg, source, frame_index, frame_count)
    return seg


def _segment_frames(seg: hd.seg.Segmentation) -> dict[int, int]:
    """Segment number -> the SEG frame that holds it (one source frame: one frame per segment)."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "SegmentIdentificationSequence" in shared:
        return {int(shared.SegmentIdentificationSequence[0].ReferencedSegmentNumber): 1}
    return {int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber): n
            for n, item in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1)}


def _measurement(name: CodedConcept, value_mm: float | None, value_px: float, unit_mm: CodedConcept) -> Measurement:
    """In millimetres when the image is calibrated (``value_mm`` not None), else in pixels."""
    return Measurement(name, value_mm, unit_mm) if value_mm is not None else Measurement(name, value_px, PIXELS)


def lesion_group(lesion: OutlinedLesion, number: int, count: int, seg: hd.seg.Segmentation, uids: ResultUids,
                 algorithm: AlgorithmIdentification, header: Dataset, frames: list[int] | None
                 ) -> PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410 for one outlined lesion: its segment, measurements (the values ``OutlinedLesion.to_dict()`` gives)
    and descriptors."""
    d, g = lesion.to_dict(), lesion.geometry
    measurements = [
        _measurement(LONG_AXIS, d["long_axis_mm"], d["long_axis_px"], MM),
        _measurement(SHORT_AXIS, d["short_axis_mm"], d["short_axis_px"], MM),
        _measurement(AREA, d["area_mm2"], d["area_px"], MM2),
        _measurement(DEPTH, d["depth_mm"], d["depth_px"], MM),
        Measurement(ASPECT_RATIO, float(d["aspect_ratio"]), NO_UNITS),
    ]
    evaluations = [QualitativeEvaluation(ORIENTATION, ORIENTATION_CODES[Orientation(g.orientation)]),
                   QualitativeEvaluation(SHAPE, SHAPE_CODES[Shape(g.shape)]),
                   QualitativeEvaluation(MARGIN, MARGIN_CODES[Margin(g.margin)])]
    segment = ReferencedSegmentationFrame(
        sop_class_uid=str(seg.SOPClassUID), sop_instance_uid=str(seg.SOPInstanceUID),
        frame_number=_segment_frames(seg)[number], segment_number=number,
        source_image=SourceImageForSegmentation(str(header.SOPClassUID), str(header.SOPInstanceUID), frames))
    # PS3.3 C.18.3.1 (Image Reference Macro): a reference names a segment by its frame or by its number, not both;
    # the frame holds this one segment (highdicom 0.28 writes both, which dciodvfy rightly reports)
    del segment[0].ReferencedSOPSequence[0].ReferencedSegmentNumber
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(*_tracking(uids, number, count)), referenced_segment=segment,
        finding_type=LESION_TYPE, finding_category=LESION_CATEGORY, finding_sites=[FindingSite(codes.SCT.Breast)],
        method=FROM_OUTLINE, algorithm_id=algorithm, measurements=measurements, qualitative_evaluations=evaluations,
    )


def _outline_algorithm(prediction: Prediction, finding: LesionFinding,
                       lesion: OutlinedLesion) -> AlgorithmIdentification:
    model = prediction.model
    calibration = (f"sizes in mm from {lesion.scale.source}" if lesion.scale is not None
                   else f"sizes in pixels: {lesion.no_mm_reason}")
    return AlgorithmIdentification(
        name=model.get("name", "?"), version=model.get("version", "?"), manufacturer=MANUFACTURER,
        parameters=[f"weights SHA-256 {model.get('sha256', '?')}", f"outline threshold {finding.threshold:.6g}",
                    f"outline confidence {finding.confidence:.4f}", calibration])


def build_outline(prediction: Prediction, source: Dataset, uids: ResultUids, *, frame_index: int = 0,
                  frame_count: int = 1, created: dt.datetime | None = None) -> OutlineObjects | None:
    """The SEG and the SR groups of ``prediction``'s outlined lesions; None when there is no outline (none made,
    none found, or an image outside intended use)."""
    finding = prediction.lesion
    if finding is None or not prediction.in_scope:
        return None
    seg = build_seg(prediction, source, uids, frame_index=frame_index, frame_count=frame_count, created=created)
    header = source_header(source)
    frames = [frame_index + 1] if frame_count > 1 else None
    count = len(finding.lesions)
    groups = [lesion_group(lesion, n, count, seg, uids, _outline_algorithm(prediction, finding, lesion), header,
                           frames) for n, lesion in enumerate(finding.lesions, start=1)]
    return OutlineObjects(seg, groups)
