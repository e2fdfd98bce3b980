"""The PACS round trip in a real browser (issue 15): Orthanc holds a breast-ultrasound study (a BUSI image with a
calibrated Ultrasound Region Sequence); the app, pointed at it by MEDAPP_PACS_*, lists it on the PACS page with the
patient's name, opens it into the Diagnose page, the radiologist signs off and presses "Send to PACS"; the verified
SR (with the sign-off) and the PDF are then read back from Orthanc over DICOMweb. Chromium via Playwright against
`streamlit run app.py`; nothing mocked on either side.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pacs_fixtures import busi_ultrasound, new_study, orthanc, pacs_client  # noqa: F401  (orthanc is a fixture)
from pypdf import PdfReader

from medapp.pacs.browse import StudyRow
from medapp.pacs.orthanc_server import OrthancServer
from medapp.pacs.results import ASSESSMENT, QUALITATIVE_EVALUATIONS, result_series, seg_series
from medapp.serving.signin import LOCAL_USER
from tests.app_fixtures import (  # noqa: F401  (app_model_dir is a fixture)
    CHROMIUM,
    CHROMIUM_ARGS,
    AppServer,
    app_model_dir,
    busi_test_image,
)
from tests.test_reading_browser import TIMEOUT_MS, _choose, _settle

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"Chromium not found at {CHROMIUM}; install it with "
                       "`apt-get install -y chromium`"),
    pytest.mark.filterwarnings("ignore:.*plain HTTP.*"),  # a local Orthanc is plain HTTP on 127.0.0.1
]
PATIENT_NAME = "Browserova^Bea"  # this test's own patient: the PACS page shows it as "Browserova, Bea"


def _web(server: OrthancServer) -> DICOMwebClient:
    """A plain dicomweb-client of our own, to read back what the app stored (not medapp's client)."""
    session = requests.Session()
    session.auth = (server.config.user, server.config.password)
    return DICOMwebClient(server.config.dicomweb_url, session=session)


def test_open_a_study_sign_off_and_send_to_pacs(orthanc: OrthancServer, app_model_dir: Path,  # noqa: F811
                                                tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    study = new_study(dt.date.today().strftime("%Y%m%d"))  # inside the page's default window (last 30 days)
    study.PatientName = PATIENT_NAME
    source = busi_ultrasound(busi_test_image("malignant", 8), study)
    study_uid = str(study.StudyInstanceUID)
    pacs_client(orthanc).store([source], study_uid)
    audit = tmp_path / "audit.jsonl"
    env = {"MEDAPP_MODEL_DIR": str(app_model_dir), "MEDAPP_AUDIT_LOG": str(audit),
           "MEDAPP_PACS_URL": orthanc.config.dicomweb_url, "MEDAPP_PACS_USER": orthanc.config.user,
           "MEDAPP_PACS_PASSWORD_FILE": str(orthanc.config.password_path)}
    with AppServer(env, log_path=tmp_path / "streamlit.log") as server, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.url)
            page.get_by_text("Drop breast-ultrasound images here").wait_for()
            page.get_by_test_id("stSidebarNav").get_by_role("link", name="PACS").click()
            page.get_by_text("Browserova, Bea").wait_for()  # the patient's name: on this page only
            page.screenshot(path=str(tmp_path / "pacs_page.png"))
            page.locator(f".st-key-open_{StudyRow(study_uid, '', '', '', '').key} button").click()

            page.get_by_role("heading", name="PACS image 1 of 1").wait_for()  # on Diagnose, analysed
            page.get_by_test_id("stMetricValue").first.wait_for()
            page.get_by_role("combobox", name="Your BI-RADS assessment").wait_for()  # the case record has rendered
            _settle(page)
            assert "Browserova" not in page.get_by_test_id("stMain").inner_text()
            assert page.get_by_role("button", name="Send to PACS").count() == 0  # not before sign-off
            _choose(page, "Your BI-RADS assessment", "4C")
            page.get_by_role("textbox", name="Comment").fill("Spiculated mass, biopsy")
            page.get_by_role("button", name="Sign off").click()
            page.get_by_text("Signed:").wait_for()
            page.get_by_role("button", name="Send to PACS").click()
            page.get_by_text(re.compile("Sent to the PACS: the signed SR and the PDF report")).wait_for()
            _settle(page)
        finally:
            browser.close()

    web = _web(orthanc)
    sr_series, pdf_series = result_series(study_uid, _model_info(audit))
    srs = [web.retrieve_instance(study_uid, sr_series, item["00080018"]["Value"][0])
           for item in web.search_for_instances(study_instance_uid=study_uid, series_instance_uid=sr_series)]
    pdfs = [web.retrieve_instance(study_uid, pdf_series, item["00080018"]["Value"][0])
            for item in web.search_for_instances(study_instance_uid=study_uid, series_instance_uid=pdf_series)]
    assert len(srs) == 1 and len(pdfs) == 1  # the signed result only: no unsigned copy beside it
    sr = srs[0]
    assert sr.VerificationFlag == "VERIFIED" and sr.PreliminaryFlag == "FINAL"
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == f"{LOCAL_USER}^"  # who signed in the app
    assert str(sr.PatientName) == PATIENT_NAME  # the patient's identifiers go back into the same study
    segs = [item["00080018"]["Value"][0] for item in web.search_for_instances(
        study_instance_uid=study_uid, series_instance_uid=seg_series(study_uid, _model_info(audit)))]
    assert len(segs) <= 1  # the lesion outline, when the model outlined one
    evidence = [i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence]
    assert sorted(evidence) == sorted([source.SOPInstanceUID, *segs])
    container = next(item for item in sr.ContentSequence if item.ValueType == "CONTAINER"
                     and item.ConceptNameCodeSequence[0].CodeValue == QUALITATIVE_EVALUATIONS.value)
    items = {i.ConceptNameCodeSequence[0].CodeValue: i for i in container.ContentSequence}
    assert items[ASSESSMENT.value].ConceptCodeSequence[0].CodeValue == "MA-BIRADS-4C"
    assert items["121106"].TextValue == "Spiculated mass, biopsy"
    pdf = pdfs[0]
    assert pdf.SourceInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(
        bytes(pdf.EncapsulatedDocument[: pdf.EncapsulatedDocumentLength]))).pages)
    assert "Radiologist sign-off" in text and "BI-RADS assessment 4C" in text

    log_text = audit.read_text()
    assert "Browserova" not in log_text and study_uid not in log_text and source.SOPInstanceUID not in log_text
    stored = [e for e in map(json.loads, log_text.splitlines()) if e["outputs"].get("store") == "requested"]
    assert len(stored) == 1 and len(stored[0]["outputs"]["stored_uid_hashes"]) == 2 + len(segs)


def _model_info(audit: Path) -> dict[str, str]:
    """The model (weights and site profile) the app served, as its audit log records it."""
    return next(e["model"] for e in map(json.loads, audit.read_text().splitlines()) if e["outputs"].get("store"))
