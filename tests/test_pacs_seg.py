"""The lesion outline as DICOM: the SEG aligned with the source image, and the SR's lesion measurement groups that
point into it; built for the BUSI-made DICOM and every shared ultrasound DICOM, checked with highdicom and dciodvfy,
and stored in a real Orthanc by ``pacs analyze --store`` (and the app's "Send to PACS") without duplicates.

The acceptance round trip uses the model the app serves (``$MEDAPP_MODEL_DIR`` or the shipped one); a model without
an outline decoder, or an image it outlines nothing on, skips the SEG checks with the prediction's own reason. The
builder tests give a real image's header a lesion found on a drawn probability map (:func:`find_lesions`), so they
do not depend on the model.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from app_fixtures import busi_test_image, make_prediction
from dicomweb_client.api import DICOMwebClient
from intake_fixtures import dicom_data_dir
from pacs_fixtures import (
    NOT_COPIED,
    PATIENT,
    busi_ultrasound,
    in_study,
    new_study,
    orthanc,  # noqa: F401
    pacs_client,
    part10,
    set_pacs_env,
)
from pydicom.sr.codedict import codes
from pydicom.uid import UltrasoundMultiFrameImageStorage
from skimage.draw import ellipse

from medapp.cli import main
from medapp.errors import ModelLoadError
from medapp.intake.imaging import load_image
from medapp.intake.medical_image import MedicalImage
from medapp.intake.privacy import AuditLog
from medapp.lesion.geometry import Margin, Orientation, Shape
from medapp.model.checkpoint import default_model_dir
from medapp.pacs.browse import describe_send
from medapp.pacs.orthanc_server import OrthancServer
from medapp.pacs.outline import (
    ASPECT_RATIO,
    CONTENT_LABEL,
    DEPTH,
    FROM_OUTLINE,
    LESION_CATEGORY,
    LESION_TYPE,
    MARGIN,
    MARGIN_CODES,
    NOT_CIRCUMSCRIBED,
    ORIENTATION,
    ORIENTATION_CODES,
    SHAPE,
    SHAPE_CODES,
    build_outline,
    build_seg,
)
from medapp.pacs.results import SCHEME, build_sr, result_uids, seg_series, source_header
from medapp.pacs.workflow import Status, StudyAnalyzer
from medapp.serving.lesion_finding import find_lesions
from medapp.serving.predict import Prediction, Predictor
from medapp.serving.reading import SignOff

SALT = "test-site-secret-" + "1" * 32
SHARED_ULTRASOUND = ["OBXXXX1A.dcm", "OBXXXX1A_2frame.dcm", "US1_UNCR.dcm", "US1_J2KI.dcm", "gdcm-US-ALOKA-16.dcm",
                     "JPGLosslessP14SV1_1s_1f_8b.dcm"]
# A single-frame SOP class (Ultrasound Image Storage) holding 2 frames: dciodvfy refuses the source itself ("Number
# of Frames" must be 1), and so the SEG's frame reference to it; highdicom reads that SEG back by frame all the same.
MALFORMED_FRAMES = "OBXXXX1A_2frame.dcm"
pytestmark = pytest.mark.filterwarnings("ignore:.*plain HTTP.*")


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """The model the app serves: ``$MEDAPP_MODEL_DIR``, else the shipped one."""
    try:
        return Predictor.from_dir(default_model_dir())
    except ModelLoadError as e:
        pytest.skip(str(e))


def _lesion_prediction(image: MedicalImage, blobs: list[tuple[float, float, float, float]]) -> Prediction:
    """A Prediction (hand-set numbers) whose lesion is found, as the Predictor finds it, on a probability map of
    ``blobs``: ellipses (centre row, centre col, row radius, col radius) as fractions of the image."""
    h, w = image.pixels.shape[:2]
    probability = np.zeros((h, w), np.float32)
    for r, c, rr, cr in blobs:
        rows, cols = ellipse(r * h, c * w, rr * h, cr * w, shape=(h, w))
        probability[rows, cols] = 0.9
    prediction = make_prediction(0.4, shape=(h, w))
    prediction.lesion = find_lesions(probability, 0.5, image)
    assert prediction.lesion is not None
    return prediction


def _busi_multiframe(study: pydicom.Dataset) -> pydicom.Dataset:
    """The BUSI image as a 3-frame Ultrasound Multi-frame Image (PS3.3 A.7), frames shifted by a few columns."""
    ds = busi_ultrasound(busi_test_image("malignant", 0), study)
    frame = ds.pixel_array
    ds.PixelData = np.stack([np.roll(frame, 4 * k, axis=1) for k in range(3)]).tobytes()
    ds.NumberOfFrames, ds.FrameTime, ds.FrameIncrementPointer = 3, 33.3, (0x0018, 0x1063)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    return ds


def _dciodvfy(path: Path) -> list[str]:
    """dciodvfy's report lines for ``path``; skips when dicom3tools is not installed."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools; .ci/run does it)")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60, check=False)
    return (result.stdout + result.stderr).splitlines()


