"""The reading room in a real browser (issue 13): the open case survives new files, no stale result beside a new
image, a biopsy-range estimate never reassures, the report carries the typed label, laterality and sign-off, two
views make one lesion, and the model's lesion outline and calipers appear, hide with their toggle and reach the PDF
with the measurements. Chromium via Playwright against `streamlit run app.py`, with the shipped model.

Screenshots at 1280x720 and at tablet width (820 px) go to docs/screenshots/ when the app runs the shipped model.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re

import numpy as np
import pytest
from pypdf import PdfReader

from medapp.serving.likelihood import TONE_BADGES
from medapp.serving.outline_overlay import LEGEND
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

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"Chromium not found at {CHROMIUM}; install it with "
                                "`apt-get install -y chromium`")


@pytest.fixture
def server(app_server):  # noqa: F811
    return app_server


def _open(pw, server, width: int = 1280, height: int = 720):
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url)
    page.get_by_text("Drop breast-ultrasound images here").wait_for()
    return browser, page


def _upload(page, *paths) -> None:
    """Add files to the uploader (files already there stay), as choosing them in the file dialog does."""
    page.locator("[data-testid=stFileUploaderDropzone] input[type=file]").first.set_input_files([str(p) for p in paths])


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box or multiselect ``label`` (Streamlit's combobox opens on typing)."""
    box = page.get_by_role("combobox", name=label)
    if box.is_visible():
        box.click()
        box.fill(option)
    else:  # an empty multiselect's input has no width: click its box, then type
        page.get_by_test_id("stMultiSelect").filter(has_text=label).click()
        page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()
    _settle(page)


def _settle(page) -> None:
    """Wait for the app's rerun after a widget change to finish (Streamlit's status widget shows while it runs)."""
    page.wait_for_timeout(400)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')")
    page.wait_for_timeout(300)


def _case_heading(page) -> str:
    heads = page.get_by_test_id("stMain").locator("h3").all_inner_texts()
    return next((h.strip() for h in heads if h.strip() not in ("Worklist", "")), "")


def _wait_heading(page, name: str) -> None:
    page.wait_for_function("n => [...document.querySelectorAll('[data-testid=stMain] h3')]"
                           ".some(h => h.innerText.trim() === n)", arg=name)


def _biopsy_range_image():
    """A BUSI test image the shipped model scored in the biopsy range but below its threshold (4A/4B, not
    flagged by the threshold alone), from the stored evaluation; None without one."""
    metrics = json.loads((shipped_model_dirs()[0] / "metrics.json").read_text())
    below = [p for p in metrics["predictions"] if 0.03 < p["p_malignant"] < metrics["threshold"] - 0.01]
    return busi_test_image("benign", 0).parents[1] / below[0]["image"] if below else None


def test_open_case_survives_new_files_and_never_shows_a_stale_result(server, app_model_dir, tmp_path):  # noqa: F811
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    files = [busi_test_image("benign", 1), busi_test_image("benign", 2), busi_test_image("malignant", 1)]
    shots = SCREENSHOTS if app_model_dir in shipped_model_dirs() else tmp_path
    with playwright.sync_playwright() as pw:
        browser, page = _open(pw, server)
        try:
            _upload(page, *files)
            page.get_by_role("heading", name="Worklist").wait_for()
            page.get_by_test_id("stMetricValue").first.wait_for()
            first = _case_heading(page)
            page.keyboard.press("j")  # the documented shortcut: next case
            snapshots = []
            for _ in range(400):  # while the next case computes: never the old heading beside the new work
                main = page.get_by_test_id("stMain").inner_text()
                snapshots.append((_case_heading(page), "Opening" in main or "Computing the heatmap" in main))
                if snapshots[-1][0] not in ("", first) and page.get_by_test_id("stMetricValue").count():
                    break
                page.wait_for_timeout(25)
            opened = _case_heading(page)
            assert opened not in ("", first)
            assert not any(heading == first and busy for heading, busy in snapshots), snapshots
            page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)")
            page.screenshot(path=str(shots / "worklist_1280x720.png"))
            _upload(page, busi_test_image("malignant", 2))  # a fourth file: the list re-sorts
            page.get_by_text("Analysed").first.wait_for(state="detached")
            page.wait_for_timeout(1500)
            _wait_heading(page, opened)
            assert _case_heading(page) == opened  # the same case, whatever row it moved to
            page.set_viewport_size({"width": 820, "height": 1180})
            page.wait_for_timeout(800)
            page.screenshot(path=str(shots / "worklist_820.png"))
        finally:
            browser.close()


