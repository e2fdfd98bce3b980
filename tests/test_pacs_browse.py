"""The app's side of the PACS (medapp.pacs.browse, pages/pacs.py, "Send to PACS" in pages/case_record.py) against a
real Orthanc: recent studies with the patient's name on the PACS page only, a study opened into the Diagnose page,
the signed result sent back; the PACS going away between sign-off and send loses nothing and the send can be retried.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import socket
from pathlib import Path

import pydicom
import pytest
from app_fixtures import PROJECT_ROOT, app_model_dir, busi_test_image  # noqa: F401  (a fixture)
from intake_fixtures import dicom_data_dir
from pacs_fixtures import (
    busi_ultrasound,
    in_study,
    new_study,
    orthanc,  # noqa: F401
    pacs_client,
    set_pacs_env,
)
from streamlit.testing.v1 import AppTest

from medapp.errors import PacsError, UnsupportedImageError
from medapp.intake.privacy import AuditLog
from medapp.pacs.browse import (
    NOT_CONFIGURED,
    PacsInbox,
    StudyRow,
    default_since,
    describe_send,
    display_name,
    open_study,
    recent_studies,
    send_signed,
)
from medapp.pacs.client import PacsClient, PacsConfig
from medapp.pacs.orthanc_server import OrthancServer
from medapp.pacs.results import result_uids
from medapp.pacs.workflow import Status, StudyAnalyzer
from medapp.serving.analysis import analyze_upload
from medapp.serving.predict import Predictor
from medapp.serving.reading import SignOff
from medapp.serving.signin import LOCAL_USER
from medapp.settings import reload_settings

pytestmark = pytest.mark.filterwarnings("ignore:.*plain HTTP.*")  # a local Orthanc is plain HTTP on 127.0.0.1
SALT = "test-site-secret-" + "0" * 32
TIMEOUT = 180


def _closed_port_url() -> str:
    with socket.socket() as s:  # a port nobody listens on: a PACS that is down
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/dicom-web"


def _study_today(server: OrthancServer, *extra: pydicom.Dataset) -> tuple[pydicom.Dataset, pydicom.Dataset]:
    """A study dated today (inside the PACS page's default window) with one BUSI ultrasound image (+ ``extra``)."""
    study = new_study(dt.date.today().strftime("%Y%m%d"))
    source = busi_ultrasound(busi_test_image("malignant", 7), study, 1)
    pacs_client(server).store([source, *(in_study(ds, study, n) for n, ds in enumerate(extra, 2))],
                              str(study.StudyInstanceUID))
    return study, source


def test_display_name_and_rows_keep_the_name_out_of_repr() -> None:
    assert display_name("Testperson^Ada^Marie") == "Testperson, Ada Marie"
    assert display_name("Solo") == "Solo" and display_name("") == "(no name)"
    row = StudyRow("1.2.3", "2025-01-02", "US", "1", "Testperson, Ada")
    assert "Testperson" not in repr(row) and "1.2.3" not in repr(row)
    assert row.key == StudyRow("1.2.3", "other", "", "", "").key != StudyRow("1.2.4", "", "", "", "").key
    assert default_since(dt.date(2025, 3, 31)) == dt.date(2025, 3, 1)


def test_recent_studies_list_ultrasound_with_the_patient_name(orthanc: OrthancServer) -> None:  # noqa: F811
    study = new_study("20991101")  # no other test's study is this late
    pacs_client(orthanc).store([busi_ultrasound(busi_test_image("benign", 5), study)], str(study.StudyInstanceUID))
    other = new_study("20991102")  # a study with no ultrasound in it is not listed
    pacs_client(orthanc).store([in_study(pydicom.dcmread(dicom_data_dir() / "mlut_18.dcm"), other)],
                               str(other.StudyInstanceUID))
    rows, total = recent_studies(pacs_client(orthanc), dt.date(2099, 11, 1))
    assert total == 1 and [(r.study_uid, r.date, r.modalities, r.images, r.patient) for r in rows] == [
        (study.StudyInstanceUID, "2099-11-01", "US", "1", "Testperson, Ada")]


def test_open_study_fetches_its_ultrasound_images_only(orthanc: OrthancServer) -> None:  # noqa: F811
    study, source = _study_today(orthanc, pydicom.dcmread(dicom_data_dir() / "mlut_18.dcm"))
    inbox = open_study(pacs_client(orthanc), str(study.StudyInstanceUID))
    assert [u.name for u in inbox.uploads] == ["PACS image 1 of 1"]
    upload = inbox.uploads[0]
    assert pydicom.dcmread(io.BytesIO(upload.data)).SOPInstanceUID == source.SOPInstanceUID
    ref = inbox.source(upload.sha256)
    assert ref is not None and (ref.study_uid, ref.series_uid, ref.sop_uid) == (
        study.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)
    assert inbox.source("0" * 64) is None and inbox.upload(upload.sha256) is upload
    assert inbox.notes == [("1 object(s) of the study are not ultrasound images (reports, other modalities) and "
                            "were not opened")]
    only_other = new_study()
    pacs_client(orthanc).store([in_study(pydicom.dcmread(dicom_data_dir() / "mlut_18.dcm"), only_other)],
                               str(only_other.StudyInstanceUID))
    with pytest.raises(UnsupportedImageError, match=r"no ultrasound image \(modalities: OT\)"):
        open_study(pacs_client(orthanc), str(only_other.StudyInstanceUID))


def test_send_signed_with_the_pacs_down_keeps_everything_and_can_be_retried(
        orthanc: OrthancServer, shipped_model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    predictor = Predictor.from_dir(shipped_model_dir)
    study, source = _study_today(orthanc)
    inbox = open_study(pacs_client(orthanc), str(study.StudyInstanceUID))
    analysis = analyze_upload(predictor, inbox.uploads[0])
    sign_off = SignOff.make(agrees=True, birads="4C", comment="", user="dr.ada@hospital.example")
    audit = AuditLog(tmp_path / "audit.jsonl", user="dr.ada@hospital.example")
    down = PacsClient(PacsConfig(_closed_port_url(), attempts=2, backoff=0.01))
    with pytest.raises(PacsError, match="cannot reach the PACS"):
        send_signed(inbox, analysis, sign_off, None, predictor, audit, None, client=down)
    assert inbox.sent == {} and len(pacs_client(orthanc).search_instances(study.StudyInstanceUID)) == 1

    outcome = send_signed(inbox, analysis, sign_off, None, predictor, audit, None, client=pacs_client(orthanc))
    uids = result_uids(study.StudyInstanceUID, source.SOPInstanceUID, analysis.prediction.model, sign_off)
    sent = uids.with_outline(analysis.prediction.lesion is not None)  # the SEG too when the model outlined one
    assert outcome.status == Status.STORED and sorted(outcome.stored) == sorted(sent)
    assert inbox.sent[analysis.file_sha256] is outcome
    assert describe_send(outcome).startswith("Sent to the PACS: the signed SR and the PDF report")
    unsigned = result_uids(study.StudyInstanceUID, source.SOPInstanceUID, analysis.prediction.model)
    held = {r.sop_uid for r in pacs_client(orthanc).search_instances(study.StudyInstanceUID)}
    assert held == {source.SOPInstanceUID, *sent} and not held & set(unsigned.objects)
    again = send_signed(inbox, analysis, sign_off, None, predictor, audit, None, client=pacs_client(orthanc))
    assert again.status == Status.ALREADY_STORED and describe_send(again).startswith("Already in the PACS")
    # ``pacs analyze --store`` afterwards: the image's signed result is there, so no unsigned copy is added
    cli = StudyAnalyzer(pacs_client(orthanc), predictor, audit=audit, store=True, salt=SALT)
    assert [(o.sop_uid, o.status) for o in cli.analyze(study.StudyInstanceUID)] == [
        (source.SOPInstanceUID, Status.ALREADY_STORED)]
    assert len(pacs_client(orthanc).search_instances(study.StudyInstanceUID)) == 1 + len(sent)
    with pytest.raises(ValueError, match="opened from the PACS"):
        send_signed(PacsInbox("1.2.3"), analysis, sign_off, None, predictor, audit, None, client=down)


# -- the page, through Streamlit's AppTest -----------------------------------------------------------------------


@pytest.fixture
def app_env(app_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:  # noqa: F811
    monkeypatch.setenv("MEDAPP_MODEL_DIR", str(app_model_dir))
    monkeypatch.setenv("MEDAPP_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    for name in ("MEDAPP_PACS_URL", "MEDAPP_PACS_USER", "MEDAPP_PACS_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    reload_settings()
    return tmp_path / "audit.jsonl"


def _pacs_page() -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page("pages/pacs.py").run()
    assert not at.exception, at.exception
    return at


def test_pacs_page_without_a_pacs_says_how_to_configure_one(app_env: Path) -> None:
    at = _pacs_page()
    assert [i.value for i in at.info] == [NOT_CONFIGURED]
    assert "MEDAPP_PACS_URL" in NOT_CONFIGURED and "README" in NOT_CONFIGURED


def test_pacs_page_opens_a_study_then_send_survives_the_pacs_going_down(
        app_env: Path, orthanc: OrthancServer, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    study, _ = _study_today(orthanc)
    set_pacs_env(monkeypatch, orthanc)
    at = _pacs_page()
    assert "Testperson, Ada" in [t.value for t in at.text]  # the name, here only, as literal text
    key = StudyRow(str(study.StudyInstanceUID), "", "", "", "").key
    at.button(key=f"open_{key}").click().run()
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader] == ["PACS image 1 of 1"] and at.metric  # on Diagnose, analysed
    at.switch_page("pages/diagnose.py")  # AppTest's later runs start from its own page (the browser test: none)
    sha = hashlib.sha256(at.session_state["pacs_inbox"].uploads[0].data).hexdigest()
    assert f"send_{sha}" not in [b.key for b in at.button]  # not before sign-off
    at.selectbox(key=f"birads_{sha}").set_value("4A")
    at.button(key=f"sign_off_{sha}").click().run()

    monkeypatch.setenv("MEDAPP_PACS_URL", _closed_port_url())  # the PACS goes away after the sign-off
    reload_settings()
    at.button(key=f"send_{sha}").click().run()
    assert not at.exception, at.exception
    assert any(e.value.startswith("Not sent: cannot reach the PACS") and "sign-off is kept" in e.value
               for e in at.error)
    assert any("Signed:" in s.value for s in at.success)  # nothing lost from the session
    assert len(pacs_client(orthanc).search_instances(study.StudyInstanceUID)) == 1

    set_pacs_env(monkeypatch, orthanc)  # back: the same button sends it
    at.button(key=f"send_{sha}").click().run()
    sent = [s.value for s in at.success if s.value.startswith("Sent to the PACS: the signed SR and the PDF report")]
    assert len(sent) == 1
    n_sent = 2 + ("with the lesion outline (DICOM SEG)" in sent[0])  # the SEG when the model outlined a lesion
    assert len(pacs_client(orthanc).search_instances(study.StudyInstanceUID)) == 1 + n_sent
    at.button(key=f"send_{sha}").click().run()
    assert any(s.value.startswith("Already in the PACS") for s in at.success)
    assert len(pacs_client(orthanc).search_instances(study.StudyInstanceUID)) == 1 + n_sent

    log_text = app_env.read_text()
    assert "Testperson" not in log_text and str(study.StudyInstanceUID) not in log_text
    stores = [e for e in map(json.loads, log_text.splitlines()) if e["outputs"].get("store")]
    assert [e["outputs"]["store"] for e in stores] == ["requested", "nothing new"]
    assert stores[0]["user"] == LOCAL_USER and stores[0]["outputs"]["sign_off"]["birads"] == "4A"
    assert len(stores[0]["outputs"]["stored_uid_hashes"]) == n_sent and stores[0]["outputs"]["source"] == "pacs"

    at.switch_page("pages/pacs.py").run()  # back on the PACS page: the open study is named, and can be closed
    assert any(i.value.startswith("1 image(s) of a PACS study are open") for i in at.info)
    at.button(key="pacs_close").click().run()
    assert "pacs_inbox" not in at.session_state and not any("are open" in i.value for i in at.info)