def _seg_mask(seg: hd.seg.Segmentation, source: pydicom.Dataset, frame: int | None) -> np.ndarray:
    """(H, W, segments) bool: the SEG's pixels for the source instance (or its 1-based ``frame``)."""
    if frame is None:
        pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID])
    else:
        pixels = seg.get_pixels_by_source_frame(source.SOPInstanceUID, [frame])
    return pixels[0].astype(bool)


def _values(group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations) -> dict[str, tuple[float, str]]:
    return {m.name.value: (m.value, m.unit.value) for m in group.get_measurements()}


def _expected(d: dict, mm_key: str, px_key: str) -> tuple[float, str]:
    return (d[mm_key], "mm" if mm_key != "area_mm2" else "mm2") if d[mm_key] is not None else (d[px_key], "{pixels}")


def _check_lesion_groups(sr: hd.sr.ComprehensiveSR, prediction: Prediction, seg: pydicom.Dataset,
                         source: pydicom.Dataset, frame: int | None) -> None:
    """The SR's TID 1410 groups: one per outlined lesion, principal first, each pointing at its segment's frame
    and holding what ``Prediction.lesion`` gives (the values the app shows)."""
    groups = sr.content.get_planar_roi_measurement_groups()
    lesions = prediction.lesion.lesions
    assert len(groups) == len(lesions)
    segments = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    for number, (group, lesion) in enumerate(zip(groups, lesions, strict=True), start=1):
        d = lesion.to_dict()
        values = _values(group)
        assert values[codes.SCT.LongAxis.value] == _expected(d, "long_axis_mm", "long_axis_px")
        assert values[codes.SCT.ShortAxis.value] == _expected(d, "short_axis_mm", "short_axis_px")
        assert values[codes.SCT.Area.value] == _expected(d, "area_mm2", "area_px")
        assert values[DEPTH.value] == _expected(d, "depth_mm", "depth_px")
        assert values[ASPECT_RATIO.value] == (pytest.approx(d["aspect_ratio"]), "1")
        evaluations = {q.name.value: q.value for q in group.get_qualitative_evaluations()}
        assert evaluations[ORIENTATION.value] == ORIENTATION_CODES[Orientation(d["orientation"])]
        assert evaluations[SHAPE.value] == SHAPE_CODES[Shape(d["shape"])]
        assert evaluations[MARGIN.value] == MARGIN_CODES[Margin(d["margin"])]
        assert group.method == FROM_OUTLINE and group.finding_type == LESION_TYPE
        reference = group.referenced_segmentation_frame
        assert reference[0].referenced_sop_instance_uid == seg.SOPInstanceUID
        seg_frame = reference[0].referenced_frame_numbers[0]
        item = seg.PerFrameFunctionalGroupsSequence[seg_frame - 1]
        shared = seg.SharedFunctionalGroupsSequence[0]
        holder = item if "SegmentIdentificationSequence" in item else shared
        assert holder.SegmentIdentificationSequence[0].ReferencedSegmentNumber == number  # that frame: this lesion
        assert reference[1].referenced_sop_instance_uid == source.SOPInstanceUID
        assert reference[1].referenced_frame_numbers == ([frame] if frame else None)
        assert group.tracking_uid == segments[number].TrackingUID  # the SR group and its segment: one lesion


# -- the builder, on real headers -------------------------------------------------------------------------------


def _sources(study: pydicom.Dataset) -> list[tuple[str, pydicom.Dataset, int]]:
    """(name, dataset, 0-based analysed frame): the BUSI-made DICOM, its multi-frame form, the shared scans."""
    shared = dicom_data_dir()
    sources = [("busi", busi_ultrasound(busi_test_image("malignant", 0), study, 1), 0),
               ("busi multi-frame", _busi_multiframe(study), 1)]
    for n, name in enumerate(SHARED_ULTRASOUND, start=3):
        ds = in_study(pydicom.dcmread(shared / name), study, n)
        sources.append((name, ds, int(ds.get("NumberOfFrames", 1)) - 1))
    return sources


