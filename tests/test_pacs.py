"""medapp against a real PACS: Orthanc with its DICOMweb plugin (Debian's packages), nothing mocked on either side.

A breast-ultrasound DICOM made from a BUSI image (with a calibrated Ultrasound Region Sequence) and the shared
ultrasound DICOMs go into Orthanc over STOW-RS; ``pacs analyze --store`` scores them and writes the SR and PDF back;
the tests read them back over DICOMweb and check them with highdicom, pydicom, pypdf and dciodvfy. Failure tests stop
the PACS mid-run, or talk to a local server that never answers or answers 503.
"""

from __future__ import annotations

import datetime as dt
import http.server
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import highdicom as hd
import pydicom
import pytest
from app_fixtures import busi_test_image
from dicomweb_client.api import DICOMwebClient
from intake_fixtures import dicom_data_dir, phi_dataset
from pacs_fixtures import (
    NOT_COPIED,
    PATIENT,
    SilentServer,
    busi_ultrasound,
    in_study,
    new_study,
    orthanc,  # noqa: F401
    pacs_client,
    part10,
    require_orthanc,
    set_pacs_env,
    silent,  # noqa: F401
)
from pydicom.sr.codedict import codes
from pypdf import PdfReader

from medapp.cli import main
from medapp.errors import ConfigError, PacsError
from medapp.formatting import format_probability
from medapp.intake.deidentify import hash_uid
from medapp.intake.imaging import load_image
from medapp.intake.privacy import AuditLog
from medapp.pacs.client import PacsClient, PacsConfig, check_url
from medapp.pacs.orthanc_server import OrthancServer, write_config
from medapp.pacs.results import (
    AGREES,
    ASSESSMENT,
    BIRADS_CODES,
    CATEGORY_CODES,
    IN_SCOPE,
    LIKELIHOOD,
    QUALITATIVE_EVALUATIONS,
    VERIFYING_ORGANIZATION,
    build_encapsulated_pdf,
    build_sr,
    measurement_group,
    person_name,
    result_series,
    result_uids,
    seg_series,
    source_header,
)
from medapp.pacs.workflow import Status, StudyAnalyzer, watch
from medapp.serving.predict import Predictor
from medapp.serving.reading import CaseDetails, SignOff

