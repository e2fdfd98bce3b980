"""End to end in a real browser: `streamlit run app.py`, Debian's Chromium via Playwright, a real BUSI upload.

Runs in the default suite (and in CI, where .ci/run installs chromium); skips only when /usr/bin/chromium or
Playwright is missing. Screenshots go to docs/screenshots/ when the app runs the shipped model (the README embeds
them); with a stand-in model they go to the test's temporary folder, so the docs never show a toy model.
"""

from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader

from medapp.reporting.report import DECISION_SUPPORT, HEATMAP_CAPTION
from tests.app_fixtures import (  # noqa: F401  (app_model_dir is a fixture)
    CHROMIUM,
    CHROMIUM_ARGS,
    PROJECT_ROOT,
    AppServer,
    app_model_dir,
    app_server,
    busi_test_image,
    shipped_model_dirs,
)

SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
TIMEOUT_MS = 120_000

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y chromium`")


@pytest.fixture
def server(app_server):  # noqa: F811
    return app_server


def test_upload_heatmap_report_and_dashboard(server, app_model_dir, tmp_path):  # noqa: F811
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    shipped = app_model_dir in shipped_model_dirs()
    shots = SCREENSHOTS if shipped else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    image = busi_test_image("malignant", 3)

    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{server.url}/performance")  # a deep link as the very first request still gets the frame
            page.get_by_text(DECISION_SUPPORT).wait_for()
            page.goto(server.url)
            page.get_by_text(DECISION_SUPPORT).wait_for()
            assert page.get_by_role("link", name="Model card").count() == 1

            with page.expect_file_chooser() as chooser:
                page.locator("[data-testid=stFileUploaderDropzone] button").first.click()
            chooser.value.set_files(str(image))

            metric = page.get_by_test_id("stMetricValue").first
            metric.wait_for()
            assert re.fullmatch(r"[<>]?\d{1,2}%", metric.inner_text().strip())
            overlay = page.get_by_test_id("stImage").filter(has_text=re.compile(HEATMAP_CAPTION)).locator("img")
            overlay.wait_for()
            assert overlay.evaluate("img => img.naturalWidth") > 100
            page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)")
            page.screenshot(path=str(shots / "diagnose.png"), full_page=True)

            page.get_by_text("Blank the top and bottom bands").click()  # a PNG: the user chooses what leaves
            with page.expect_download() as download:
                page.get_by_role("button", name=re.compile("Download PDF report")).click()
            pdf_path = tmp_path / "report.pdf"
            download.value.save_as(pdf_path)
            reader = PdfReader(io.BytesIO(pdf_path.read_bytes()))
            text = " ".join(reader.pages[0].extract_text().split())
            assert DECISION_SUPPORT in text and "P(malignant)" in text and "UTC" in text
            assert image.name not in text and image.stem not in text  # no file name (PHI) in the report

            page.get_by_role("link", name="Model performance").click()
            page.get_by_role("heading", name="Model performance").wait_for()
            if (app_model_dir / "metrics.json").is_file():
                page.get_by_text("ROC curve").wait_for()
                page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)")
            page.set_viewport_size({"width": 1400, "height": 1750})  # the main pane scrolls inside the page
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "dashboard.png"))
        finally:
            browser.close()
    assert (shots / "diagnose.png").stat().st_size > 20_000


def test_hostile_file_names_show_as_text_and_fetch_nothing(server, tmp_path):
    """Issue 12, item 7: file names are shown literally, in the refusal box and as a result's heading; no link or
    image forms from them, and the page requests nothing from outside the app (hospital networks are offline)."""
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    refused_name = "[Open the full report](https:host.invalid) ![t](https:host.invalid).png"
    shown_name = ":red[alert] **scan** <b>x</b> ![t](https:host.invalid).png"
    outside = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("request", lambda r: None if r.url.startswith(server.url) or r.url.startswith("data:")
                    or r.url.startswith("blob:") else outside.append(r.url))
            page.goto(server.url)
            page.get_by_text(DECISION_SUPPORT).wait_for()
            with page.expect_file_chooser() as chooser:
                page.locator("[data-testid=stFileUploaderDropzone] button").first.click()
            chooser.value.set_files([
                {"name": refused_name, "mimeType": "image/png", "buffer": b"not an image at all"},
                {"name": shown_name, "mimeType": "image/png", "buffer": busi_test_image("benign", 0).read_bytes()},
            ])
            page.get_by_test_id("stAlertContentError").filter(has_text="was not analysed").wait_for()
            page.get_by_test_id("stMetricValue").first.wait_for()
            main = page.get_by_test_id("stMain")
            assert refused_name in main.get_by_test_id("stAlertContentError").first.inner_text()
            assert main.get_by_role("heading", name=shown_name).count() == 1  # literal, asterisks and all
            assert main.locator("a", has_text="Open the full report").count() == 0
            assert main.locator("img[src*='host.invalid']").count() == 0 and main.locator("b", has_text="x").count() == 0
        finally:
            browser.close()
    assert outside == []  # nothing from outside the app: not the names' links, not a favicon from a font host


def _busbra_zip(n_per_class: int) -> bytes:
    """BUS-BRA test images in malignant/ and benign/ folders: a small labelled set as a hospital would zip it."""
    import zipfile

    from medapp.data.datasets import Split, load_records

    records = load_records("busbra", Split.parse("test"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for label in ("malignant", "benign"):
            for r in [r for r in records if r.label == label][:n_per_class]:
                z.write(r.path, f"site/{label}/{r.path.name}")
    return buf.getvalue()


def test_validate_at_your_site_saves_a_profile_the_diagnose_page_uses(app_model_dir, tmp_path):  # noqa: F811
    import shutil

    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    busi_test_image()  # skips with the reason when the data is absent
    model_dir = tmp_path / "model"  # a copy: the profile is written beside the model, never into models/
    shutil.copytree(app_model_dir, model_dir, ignore=shutil.ignore_patterns("profiles"))
    shots = SCREENSHOTS if app_model_dir in shipped_model_dirs() else tmp_path
    archive = tmp_path / "site_cases.zip"
    archive.write_bytes(_busbra_zip(22))
    env = {"MEDAPP_MODEL_DIR": str(model_dir), "MEDAPP_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    with AppServer(env, log_path=tmp_path / "streamlit.log") as srv, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(f"{srv.url}/validate_site")
            page.get_by_role("heading", name="Validate at your site").wait_for()
            with page.expect_file_chooser() as chooser:
                page.locator("[data-testid=stFileUploaderDropzone] button").nth(1).click()
            chooser.value.set_files(str(archive))
            page.get_by_text("Judge the profile on held-out patients").click()  # 44 cases: fit and judge on all
            page.get_by_role("button", name="Validate 44 images").click()
            page.get_by_text("Sensitivity at the threshold").first.wait_for()
            page.get_by_text("Save the site profile").wait_for()
            page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)")
            page.screenshot(path=str(shots / "validate_site.png"), full_page=True)
            page.get_by_label("Profile name").fill("demo-site")
            page.get_by_label("Profile name").press("Enter")
            page.get_by_text("I confirm these are this site's").click()
            page.get_by_role("button", name="Save profile").click()
            page.get_by_text("Saved site profile 'demo-site'").wait_for()
            assert (model_dir / "profiles" / "demo-site.json").is_file()

            page.get_by_role("link", name="Diagnose").click()
            page.get_by_role("heading", name="Diagnose").wait_for()
            page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
            page.get_by_role("option", name="demo-site").click()
            page.get_by_test_id("stSidebar").get_by_text("calibrated for site demo-site").wait_for()
            with page.expect_file_chooser() as chooser:
                page.locator("[data-testid=stFileUploaderDropzone] button").first.click()
            chooser.value.set_files(str(busi_test_image("malignant", 3)))
            page.get_by_test_id("stMetricValue").first.wait_for()
            page.get_by_test_id("stCaptionContainer").filter(has_text="calibrated for site demo-site").first.wait_for()
        finally:
            browser.close()