def test_seg_and_lesion_sr_follow_every_ultrasound_source(tmp_path: Path) -> None:
    """For each source (grey, palette, RGB, YBR, JPEG-compressed, single and multi-frame): the SEG has the source
    frame's grid, reads back (highdicom) as the outline pixel for pixel, references the analysed instance and frame,
    copies the patient's identifiers only, and passes dciodvfy; the SR's lesion groups point at its segments."""
    study = new_study()
    for name, source, frame_index in _sources(study):
        image = load_image(part10(source), frame=frame_index)
        assert image.frame_index == frame_index
        prediction = _lesion_prediction(image, [(0.45, 0.4, 0.12, 0.18)])
        header = source_header(source)
        uids = result_uids(header.StudyInstanceUID, header.SOPInstanceUID, prediction.model)
        outline = build_outline(prediction, pydicom.dcmread(io.BytesIO(part10(source)), stop_before_pixels=True),
                                uids, frame_index=image.frame_index, frame_count=image.frame_count)
        assert outline is not None
        sr = build_sr(prediction, header, uids, frame_index=image.frame_index, frame_count=image.frame_count,
                      outline=outline)
        outline.seg.save_as(tmp_path / "seg.dcm", enforce_file_format=True)
        sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)

        seg = hd.seg.segread(tmp_path / "seg.dcm")
        frame = frame_index + 1 if image.frame_count > 1 else None
        assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns), name
        assert seg.SOPInstanceUID == uids.seg and seg.SeriesInstanceUID == uids.seg_series
        assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.SeriesInstanceUID != source.SeriesInstanceUID
        assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY" and seg.ContentLabel == CONTENT_LABEL
        assert "FrameOfReferenceUID" not in seg  # pixel-aligned with the source frame, not placed in a patient space
        mask = _seg_mask(seg, source, frame)
        assert np.array_equal(mask[..., 0], prediction.lesion.outline_mask), name
        derivation = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        assert derivation.ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert derivation.SpatialLocationsPreserved == "YES"
        assert derivation.get("ReferencedFrameNumber") == frame
        assert seg.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        description = seg.SegmentSequence[0]
        assert description.SegmentLabel == "Lesion" and description.SegmentAlgorithmType == "AUTOMATIC"
        assert description.SegmentedPropertyCategoryCodeSequence[0].CodeValue == LESION_CATEGORY.value
        assert description.SegmentedPropertyTypeCodeSequence[0].CodeValue == LESION_TYPE.value
        algorithm = description.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("test_model", "9.9.9")
        for keyword, value in PATIENT.items():
            assert str(seg.get(keyword)) == value, keyword
        for keyword in NOT_COPIED:
            assert keyword not in seg, keyword
        assert seg.Manufacturer == "medapp" and "StationName" not in seg  # not the scanner's equipment

        read_sr = hd.sr.srread(tmp_path / "sr.dcm")
        _check_lesion_groups(read_sr, prediction, seg, source, frame)
        evidence = {i.ReferencedSOPInstanceUID for s in read_sr.CurrentRequestedProcedureEvidenceSequence
                    for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
        assert evidence == {source.SOPInstanceUID, uids.seg}

        if name == MALFORMED_FRAMES:
            continue
        for path in (tmp_path / "seg.dcm", tmp_path / "sr.dcm"):
            report = _dciodvfy(path)
            assert not [line for line in report if line.startswith("Error")], (name, path.name, report)
            assert all(SCHEME in line for line in report if line.startswith("Warning")), (name, path.name, report)


def test_several_lesions_are_one_segment_each_principal_first(tmp_path: Path) -> None:
    """Two outlined lesions: segments "Lesion 1 (principal)" and "Lesion 2" whose union is the outline mask; one
    SR group each, in the same order, with that lesion's own measurements."""
    source = busi_ultrasound(busi_test_image("benign", 1), new_study())
    image = load_image(part10(source))
    prediction = _lesion_prediction(image, [(0.3, 0.3, 0.1, 0.15), (0.7, 0.7, 0.06, 0.08)])
    assert len(prediction.lesion.lesions) == 2
    uids = result_uids(source.StudyInstanceUID, source.SOPInstanceUID, prediction.model)
    outline = build_outline(prediction, source, uids)
    outline.seg.save_as(tmp_path / "seg.dcm", enforce_file_format=True)
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Lesion 1 (principal)", "Lesion 2"]
    mask = _seg_mask(seg, source, None)
    assert np.array_equal(mask[..., 0], prediction.lesion.principal.mask)
    assert np.array_equal(mask[..., 1], prediction.lesion.lesions[1].mask)
    assert np.array_equal(mask.any(axis=-1), prediction.lesion.outline_mask) and seg.SegmentsOverlap == "NO"
    sr = build_sr(prediction, source_header(source), uids, outline=outline)
    sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    _check_lesion_groups(hd.sr.srread(tmp_path / "sr.dcm"), prediction, seg, source, None)
    assert len(_dciodvfy(tmp_path / "seg.dcm")) == 1  # "Segmentation": no error, no warning


def test_measurements_in_pixels_without_a_calibration() -> None:
    """The same image without its Ultrasound Region calibration: sizes stay in pixels (UCUM "{pixels}")."""
    source = busi_ultrasound(busi_test_image("benign", 1), new_study())
    del source.SequenceOfUltrasoundRegions
    image = load_image(part10(source))
    prediction = _lesion_prediction(image, [(0.5, 0.5, 0.1, 0.2)])
    d = prediction.lesion.to_dict()
    assert d["long_axis_mm"] is None and d["area_mm2"] is None
    uids = result_uids(source.StudyInstanceUID, source.SOPInstanceUID, prediction.model)
    group = build_outline(prediction, source, uids).groups[0]
    values = _values(group)
    assert values[codes.SCT.LongAxis.value] == (d["long_axis_px"], "{pixels}")
    assert values[codes.SCT.Area.value] == (d["area_px"], "{pixels}")


@pytest.mark.parametrize(("table", "expected"), [
    (ORIENTATION_CODES, {"parallel": ("111355", "DCM"), "not parallel": ("111356", "DCM")}),
    (SHAPE_CODES, {"oval": ("84360004", "SCT"), "round": ("42700002", "SCT"), "irregular": ("49608001", "SCT")}),
    (MARGIN_CODES, {"circumscribed": ("129738007", "SCT"), "not circumscribed": ("MA-MARGIN-NOT-CIRC", SCHEME)}),
])
def test_descriptor_codes_cover_every_value_with_the_standard_codes(table: dict, expected: dict) -> None:
    """BI-RADS lexicon terms as PS3.16 codes them (CID 6152, 6005, 6007); only "not circumscribed" is local."""
    assert {str(k.value): (c.value, c.scheme_designator) for k, c in table.items()} == expected
    assert NOT_CIRCUMSCRIBED.scheme_designator == SCHEME and len(FROM_OUTLINE.meaning) <= 64  # LO


def test_no_outline_no_seg_and_a_mismatched_grid_is_refused() -> None:
    source = busi_ultrasound(busi_test_image("benign", 1), new_study())
    image = load_image(part10(source))
    uids = result_uids(source.StudyInstanceUID, source.SOPInstanceUID, {"sha256": "a" * 64})
    plain = make_prediction(0.2, shape=image.pixels.shape[:2])
    plain.lesion_note = "this model has no lesion-outline decoder"
    assert build_outline(plain, source, uids) is None
    with pytest.raises(ValueError, match="no lesion outline.*no lesion-outline decoder"):
        build_seg(plain, source, uids)
    outlined = _lesion_prediction(image, [(0.5, 0.5, 0.1, 0.1)])
    outlined.in_scope = False
    assert build_outline(outlined, source, uids) is None  # nothing is recorded for an image outside intended use
    smaller = copy.deepcopy(source)
    smaller.Rows = source.Rows - 1
    with pytest.raises(ValueError, match=rf"outline is {source.Rows}x{source.Columns} pixels but the source image"):
        build_seg(_lesion_prediction(image, [(0.5, 0.5, 0.1, 0.1)]), smaller, uids)


def test_the_seg_uid_does_not_follow_the_sign_off() -> None:
    """A signed SR references the same outline: the SEG's UIDs depend on the source, model and profile only."""
    model = {"name": "m", "version": "1", "sha256": "a" * 64}
    sign_off = SignOff.make(agrees=True, birads="3", comment="", user="dr.ada@hospital.example")
    unsigned, signed = result_uids("1.2.3", "1.2.3.4", model), result_uids("1.2.3", "1.2.3.4", model, sign_off)
    assert (signed.seg, signed.seg_series) == (unsigned.seg, unsigned.seg_series) == (
        result_uids("1.2.3", "1.2.3.4", model).seg, seg_series("1.2.3", model))
    assert unsigned.seg != result_uids("1.2.3", "1.2.3.5", model).seg
    assert unsigned.seg != result_uids("1.2.3", "1.2.3.4", {**model, "sha256": "b" * 64}).seg
    assert unsigned.with_outline(True) == (unsigned.seg, unsigned.sr, unsigned.pdf)
    assert unsigned.with_outline(False) == unsigned.objects


# -- through a real PACS -----------------------------------------------------------------------------------------


def _web(server: OrthancServer) -> DICOMwebClient:
    import requests

    session = requests.Session()
    session.auth = (server.config.user, server.config.password)
    return DICOMwebClient(server.config.dicomweb_url, session=session)


def _series(server: OrthancServer, study_uid: str, series_uid: str) -> list[pydicom.Dataset]:
    web = _web(server)
    found = web.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series_uid)
    return [web.retrieve_instance(study_uid, series_uid, item["00080018"]["Value"][0]) for item in found]