SALT = "test-site-secret-" + "0" * 32
SIGN_OFF = SignOff.make(agrees=False, birads="4B", comment="Irregular margin on the radial view",
                        user="dr.ada@hospital.example", now=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
pytestmark = pytest.mark.filterwarnings("ignore:.*plain HTTP.*")  # a local Orthanc is plain HTTP on 127.0.0.1


@pytest.fixture(scope="module")
def model_dir(shipped_model_dir: Path) -> Path:
    """The model the app and the CLI use: ``$MEDAPP_MODEL_DIR`` when set, else the shipped one."""
    chosen = os.environ.get("MEDAPP_MODEL_DIR")
    return Path(chosen) if chosen else shipped_model_dir


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    """What the app and the CLI use, giving realistic scope, probability and lesion-outline results."""
    return Predictor.from_dir(model_dir)


def _n_results(predictor: Predictor, source: pydicom.Dataset) -> int:
    """How many objects ``pacs analyze --store`` writes for ``source``: the SR and PDF, and a SEG when the model
    outlines a lesion on it."""
    return 2 + (predictor.predict(load_image(part10(source)), explain=False).lesion is not None)


def _web(server: OrthancServer) -> DICOMwebClient:
    """A plain dicomweb-client of our own, to read back what medapp stored (not medapp's client)."""
    import requests

    session = requests.Session()
    session.auth = (server.config.user, server.config.password)
    return DICOMwebClient(server.config.dicomweb_url, session=session)


def _upload(server: OrthancServer, *datasets: pydicom.Dataset) -> None:
    pacs_client(server).store(list(datasets), str(datasets[0].StudyInstanceUID))


def _results(server: OrthancServer, study_uid: str, model: dict[str, str]) -> tuple[list[pydicom.Dataset], ...]:
    """(SRs, PDFs) medapp stored in ``study_uid`` for ``model``, retrieved over WADO-RS."""
    web = _web(server)
    out = []
    for series in result_series(study_uid, model):
        found = web.search_for_instances(study_instance_uid=study_uid, series_instance_uid=series)
        out.append([web.retrieve_instance(study_uid, series, item["00080018"]["Value"][0]) for item in found])
    return tuple(out)


def _count(server: OrthancServer, study_uid: str) -> int:
    return len(pacs_client(server).search_instances(study_uid))


def _analyzer(server: OrthancServer, predictor: Predictor, tmp_path: Path, **kwargs: object) -> StudyAnalyzer:
    return StudyAnalyzer(pacs_client(server), predictor, audit=AuditLog(tmp_path / "audit.jsonl", user="tester"),
                         store=True, salt=SALT, **kwargs)


# -- the development PACS ---------------------------------------------------------------------------------------


def test_orthanc_config_is_local_authenticated_and_private(tmp_path: Path) -> None:
    require_orthanc()
    config = write_config(tmp_path / "pacs", port=18999)
    settings = json.loads(config.config_path.read_text())
    assert settings["RemoteAccessAllowed"] is False and settings["AuthenticationEnabled"] is True
    assert settings["DicomServerEnabled"] is False and settings["HttpPort"] == 18999
    assert settings["RegisteredUsers"] == {config.user: config.password} and len(config.password) >= 24
    assert Path(settings["Plugins"][0]).is_file() and settings["StorageDirectory"].startswith(str(tmp_path))
    for path in (config.config_path, config.password_path):  # both hold the password: owner only
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.password not in repr(config)
    assert write_config(tmp_path / "pacs").password == config.password  # a restart keeps the credentials


def test_orthanc_refuses_requests_without_the_credentials(orthanc: OrthancServer) -> None:  # noqa: F811
    import requests

    assert requests.get(orthanc.config.dicomweb_url + "/studies", timeout=10).status_code == 401
    with pytest.raises(PacsError, match="refused medapp's credentials.*MEDAPP_PACS_USER"):
        pacs_client(orthanc, password="not-the-password").search_studies()


def test_orthanc_refuses_other_machines_even_with_the_credentials(orthanc: OrthancServer) -> None:  # noqa: F811
    """Orthanc listens on every interface; RemoteAccessAllowed false refuses a client that is not on loopback."""
    import requests

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # TEST-NET-1: no packet is sent, the kernel only picks the interface
            address = s.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        pytest.skip("this machine has no network interface besides loopback")
    auth = (orthanc.config.user, orthanc.config.password)
    url = f"http://{address}:{orthanc.config.http_port}/dicom-web/studies"
    assert requests.get(url, auth=auth, timeout=10).status_code in (401, 403)
    assert requests.get(orthanc.config.dicomweb_url + "/studies", auth=auth, timeout=10).status_code == 200


# -- the acceptance round trip ----------------------------------------------------------------------------------


def test_analyze_store_round_trip(orthanc: OrthancServer, predictor: Predictor, model_dir: Path,  # noqa: F811
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """BUSI image + the shared ultrasound DICOMs + a non-ultrasound object in one study; ``pacs analyze --store``;
    read back: the SR holds the Predictor's numbers for that image and references it, the PDF opens; a re-run
    stores nothing new; the audit log names the study only hashed."""
    study = new_study()
    busi = busi_ultrasound(busi_test_image("malignant", 0), study, 1)
    shared = dicom_data_dir()
    others = [in_study(pydicom.dcmread(shared / name), study, n)
              for n, name in enumerate(["OBXXXX1A.dcm", "US1_UNCR.dcm", "mlut_18.dcm"], start=2)]
    _upload(orthanc, busi, *others)
    study_uid = str(study.StudyInstanceUID)
    audit_path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("MEDAPP_AUDIT_LOG", str(audit_path))
    monkeypatch.setenv("MEDAPP_DEID_SECRET_FILE", str(tmp_path / "secret"))
    set_pacs_env(monkeypatch, orthanc)  # and reloads the settings

    argv = ["pacs", "analyze", "--study", study_uid, "--store", "--json", "--model", str(model_dir)]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_uid = {line["sop_instance_uid"]: line for line in lines}
    n_results = _n_results(predictor, busi)  # with the SEG when the model outlines the lesion (test_pacs_seg.py)
    assert by_uid[busi.SOPInstanceUID]["status"] == "stored" and len(by_uid[busi.SOPInstanceUID]["stored"]) == n_results
    for ds in others[:2]:  # the shared scans: a palette-colour obstetric frame and a colour-flow frame
        assert by_uid[ds.SOPInstanceUID]["status"] == "outside intended use"
        assert by_uid[ds.SOPInstanceUID]["stored"] == [] and by_uid[ds.SOPInstanceUID]["message"]
    assert by_uid[others[2].SOPInstanceUID]["status"] == "skipped"
    assert "modality OT" in by_uid[others[2].SOPInstanceUID]["message"]

    # what the app shows for the same image
    expected = predictor.predict(load_image(part10(busi)), explain=False)
    assert expected.in_scope
    srs, pdfs = _results(orthanc, study_uid, predictor.model_info)
    assert len(srs) == 1 and len(pdfs) == 1  # results for the in-scope image only
    sr_ds = srs[0]
    assert sr_ds.SOPClassUID == pydicom.uid.ComprehensiveSRStorage and sr_ds.Modality == "SR"
    assert sr_ds.StudyInstanceUID == study_uid and sr_ds.SeriesInstanceUID != busi.SeriesInstanceUID
    sr = hd.sr.ComprehensiveSR.from_dataset(sr_ds)
    group = sr.content.get_image_measurement_groups()[0]
    values = {m.name.value: m.value for m in group.get_measurements()}
    assert values[codes.DCM.ProbabilityOfCancer.value] == pytest.approx(expected.p_malignant, abs=1e-6)
    assert values[codes.DCM.ThresholdValue.value] == pytest.approx(expected.threshold, abs=1e-9)
    evaluations = {q.name.value: q.value for q in group.get_qualitative_evaluations()}
    assert evaluations[LIKELIHOOD.value] == CATEGORY_CODES[expected.category.code]
    assert evaluations[IN_SCOPE.value] == codes.SCT.Yes
    assert group.source_images[0].referenced_sop_instance_uid == busi.SOPInstanceUID
    assert [i.ReferencedSOPInstanceUID for s in sr_ds.CurrentRequestedProcedureEvidenceSequence
            for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence] == [
        busi.SOPInstanceUID, *([result_uids(study_uid, busi.SOPInstanceUID, predictor.model_info).seg]
                               if expected.lesion is not None else [])]
    # pydicom alone, walking the tree: the same number in the NUM item's Floating Point Value
    nums = {item.ConceptNameCodeSequence[0].CodeValue: item.MeasuredValueSequence[0].FloatingPointValue
            for container in sr_ds.ContentSequence if "ContentSequence" in container
            for grp in container.ContentSequence if "ContentSequence" in grp
            for item in grp.ContentSequence if item.ValueType == "NUM"}
    assert nums["111047"] == pytest.approx(expected.p_malignant, abs=1e-6)
    assert sr_ds.VerificationFlag == "UNVERIFIED" and sr_ds.PreliminaryFlag == "PRELIMINARY"

    pdf_ds = pdfs[0]
    assert pdf_ds.Modality == "DOC" and pdf_ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert pdf_ds.SourceInstanceSequence[0].ReferencedSOPInstanceUID == busi.SOPInstanceUID
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(
        bytes(pdf_ds.EncapsulatedDocument[: pdf_ds.EncapsulatedDocumentLength]))).pages)
    assert "P(malignant)" in text and format_probability(expected.p_malignant) in text

    for result in (sr_ds, pdf_ds):  # the patient's identifiers kept, nothing else of the source copied
        for keyword, value in PATIENT.items():
            assert str(result.get(keyword)) == value, keyword
        for keyword in NOT_COPIED:
            assert keyword not in result, keyword

    # the audit log: user, model, result, stored objects; the study and instances only hashed
    log_text = audit_path.read_text()
    assert study_uid not in log_text and busi.SOPInstanceUID not in log_text and "Testperson" not in log_text
    entries = [json.loads(line) for line in log_text.splitlines()]
    salt = (tmp_path / "secret").read_text().strip()
    stored = [e for e in entries if e["outputs"].get("store") == "requested"]
    assert len(stored) == 1 and stored[0]["user"].endswith("(OS user, command line)")
    assert stored[0]["outputs"]["study_uid_hash"] == hash_uid(study_uid, salt)
    assert stored[0]["outputs"]["instance_uid_hash"] == hash_uid(busi.SOPInstanceUID, salt)
    assert sorted(stored[0]["outputs"]["stored_uid_hashes"]) == sorted(
        hash_uid(u, salt) for u in by_uid[busi.SOPInstanceUID]["stored"])
    assert stored[0]["model"]["sha256"] == predictor.card.weights_sha256
    assert stored[0]["outputs"]["p_malignant"] == pytest.approx(expected.p_malignant, abs=1e-6)
    assert sum(1 for e in entries if e["outputs"].get("in_scope") is False) == 2

    # the same command again: nothing new in the PACS, the analysed image not even fetched
    before = _count(orthanc, study_uid)
    assert main(argv) == 0
    again = {line["sop_instance_uid"]: line for line in map(json.loads, capsys.readouterr().out.splitlines())}
    assert again[busi.SOPInstanceUID]["status"] == "already stored" and again[busi.SOPInstanceUID]["stored"] == []
    assert _count(orthanc, study_uid) == before == 4 + n_results


