"""Privacy: no PHI in MedicalImage, logs, audit log or de-identified output; Basic Profile behaviour; AuditLog."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing as mp
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from intake_fixtures import PHI_STRINGS, PRIVATE_VALUE, SERIES_UID, SOP_UID, STUDY_UID, dicom_bytes, phi_dataset

from medapp.errors import ConfigError
from medapp.intake.deidentify import (
    TECHNICAL_TEXT,
    BurnedInTextWarning,
    action_for,
    deidentify,
    hash_uid,
    site_secret,
    table_size,
)
from medapp.intake.imaging import load_image
from medapp.intake.privacy import SAFE_METADATA_KEYS, AuditLog, safe_metadata, sha256_bytes

SECRET = "a" * 64  # a site secret for tests that fix one


def assert_no_phi(text: str) -> None:
    leaked = [value for value in PHI_STRINGS if value.lower() in text.lower()]
    assert not leaked, f"PHI leaked: {leaked}"


def test_medical_image_and_logs_carry_no_phi(tmp_path, caplog):
    path = tmp_path / "Doe_Jane_PID-99887766.dcm"  # file names carry names too: never logged
    path.write_bytes(dicom_bytes(phi_dataset()))
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = load_image(path)
    assert set(image.metadata) <= SAFE_METADATA_KEYS
    assert_no_phi(repr(image.metadata) + repr(image.notes) + repr(image.original_size) + image.source_kind)
    assert_no_phi(caplog.text + " ".join(str(w.message) for w in caught))
    assert "Doe_Jane" not in caplog.text and str(tmp_path) not in caplog.text
    assert any("decoded a DICOM image" in r.getMessage() for r in caplog.records)  # logging did happen


def test_deidentify_removes_phi_and_keeps_pixels(caplog):
    caplog.set_level(logging.DEBUG)
    original = phi_dataset()
    clean = deidentify(original, salt=SECRET)
    written = dicom_bytes(clean)
    assert_no_phi(written.decode("latin-1") + str(clean) + caplog.text)
    assert clean.PixelData == original.PixelData
    reread = pydicom.dcmread(io.BytesIO(written))
    np.testing.assert_array_equal(reread.pixel_array, original.pixel_array)
    assert reread.PatientIdentityRemoved == "YES" and "Basic Profile" in reread.DeidentificationMethod
    assert reread.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert reread.PatientName == "" and "PatientName" in reread  # Type 2: kept, emptied (PS3.15 action Z)
    assert not reread.get("InstitutionName") and "ImageComments" not in reread  # X/Z/D emptied; X removed
    assert not any(elem.tag.is_private for elem in reread)
    assert reread.Manufacturer == "ACME Medical" and reread.Modality == "US"  # equipment facts stay
    assert original.PatientName == "Doe^Jane^Quincy" and PRIVATE_VALUE in str(original)  # input untouched


def test_profile_table_is_the_standards_not_a_hand_picked_list():
    assert table_size() > 600  # PS3.15 Table E.1-1 names about 650 attributes
    expected = {"PatientName": "Z", "StudyComments": "X", "AcquisitionComments": "X", "InstitutionName": "Z",
                "ReasonForTheRequestedProcedure": "X", "ContributionDescription": "X", "TimezoneOffsetFromUTC": "X",
                "StudyInstanceUID": "U", "ContentSequence": "D", "PatientID": "Z"}
    for keyword, action in expected.items():
        assert action_for(pydicom.datadict.tag_for_keyword(keyword)) == action, keyword
    assert action_for(0x60023000) == action_for(0x60003000) == "X"  # overlay data in every repeating group
    assert action_for(pydicom.datadict.tag_for_keyword("Rows")) is None


def test_free_text_and_nested_sequences_are_cleaned():
    clean = deidentify(phi_dataset(), salt=SECRET)
    for keyword in ("StudyComments", "AcquisitionComments", "ReasonForTheRequestedProcedure",
                    "TimezoneOffsetFromUTC"):
        assert keyword not in clean, keyword
    equipment = clean.ContributingEquipmentSequence[0]
    assert "ContributionDescription" not in equipment and equipment.Manufacturer == "ACME Medical"
    procedure = clean.ProcedureCodeSequence[0]
    assert procedure.CodeValue == "US-BR-17" and "CodeMeaning" not in procedure  # a local scheme's meaning is text
    inner = procedure.ContentSequence[0]
    assert str(inner.get("PersonName") or "") in ("", "Anonymized") and "TextValue" not in inner  # D: a dummy
    assert inner.ReferencedSOPInstanceUID == clean.SOPInstanceUID == hash_uid(SOP_UID, SECRET)  # linked, salted
    assert_no_phi(str(clean))


def test_standard_code_meanings_and_technical_text_stay():
    ds = phi_dataset()
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "76752008", "SCT", "Breast"
    ds.AnatomicRegionSequence = pydicom.Sequence([code])
    ds.SoftwareVersions = "4.2.1"
    clean = deidentify(ds, salt=SECRET)
    assert clean.AnatomicRegionSequence[0].CodeMeaning == "Breast" and clean.SoftwareVersions == "4.2.1"
    assert {"Manufacturer", "SoftwareVersions", "CodeValue"} <= TECHNICAL_TEXT


def test_uids_replaced_consistently_with_salted_hashes():
    first, second = deidentify(phi_dataset(), salt=SECRET), deidentify(phi_dataset(), salt=SECRET)
    other_site = deidentify(phi_dataset(), salt="b" * 64)
    originals = {"StudyInstanceUID": STUDY_UID, "SeriesInstanceUID": SERIES_UID, "SOPInstanceUID": SOP_UID}
    for keyword, old in originals.items():
        new = first[keyword].value
        assert new != old and new == second[keyword].value == hash_uid(old, SECRET)
        assert other_site[keyword].value != new  # another site's secret gives other UIDs
        unsalted = "2.25." + str(int.from_bytes(hashlib.sha512(("\x00" + old).encode()).digest()[:16], "big"))
        assert new != unsalted  # the previous, unsalted scheme: anyone holding the originals could re-link
        assert re.fullmatch(r"2\.25\.(0|[1-9]\d*)", new) and len(new) <= 64  # PS3.5 9.1 / B.2
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert first.SOPClassUID == phi_dataset().SOPClassUID  # standard class UIDs are not identifying
    with pytest.raises(ConfigError, match="site secret"):
        hash_uid(STUDY_UID, "short")


def test_site_secret_is_created_once_private_and_used_by_default(tmp_path, monkeypatch):
    from medapp.settings import reload_settings

    path = tmp_path / "site" / "deid_secret"
    monkeypatch.setenv("MEDAPP_DEID_SECRET_FILE", str(path))
    reload_settings()
    secret = site_secret()
    assert len(secret) == 64 and path.stat().st_mode & 0o777 == 0o600
    assert site_secret() == secret  # stable: the same study keeps its replacement UIDs
    assert deidentify(phi_dataset()).StudyInstanceUID == hash_uid(STUDY_UID, secret)
    path.write_text("too short\n")
    with pytest.raises(ConfigError, match="shorter than"):
        site_secret()


@pytest.mark.parametrize(("burned_in", "warns"), [("YES", "Burned In Annotation is YES"), (None, "ultrasound without")])
def test_burned_in_annotation_warnings(burned_in, warns):
    with pytest.warns(BurnedInTextWarning, match=warns):
        deidentify(phi_dataset(burned_in=burned_in), salt=SECRET)


def test_no_warning_when_burned_in_is_no():
    with warnings.catch_warnings():
        warnings.simplefilter("error", BurnedInTextWarning)
        deidentify(phi_dataset(burned_in="NO"), salt=SECRET)


def test_safe_metadata_filters_unknown_keys():
    assert safe_metadata({"modality": "US", "patient_name": "Doe^Jane", "body_part": ""}) == {"modality": "US"}


def test_audit_log_records_utc_hash_model_outputs_and_no_phi(tmp_path):
    data = dicom_bytes(phi_dataset())
    log = AuditLog(tmp_path / "audit" / "log.jsonl")
    model = {"name": "resnet18", "version": "1.0.0", "weights_sha256": "ab" * 32}
    entry = log.record(file_sha256=sha256_bytes(data), model=model, outputs={"p_malignant": np.float32(0.25)})
    assert entry["time_utc"].endswith("Z") and entry["outputs"]["p_malignant"] == pytest.approx(0.25)
    text = log.path.read_text()
    assert json.loads(text)["file_sha256"] == sha256_bytes(data) and text.count("\n") == 1
    assert_no_phi(text)
    assert log.read()[0]["model"] == model


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"file_sha256": "not-a-hash"}, "64 lowercase hex"),
        ({"outputs": {"patient_name": "x"}}, "could identify a patient"),
        ({"model": {"meta": [{"filename": "x"}]}}, "could identify a patient"),
    ],
)
def test_audit_log_refuses_phi_shaped_fields(tmp_path, kwargs, match):
    args = {"file_sha256": "0" * 64, "model": {"name": "m"}, "outputs": {}} | kwargs
    with pytest.raises(ValueError, match=match):
        AuditLog(tmp_path / "log.jsonl").record(**args)


def _write_many(path: str, worker: int, count: int) -> None:
    log = AuditLog(path)
    for i in range(count):  # lines longer than PIPE_BUF (4 kB), where unlocked appends could interleave
        log.record(file_sha256=f"{worker:02x}" * 32, model={"name": "m"}, outputs={"i": i, "pad": "x" * 6000})


def test_audit_log_safe_for_concurrent_writers(tmp_path):
    path = str(tmp_path / "log.jsonl")
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=_write_many, args=(path, w, 40)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    lines = Path(path).read_text().splitlines()
    assert len(lines) == 160
    entries = [json.loads(line) for line in lines]  # every line is whole JSON
    for w in range(4):
        assert sorted(e["outputs"]["i"] for e in entries if e["file_sha256"] == f"{w:02x}" * 32) == list(range(40))


def test_audit_log_names_the_user_who_asked_and_refuses_a_blank_one(tmp_path):
    """A clinician's identity is not the patient's: ``user`` is written, while patient fields stay refused."""
    log = AuditLog(tmp_path / "log.jsonl", user="dr.a@hospital.example")
    entry = log.record(file_sha256="0" * 64, model={"name": "m"}, outputs={"p_malignant": 0.5})
    assert entry["user"] == "dr.a@hospital.example" and log.read() == [entry]
    assert "user" not in AuditLog(tmp_path / "other.jsonl").record(file_sha256="0" * 64, model={}, outputs={})
    for blank in ("", "  ", 42):
        with pytest.raises(ValueError, match="audit user must be a non-empty string"):
            AuditLog(tmp_path / "log.jsonl", user=blank)