def test_biopsy_range_sign_off_report_and_two_view_lesion(server, app_model_dir, tmp_path):  # noqa: F811
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    shipped = app_model_dir in shipped_model_dirs()
    shots = SCREENSHOTS if shipped else tmp_path
    image = (_biopsy_range_image() if shipped else None) or busi_test_image("malignant", 3)
    with playwright.sync_playwright() as pw:
        browser, page = _open(pw, server)
        try:
            _upload(page, image)
            page.get_by_test_id("stMetricValue").first.wait_for()
            page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)")
            page.screenshot(path=str(shots / "diagnose_1280x720.png"))
            result = page.get_by_test_id("stMain").inner_text()
            if re.search(r"BI-RADS (4A|4B|4C|5) range", result):
                assert TONE_BADGES["not_flagged"] not in result and "not flagged" not in result
            if shipped:  # chosen below the threshold but above 2%: must read as the biopsy range
                assert TONE_BADGES["biopsy_range"] in result, result

            page.get_by_role("textbox", name="Case label").fill("Clinic7-A")
            page.get_by_role("textbox", name="Case label").press("Enter")
            _settle(page)
            _choose(page, "Laterality", "left")
            _choose(page, "Your BI-RADS assessment", "4B")
            page.get_by_role("textbox", name="Comment").fill("Irregular margin on the radial view")
            page.get_by_role("button", name="Sign off").click()
            page.get_by_text("Signed:").wait_for()
            page.get_by_text("Blank the top and bottom bands").click()
            with page.expect_download() as download:
                page.get_by_role("button", name=re.compile("Download PDF report")).click()
            today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
            assert download.value.suggested_filename == f"medapp_Clinic7-A_{today}.pdf"
            pdf_path = tmp_path / "report.pdf"
            download.value.save_as(pdf_path)
            text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(pdf_path.read_bytes()))
                            .pages)
            for expected in ("Case Clinic7-A", "left breast", "Radiologist sign-off", "BI-RADS assessment 4B",
                             "Irregular margin on the radial view", "are blanked"):
                assert expected in text, expected
            page.set_viewport_size({"width": 820, "height": 1180})
            page.wait_for_timeout(800)
            page.screenshot(path=str(shots / "diagnose_820.png"), full_page=True)

            page.set_viewport_size({"width": 1280, "height": 720})
            views = [busi_test_image("malignant", 5), busi_test_image("malignant", 6)]
            _upload(page, *views)
            page.get_by_role("heading", name="Worklist").wait_for()
            _settle(page)
            for view in views:
                _choose(page, "Images of one lesion", view.name)
            page.keyboard.press("Escape")
            page.get_by_role("button", name="Group as one lesion").click()
            lesion = page.get_by_text(re.compile(r"lesion estimate .* from 2 view\(s\)"))
            lesion.wait_for()
            assert "Lesion 1" in lesion.inner_text()
        finally:
            browser.close()
    entries = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    signed = [e for e in entries if "sign_off" in e["outputs"]]
    assert len(signed) == 1 and signed[0]["outputs"]["sign_off"]["birads"] == "4B" and signed[0]["user"]


@pytest.fixture
def outline_server(tmp_path):
    """The app on the default model folder ($MEDAPP_MODEL_DIR, else the shipped model), which outlines lesions."""
    from medapp.model.checkpoint import default_model_dir

    env = {"MEDAPP_MODEL_DIR": str(default_model_dir()), "MEDAPP_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    with AppServer(env, log_path=tmp_path / "streamlit.log") as srv:
        yield srv


def _outline_pixels(page, server) -> tuple[int, int]:
    """How many pixels of the case's first picture (the image) are the outline's yellow and the calipers' sky blue
    (the picture as the browser received it; JPEG, so colours within a tolerance)."""
    from PIL import Image

    src = page.get_by_test_id("stMain").get_by_test_id("stImage").first.locator("img").get_attribute("src")
    rgb = np.asarray(Image.open(io.BytesIO(page.request.get(server.url + src if src.startswith("/") else src).body()))
                     .convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    yellow = (r > 200) & (g > 190) & (b < 130)  # #F0E442; a grey scan has r == g == b
    blue = (b > 190) & (g > 140) & (r < 130)  # #56B4E9
    return int(yellow.sum()), int(blue.sum())


def test_lesion_outline_calipers_toggle_and_report(outline_server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    with playwright.sync_playwright() as pw:
        browser, page = _open(pw, outline_server)
        try:
            _upload(page, busi_test_image("malignant", 0))
            page.get_by_test_id("stMetricValue").first.wait_for()
            page.get_by_text("Lesion, from the model's outline").wait_for()
            page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)")
            page.screenshot(path=str(tmp_path / "outline_1280x720.png"))
            yellow, blue = _outline_pixels(page, outline_server)
            assert yellow > 100 and blue > 20, (yellow, blue)
            main = page.get_by_test_id("stMain").inner_text()
            assert LEGEND in main
            size = re.search(r"long axis (\d+ px), short axis (\d+ px)", main)
            assert size, main
            for expected in ("Orientation", "Shape", "Margin", "Outline confidence",
                             "Computed from the model's outline of the lesion, not measured by a person",
                             "PNG images carry no calibration"):
                assert expected in main, expected

            page.get_by_test_id("stSidebar").get_by_text("Lesion outline").click()  # the toggle hides the drawing
            _settle(page)
            page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)")
            yellow, blue = _outline_pixels(page, outline_server)
            assert yellow == 0 and blue == 0, (yellow, blue)
            main = page.get_by_test_id("stMain").inner_text()
            assert LEGEND not in main and f"long axis {size[1]}" in main  # the drawing goes, the measurements stay

            page.get_by_text("Blank the top and bottom bands").click()
            with page.expect_download() as download:
                page.get_by_role("button", name=re.compile("Download PDF report")).click()
            pdf_path = tmp_path / "report.pdf"
            download.value.save_as(pdf_path)
            text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(pdf_path.read_bytes()))
                            .pages)
            for expected in ("Lesion (from the model's outline)", f"long axis {size[1]}, short axis {size[2]}",
                             "Computed from the model's outline of the lesion, not measured by a person",
                             "PNG images carry no calibration", "with the model's lesion outline"):
                assert expected in text, expected
        finally:
            browser.close()