def test_signed_result_joins_the_unsigned_one_and_resending_stores_nothing(
        orthanc: OrthancServer, predictor: Predictor, tmp_path: Path) -> None:  # noqa: F811
    """``pacs analyze --store`` left an unsigned SR and PDF; the radiologist signs: the signed SR and PDF are new
    instances beside them (the unsigned SR stays UNVERIFIED and is the signed one's predecessor); sending the same
    signed result again stores nothing; the audit log names the signed store with hashed UIDs."""
    study = new_study()
    source = busi_ultrasound(busi_test_image("malignant", 4), study, 1)
    _upload(orthanc, source)
    study_uid = str(study.StudyInstanceUID)
    analyzer = _analyzer(orthanc, predictor, tmp_path)
    assert [o.status for o in analyzer.analyze(study_uid)] == [Status.STORED]
    n_results = _n_results(predictor, source)
    assert _count(orthanc, study_uid) == 1 + n_results

    client = pacs_client(orthanc)
    ref = next(r for r in client.search_instances(study_uid) if r.sop_uid == source.SOPInstanceUID)
    data = client.fetch_instance(ref)  # as the app holds it: fetched over WADO-RS
    image = load_image(data)
    prediction = predictor.predict(image)
    case = CaseDetails(label="Clinic7-A", laterality="left", clock=2)
    outcome = analyzer.store_signed(ref, data, image, prediction, SIGN_OFF, case)
    signed = result_uids(study_uid, source.SOPInstanceUID, prediction.model, SIGN_OFF, case)
    unsigned = result_uids(study_uid, source.SOPInstanceUID, prediction.model)
    assert outcome.status == Status.STORED and sorted(outcome.stored) == sorted(signed.objects)
    assert _count(orthanc, study_uid) == 3 + n_results  # two new objects; the unsigned ones (and SEG) not again

    srs, pdfs = _results(orthanc, study_uid, predictor.model_info)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in srs}
    assert set(by_uid) == {signed.sr, unsigned.sr} and len(pdfs) == 2
    assert by_uid[unsigned.sr].VerificationFlag == "UNVERIFIED" and "VerifyingObserverSequence" not in by_uid[
        unsigned.sr]
    signed_sr = by_uid[signed.sr]
    assert signed_sr.VerificationFlag == "VERIFIED" and signed_sr.PreliminaryFlag == "FINAL"
    assert str(signed_sr.VerifyingObserverSequence[0].VerifyingObserverName) == "dr.ada@hospital.example^"
    assert _sign_off_items(signed_sr)[ASSESSMENT.value].ConceptCodeSequence[0].CodeValue == "MA-BIRADS-4B"
    assert (signed_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
            .ReferencedSOPInstanceUID == unsigned.sr)
    values = {m.name.value: m.value for m in hd.sr.ComprehensiveSR.from_dataset(signed_sr).content
              .get_image_measurement_groups()[0].get_measurements()}
    assert values[codes.DCM.ProbabilityOfCancer.value] == pytest.approx(prediction.p_malignant, abs=1e-6)
    signed_pdf = next(ds for ds in pdfs if ds.SOPInstanceUID == signed.pdf)
    text = " ".join(" ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(
        bytes(signed_pdf.EncapsulatedDocument[: signed_pdf.EncapsulatedDocumentLength]))).pages)
    assert "Radiologist sign-off" in text and "BI-RADS assessment 4B" in text and "left breast" in text
    assert "Clinic7-A" not in text  # the typed case label names downloads only, never what goes to the PACS

    again = analyzer.store_signed(ref, data, image, prediction, SIGN_OFF, case)
    assert again.status == Status.ALREADY_STORED and again.stored == [] and _count(orthanc, study_uid) == 3 + n_results
    entries = [e for e in AuditLog(tmp_path / "audit.jsonl").read() if "sign_off" in e["outputs"]]
    assert [e["outputs"]["store"] for e in entries] == ["requested", "nothing new"]
    assert sorted(entries[0]["outputs"]["stored_uid_hashes"]) == sorted(hash_uid(u, SALT) for u in signed.objects)
    assert entries[0]["outputs"]["instance_uid_hash"] == hash_uid(source.SOPInstanceUID, SALT)
    assert entries[0]["user"] == "tester" and entries[0]["outputs"]["sign_off"]["birads"] == "4B"
    log_text = (tmp_path / "audit.jsonl").read_text()
    assert study_uid not in log_text and source.SOPInstanceUID not in log_text and "Testperson" not in log_text