def _outlined_busi(predictor: Predictor, study: pydicom.Dataset) -> tuple[pydicom.Dataset, Prediction]:
    """The first BUSI malignant test image the model outlines a lesion on; skips, with the model's reason, when it
    outlines none of them (a model without an outline decoder)."""
    notes = []
    for index in range(4):
        source = busi_ultrasound(busi_test_image("malignant", index), study, 1)
        prediction = predictor.predict(load_image(part10(source)), explain=False)
        if prediction.lesion is not None and prediction.in_scope:
            return source, prediction
        notes.append(prediction.lesion_note or "outside intended use")
    pytest.skip(f"the model outlines no lesion on the BUSI test images ({'; '.join(sorted(set(notes)))})")


def test_analyze_store_writes_the_seg_and_lesion_sr_once(orthanc: OrthancServer, predictor: Predictor,  # noqa: F811
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``pacs analyze --store`` on a BUSI lesion image: the SEG (read back over DICOMweb) overlays the source pixel
    for pixel, the SR holds the lesion measurements the app shows and points at the SEG; running it again, and the
    radiologist's signed send afterwards, add no second SEG (the signed SR references the same one)."""
    study = new_study()
    source, expected = _outlined_busi(predictor, study)
    study_uid = str(study.StudyInstanceUID)
    pacs_client(orthanc).store([source], study_uid)
    monkeypatch.setenv("MEDAPP_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("MEDAPP_DEID_SECRET_FILE", str(tmp_path / "secret"))
    set_pacs_env(monkeypatch, orthanc)
    model_dir = default_model_dir()
    argv = ["pacs", "analyze", "--study", study_uid, "--store", "--json", "--model", str(model_dir)]
    assert main(argv) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    uids = result_uids(study_uid, source.SOPInstanceUID, predictor.model_info)
    assert line["status"] == "stored" and line["stored"] == [uids.seg, uids.sr, uids.pdf]  # the SEG first
    assert line["stored_kinds"] == ["SEG", "SR", "PDF"]
    assert line["prediction"]["lesion"]["long_axis_mm"] == expected.lesion.to_dict()["long_axis_mm"]

    (seg_ds,) = _series(orthanc, study_uid, uids.seg_series)
    seg = hd.seg.Segmentation.from_dataset(seg_ds)
    mask = _seg_mask(seg, source, None)
    assert np.array_equal(mask.any(axis=-1), expected.lesion.outline_mask)
    assert np.array_equal(mask[..., 0], expected.lesion.principal.mask)
    assert seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0] \
        .ReferencedSOPInstanceUID == source.SOPInstanceUID
    for keyword, value in PATIENT.items():
        assert str(seg_ds.get(keyword)) == value, keyword
    for keyword in NOT_COPIED:
        assert keyword not in seg_ds, keyword

    (sr_ds,) = _series(orthanc, study_uid, uids.sr_series)
    sr = hd.sr.ComprehensiveSR.from_dataset(sr_ds)
    _check_lesion_groups(sr, expected, seg_ds, source, None)
    long_axis = _values(sr.content.get_planar_roi_measurement_groups()[0])[codes.SCT.LongAxis.value]
    shown = expected.lesion.to_dict()
    assert long_axis == ((shown["long_axis_mm"], "mm") if shown["long_axis_mm"] is not None
                         else (shown["long_axis_px"], "{pixels}"))
    image_group = sr.content.get_image_measurement_groups()[0]  # the image's estimate is still there, beside
    assert {m.name.value: m.value for m in image_group.get_measurements()}[
        codes.DCM.ProbabilityOfCancer.value] == pytest.approx(expected.p_malignant, abs=1e-6)

    before = len(pacs_client(orthanc).search_instances(study_uid))
    assert before == 1 + 3
    assert main(argv) == 0
    (again,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert again["status"] == "already stored" and again["stored"] == []
    assert len(pacs_client(orthanc).search_instances(study_uid)) == before

    # the app's "Send to PACS" after sign-off: a signed SR and PDF; the stored SEG is referenced, not sent again
    client = pacs_client(orthanc)
    ref = next(r for r in client.search_instances(study_uid) if r.sop_uid == source.SOPInstanceUID)
    prediction, sign_off, outcome = _sign_and_send(client, ref, predictor, tmp_path, agrees=True, birads="4C", day=2)
    signed = result_uids(study_uid, source.SOPInstanceUID, prediction.model, sign_off)
    assert outcome.status == Status.STORED and outcome.stored == [signed.sr, signed.pdf]
    assert outcome.stored_kinds == ["SR", "PDF"] and "SEG" not in describe_send(outcome)
    assert len(client.search_instances(study_uid)) == before + 2
    assert len(_series(orthanc, study_uid, uids.seg_series)) == 1
    signed_sr = next(ds for ds in _series(orthanc, study_uid, uids.sr_series) if ds.SOPInstanceUID == signed.sr)
    group = hd.sr.ComprehensiveSR.from_dataset(signed_sr).content.get_planar_roi_measurement_groups()[0]
    assert group.referenced_segmentation_frame[0].referenced_sop_instance_uid == uids.seg


def test_signed_send_of_a_fresh_image_carries_its_seg(orthanc: OrthancServer, predictor: Predictor,  # noqa: F811
                                                       tmp_path: Path) -> None:
    """"Send to PACS" for an image nothing was stored for yet: the SEG goes with the signed SR and PDF, and the page
    says so; sending again stores nothing."""
    study = new_study()
    source, _ = _outlined_busi(predictor, study)
    study_uid = str(study.StudyInstanceUID)
    client = pacs_client(orthanc)
    client.store([source], study_uid)
    ref = next(iter(client.search_instances(study_uid)))
    prediction, sign_off, outcome = _sign_and_send(client, ref, predictor, tmp_path, agrees=False, birads="4A", day=3)
    uids = result_uids(study_uid, source.SOPInstanceUID, prediction.model, sign_off)
    assert outcome.stored == list(uids.with_outline(True)) and outcome.stored_kinds == ["SEG", "SR", "PDF"]
    assert describe_send(outcome) == ("Sent to the PACS: the signed SR and the PDF report, with the lesion outline "
                                      "(DICOM SEG), in this image's study.")
    _, _, again = _sign_and_send(client, ref, predictor, tmp_path, agrees=False, birads="4A", day=3)
    assert again.status == Status.ALREADY_STORED and len(client.search_instances(study_uid)) == 1 + 3


def _sign_and_send(client, ref, predictor: Predictor, tmp_path: Path, *, agrees: bool, birads: str, day: int):
    """The app's "Send to PACS" after sign-off: fetch the instance, predict, sign, store; (prediction, sign-off,
    outcome)."""
    data = client.fetch_instance(ref)
    image = load_image(data)
    prediction = predictor.predict(image)
    sign_off = SignOff.make(agrees=agrees, birads=birads, comment="", user="dr.ada@hospital.example",
                            now=dt.datetime(2025, 1, day, tzinfo=dt.UTC))
    analyzer = StudyAnalyzer(client, predictor, audit=AuditLog(tmp_path / "app.jsonl", user="tester"), store=True,
                             salt=SALT)
    return prediction, sign_off, analyzer.store_signed(ref, data, image, prediction, sign_off)