def test_written_objects_pass_dciodvfy(predictor: Predictor, tmp_path: Path) -> None:
    """DICOM conformance of the SR and the Encapsulated PDF (dicom3tools' dciodvfy): no errors. Its only warnings
    are for medapp's local coding scheme designator 99MEDAPP, which it does not know (PS3.16 8.2 allows it)."""
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools; .ci/run does it)")
    from medapp.reporting.export_region import export_region
    from medapp.reporting.report import build_report_pdf

    source = busi_ultrasound(busi_test_image("benign", 0), new_study())
    image = load_image(part10(source))
    prediction = predictor.predict(image)
    header = source_header(source)
    uids = result_uids(source.StudyInstanceUID, source.SOPInstanceUID, prediction.model)
    pdf = build_report_pdf(image, prediction, predictor.card, file_sha256="0" * 64, export=export_region(image))
    signed = result_uids(source.StudyInstanceUID, source.SOPInstanceUID, prediction.model, SIGN_OFF)
    for name, ds in [("sr.dcm", build_sr(prediction, header, uids)),
                     ("signed_sr.dcm", build_sr(prediction, header, signed, sign_off=SIGN_OFF,
                                                predecessor_uid=uids.sr)),
                     ("pdf.dcm", build_encapsulated_pdf(pdf, header, uids, prediction.model))]:
        ds.save_as(tmp_path / name, enforce_file_format=True)
        result = subprocess.run([dciodvfy, str(tmp_path / name)], capture_output=True, text=True, timeout=60,
                                check=False)
        report = (result.stdout + result.stderr).splitlines()
        assert not [line for line in report if line.startswith("Error")], report
        assert all("99MEDAPP" in line for line in report if line.startswith("Warning")), report
    # highdicom's own reading of the SRs (its constructors validated the TID 1500 tree when it was built)
    assert hd.sr.srread(tmp_path / "sr.dcm").content.get_image_measurement_groups()
    assert hd.sr.srread(tmp_path / "signed_sr.dcm").content.get_image_measurement_groups()


# -- results without a PACS -------------------------------------------------------------------------------------


def _sign_off_items(sr_ds: pydicom.Dataset) -> dict[str, pydicom.Dataset]:
    """The items of the SR's Qualitative Evaluations container (TID 1500 row 12), by concept code value: pydicom
    alone, walking the tree."""
    containers = [item for item in sr_ds.ContentSequence if item.ValueType == "CONTAINER"
                  and item.ConceptNameCodeSequence[0].CodeValue == QUALITATIVE_EVALUATIONS.value]
    assert len(containers) <= 1
    if not containers:
        return {}
    return {(item.ConceptNameCodeSequence[0].get("CodeValue") or item.ConceptNameCodeSequence[0].LongCodeValue):
            item for item in containers[0].ContentSequence}


def test_signed_sr_records_the_sign_off_and_is_verified(tmp_path: Path) -> None:
    """The radiologist's sign-off in the SR: VERIFIED and FINAL, who and when in the Verifying Observer Sequence,
    agrees/BI-RADS/comment in the content; read back from the file with highdicom and with pydicom."""
    from app_fixtures import make_prediction

    header = source_header(busi_ultrasound(busi_test_image("benign", 1), new_study()))
    prediction = make_prediction(0.37)
    unsigned = result_uids(header.StudyInstanceUID, header.SOPInstanceUID, prediction.model)
    uids = result_uids(header.StudyInstanceUID, header.SOPInstanceUID, prediction.model, SIGN_OFF)
    build_sr(prediction, header, uids, sign_off=SIGN_OFF, predecessor_uid=unsigned.sr).save_as(
        tmp_path / "signed.dcm", enforce_file_format=True)
    build_sr(prediction, header, unsigned).save_as(tmp_path / "unsigned.dcm", enforce_file_format=True)

    ds = pydicom.dcmread(tmp_path / "signed.dcm")
    assert ds.VerificationFlag == "VERIFIED" and ds.PreliminaryFlag == "FINAL" and ds.CompletionFlag == "COMPLETE"
    observer = ds.VerifyingObserverSequence[0]
    assert str(observer.VerifyingObserverName) == "dr.ada@hospital.example^"
    assert observer.VerificationDateTime == "20250102030405+0000"  # the sign-off's time, not the build's
    assert observer.VerifyingOrganization == VERIFYING_ORGANIZATION
    items = _sign_off_items(ds)
    assert items[AGREES.value].ConceptCodeSequence[0].CodeValue == codes.SCT.No.value
    assert items[ASSESSMENT.value].ConceptCodeSequence[0].CodeValue == BIRADS_CODES["4B"].value == "MA-BIRADS-4B"
    assert items[codes.DCM.Comment.value].TextValue == "Irregular margin on the radial view"
    predecessor = ds.PredecessorDocumentsSequence[0]
    assert predecessor.StudyInstanceUID == header.StudyInstanceUID
    assert predecessor.ReferencedSeriesSequence[0].SeriesInstanceUID == unsigned.sr_series == uids.sr_series
    assert predecessor.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == unsigned.sr

    sr = hd.sr.srread(tmp_path / "signed.dcm")  # highdicom: still a TID 1500 report holding the model's numbers
    group = sr.content.get_image_measurement_groups()[0]
    assert {m.name.value: m.value for m in group.get_measurements()}[
        codes.DCM.ProbabilityOfCancer.value] == pytest.approx(0.37)
    assert group.source_images[0].referenced_sop_instance_uid == header.SOPInstanceUID
    found = hd.sr.utils.find_content_items(sr.content[0], name=QUALITATIVE_EVALUATIONS, recursive=False)
    assert len(found) == 1 and len(found[0].ContentSequence) == 3

    plain = pydicom.dcmread(tmp_path / "unsigned.dcm")  # without a sign-off nothing of one is there
    assert plain.VerificationFlag == "UNVERIFIED" and plain.PreliminaryFlag == "PRELIMINARY"
    assert "VerifyingObserverSequence" not in plain and "PredecessorDocumentsSequence" not in plain
    assert _sign_off_items(plain) == {}


def test_signed_result_uids_follow_the_sign_off() -> None:
    """A signed result has its own UIDs: the same sign-off gives the same ones (re-sending finds them stored), a
    different sign-off or lesion location different ones (the PDF prints the location; the SR does not)."""
    model = {"name": "m", "version": "1", "sha256": "a" * 64}
    unsigned = result_uids("1.2.3", "1.2.3.4", model)
    signed = result_uids("1.2.3", "1.2.3.4", model, SIGN_OFF)
    assert signed == result_uids("1.2.3", "1.2.3.4", dict(model), SignOff(**SIGN_OFF.to_dict()))
    assert (signed.sr_series, signed.pdf_series) == (unsigned.sr_series, unsigned.pdf_series)
    assert not set(signed.objects) & set(unsigned.objects)
    agreeing = SignOff(**{**SIGN_OFF.to_dict(), "agrees": True})
    assert result_uids("1.2.3", "1.2.3.4", model, agreeing).sr != signed.sr
    left = result_uids("1.2.3", "1.2.3.4", model, SIGN_OFF, CaseDetails(laterality="left"))
    assert left.sr == signed.sr and left.pdf != signed.pdf
    assert result_uids("1.2.3", "1.2.3.4", model, SIGN_OFF, CaseDetails(label="typed")).pdf == signed.pdf


@pytest.mark.parametrize(("user", "expected"), [
    ("dr.ada@hospital.example", "dr.ada@hospital.example^"),
    ("sub-1 (https://idp.example)", "sub-1 (https://idp.example)^"),
    ("evil^name=x\\y", "evil name x y^"),
    ("x" * 100, "x" * 63 + "^"),
    ("", "unknown^"),
])
def test_signer_is_a_valid_person_name(user: str, expected: str) -> None:
    assert person_name(user) == expected
    assert len(expected) <= 64  # PN: 64 characters per component group (PS3.5 6.2)


def test_result_uids_depend_on_source_model_and_profile_only() -> None:
    model = {"name": "m", "version": "1", "sha256": "a" * 64}
    first = result_uids("1.2.3", "1.2.3.4", model)
    assert first == result_uids("1.2.3", "1.2.3.4", dict(model))
    assert all(pydicom.uid.UID(u).is_valid and u.startswith("2.25.") for u in vars(first).values())
    assert len(set(vars(first).values())) == 6
    assert result_uids("1.2.3", "1.2.3.5", model).sr_series == first.sr_series  # one series per study
    assert result_uids("1.2.3", "1.2.3.5", model).sr != first.sr
    assert result_uids("1.2.3", "1.2.3.4", {**model, "site_profile": "ours"}).sr != first.sr
    assert result_uids("1.2.3", "1.2.3.4", {**model, "sha256": "b" * 64}).sr_series != first.sr_series


def test_source_header_keeps_identifiers_only() -> None:
    source = phi_dataset()
    header = source_header(source)
    assert {e.keyword for e in header} <= {"SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID",
                                           "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                                           "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
                                           "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "InstanceNumber"}
    assert header.PatientName == source.PatientName and "InstitutionName" not in header
    assert "ImageComments" not in header and "OperatorsName" not in header


def test_outside_intended_use_records_no_probability(predictor: Predictor) -> None:
    from app_fixtures import make_prediction

    header = source_header(busi_ultrasound(busi_test_image("benign", 1), new_study()))
    uids = result_uids(header.StudyInstanceUID, header.SOPInstanceUID, predictor.model_info)
    out = make_prediction(0.7, in_scope=False)
    group = measurement_group(out, header, uids)
    names = {m.name.value for m in group.get_measurements()}
    assert codes.DCM.ProbabilityOfCancer.value not in names
    assert {q.name.value: q.value for q in group.get_qualitative_evaluations()} == {IN_SCOPE.value: codes.SCT.No}


def test_a_frame_of_a_multiframe_image_is_referenced_by_number() -> None:
    from app_fixtures import make_prediction

    header = source_header(busi_ultrasound(busi_test_image("benign", 1), new_study()))
    uids = result_uids(header.StudyInstanceUID, header.SOPInstanceUID, {"sha256": "a" * 64})
    group = measurement_group(make_prediction(0.2), header, uids, frame_index=1, frame_count=3)
    assert group.source_images[0].referenced_frame_numbers == [2]  # PS3.3: frame numbers start at 1
    assert measurement_group(make_prediction(0.2), header, uids).source_images[0].referenced_frame_numbers is None


def test_encapsulated_pdf_pads_odd_lengths_and_refuses_other_bytes() -> None:
    header = source_header(busi_ultrasound(busi_test_image("benign", 1), new_study()))
    uids = result_uids(header.StudyInstanceUID, header.SOPInstanceUID, {"sha256": "a" * 64})
    ds = build_encapsulated_pdf(b"%PDF-1.4 odd", header, uids, {"name": "m"})
    assert ds.EncapsulatedDocumentLength == 12 and len(ds.EncapsulatedDocument) == 12
    ds = build_encapsulated_pdf(b"%PDF-1.4 odd!", header, uids, {"name": "m"})
    assert ds.EncapsulatedDocumentLength == 13 and bytes(ds.EncapsulatedDocument) == b"%PDF-1.4 odd!\x00"
    with pytest.raises(ValueError, match="not a PDF"):
        build_encapsulated_pdf(b"<html>", header, uids, {"name": "m"})


# -- failure behaviour ------------------------------------------------------------------------------------------


def test_pacs_stopped_mid_run_clear_error_and_no_duplicates_after_restart(predictor: Predictor,
                                                                          tmp_path: Path) -> None:
    require_orthanc()
    server = OrthancServer(write_config(tmp_path / "pacs"))
    with server:
        study = new_study()
        first = busi_ultrasound(busi_test_image("malignant", 1), study, 1)
        second = busi_ultrasound(busi_test_image("malignant", 2), study, 2)
        _upload(server, first, second)
        study_uid = str(study.StudyInstanceUID)
        analyzer = _analyzer(server, predictor, tmp_path)

        def stop_after_first(outcome: object) -> None:
            server.stop()  # the PACS goes away between the first image's store and the second image's fetch

        with pytest.raises(PacsError, match=r"cannot reach the PACS at http://127\.0\.0\.1.*tried 2 times"):
            analyzer.analyze(study_uid, stop_after_first)
        server.start()  # same folder, port and credentials: what was stored is still there
        srs, pdfs = _results(server, study_uid, predictor.model_info)
        assert [len(srs), len(pdfs)] == [1, 1]

        outcomes = {o.sop_uid: o.status for o in _analyzer(server, predictor, tmp_path).analyze(study_uid)}
        assert outcomes == {first.SOPInstanceUID: Status.ALREADY_STORED, second.SOPInstanceUID: Status.STORED}
        outcomes = {o.sop_uid: o.status for o in _analyzer(server, predictor, tmp_path).analyze(study_uid)}
        assert set(outcomes.values()) == {Status.ALREADY_STORED}
        srs, pdfs = _results(server, study_uid, predictor.model_info)
        assert sorted(s.SourceInstanceSequence[0].ReferencedSOPInstanceUID for s in pdfs) == sorted(
            [first.SOPInstanceUID, second.SOPInstanceUID])
        n_results = _n_results(predictor, first) + _n_results(predictor, second)
        assert len({s.SOPInstanceUID for s in srs}) == len(srs) == 2 and _count(server, study_uid) == 2 + n_results
        segs = [r.sop_uid for r in pacs_client(server).search_instances(study_uid)
                if r.series_uid == seg_series(study_uid, predictor.model_info)]
        assert len(set(segs)) == len(segs) == n_results - 4  # one SEG per outlined image, never two
    entries = AuditLog(tmp_path / "audit.jsonl").read()
    assert [e["outputs"]["store"] for e in entries if "store" in e["outputs"]] == ["requested", "requested"]


def test_slow_pacs_times_out_and_only_searches_are_retried(silent: SilentServer) -> None:  # noqa: F811
    client = PacsClient(PacsConfig(silent.url, timeout=0.3, attempts=3, backoff=0.01))
    with pytest.raises(PacsError, match=r"did not answer a study search within 0\.3 s \(tried 3 times\)"):
        client.search_studies()
    assert len(silent.accepted) == 3
    source = busi_ultrasound(busi_test_image("benign", 0), new_study())
    with pytest.raises(PacsError, match=r"did not answer a store within 0\.3 s \(tried 1 time\)"):
        client.store([source], str(source.StudyInstanceUID))
    assert len(silent.accepted) == 4  # a store is sent once: whether a timed-out store arrived is unknown


class _Busy(http.server.BaseHTTPRequestHandler):
    """Answers every request 503 Service Unavailable, as an overloaded PACS or its proxy does."""

    requests: ClassVar[list[str]] = []

    def _busy(self) -> None:
        _Busy.requests.append(self.command)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _busy

    def log_message(self, *args: object) -> None:
        pass


def test_pacs_answering_503_is_retried_with_backoff_for_searches_only() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    waits: list[float] = []
    try:
        _Busy.requests = []
        client = PacsClient(PacsConfig(f"http://127.0.0.1:{server.server_port}/dicom-web", attempts=3, backoff=0.5),
                            sleep=waits.append)
        with pytest.raises(PacsError, match="answered HTTP 503 to an instance search after 3 tries"):
            client.search_instances("1.2.3")
        assert _Busy.requests == ["GET"] * 3 and waits == [0.5, 1.0]
        source = busi_ultrasound(busi_test_image("benign", 0), new_study())
        with pytest.raises(PacsError, match="answered HTTP 503 to a store; try again later"):
            client.store([source], str(source.StudyInstanceUID))
        assert _Busy.requests == ["GET"] * 3 + ["POST"]
    finally:
        server.shutdown()
        server.server_close()


def test_pacs_down_is_one_clear_cli_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["pacs", "list", "--dicomweb", f"http://127.0.0.1:{port}/dicom-web"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"error: cannot reach the PACS at http://127.0.0.1:{port}/dicom-web (a study search; tried 3 "
                    "times): is it running, and is the DICOMweb URL right?")]


@pytest.mark.parametrize(("url", "message"), [
    ("https://admin:secret@pacs.example/dicom-web", "holds a user name or password"),
    ("ftp://pacs.example/dicom-web", "must be an http"),
    ("https://pacs.example/dicom-web?user=x", "without a query"),
])
def test_bad_pacs_urls_are_refused(url: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=message):
        check_url(url)
    assert main(["pacs", "list", "--dicomweb", url]) == 2
    assert "secret" not in capsys.readouterr().err


def test_plain_http_to_another_host_warns() -> None:
    with pytest.warns(UserWarning, match="plain HTTP"):
        check_url("http://pacs.hospital.example/dicom-web")


# -- list and watch ----------------------------------------------------------------------------------------------


def test_upload_then_list_shows_studies_without_patient_fields(orthanc: OrthancServer,  # noqa: F811
                                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    study = new_study("20990301")
    (tmp_path / "scan.dcm").write_bytes(part10(busi_ultrasound(busi_test_image("benign", 2), study)))
    set_pacs_env(monkeypatch, orthanc)
    assert main(["pacs", "upload", str(tmp_path / "scan.dcm")]) == 0
    capsys.readouterr()
    assert main(["pacs", "list", "--since", "2099-03-01", "--json"]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines()]
    assert {"study_uid": study.StudyInstanceUID, "study_date": "20990301", "modalities": ["US"],
            "instances": 1} in rows
    assert not any(value in out for value in [*PATIENT.values(), *NOT_COPIED.values()])


def test_watch_is_bounded_resumable_and_idempotent(orthanc: OrthancServer, predictor: Predictor,  # noqa: F811
                                                   tmp_path: Path) -> None:
    study = new_study("20990601")  # no other test's study is this late: the watch sees this one only
    first = busi_ultrasound(busi_test_image("malignant", 3), study, 1)
    _upload(orthanc, first)
    study_uid = str(study.StudyInstanceUID)
    state = tmp_path / "watch.json"
    since = dt.date(2099, 6, 1)
    sleeps: list[float] = []

    def run() -> list:
        return watch(_analyzer(orthanc, predictor, tmp_path), since=since, interval=5, max_polls=2,
                     state_path=state, sleep=sleeps.append)

    assert [o.status for o in run()] == [Status.STORED]
    n_first = _n_results(predictor, first)
    assert sleeps == [5] and _count(orthanc, study_uid) == 1 + n_first
    assert study_uid not in state.read_text()  # hashed, as in the audit log
    assert run() == []  # resumed from the state file: nothing fetched, nothing stored
    state.unlink()
    assert [o.status for o in run()] == [Status.ALREADY_STORED]  # no state: the PACS says it is done
    added = busi_ultrasound(busi_test_image("benign", 3), study, 2)
    _upload(orthanc, added)
    outcomes = {o.sop_uid: o.status for o in run()}
    n_results = n_first + _n_results(predictor, added)
    assert outcomes[added.SOPInstanceUID] == Status.STORED and _count(orthanc, study_uid) == 2 + n_results
    assert len(_results(orthanc, study_uid, predictor.model_info)[0]) == 2


def test_pacs_serve_runs_orthanc_until_stopped(tmp_path: Path) -> None:
    """``make pacs``: a local, authenticated Orthanc; the printed lines are what to export; SIGTERM stops both."""
    import os
    import signal
    import sys
    import time

    import requests

    require_orthanc()
    from medapp.pacs.orthanc_server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "medapp", "pacs", "serve", "--dir", str(tmp_path / "pacs"),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    try:
        lines = [proc.stdout.readline() for _ in range(5)]
        assert f"export MEDAPP_PACS_URL=http://127.0.0.1:{port}/dicom-web" in lines[1]
        password_file = Path(lines[3].split("=", 1)[1].strip())
        assert password_file == (tmp_path / "pacs" / "pacs_password").resolve()
        assert not any(password_file.read_text().strip() in line for line in lines)  # the password is not printed
        auth = ("medapp", password_file.read_text().strip())
        assert requests.get(f"http://127.0.0.1:{port}/dicom-web/studies", auth=auth, timeout=10).json() == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/system", auth=auth, timeout=5)
        assert not (tmp_path / "pacs" / "orthanc.pid").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        orphan = tmp_path / "pacs" / "orthanc.pid"
        if orphan.exists():  # the command died without stopping its Orthanc (its own process group)
            os.killpg(int(orphan.read_text()), signal.SIGKILL)
