"""The PDF report and overlay PNG: everything the issue lists is in them, and nothing identifying is."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
from PIL import Image
from pypdf import PdfReader

from medapp.model.card import ModelCard
from medapp.model.explain import overlay_heatmap
from medapp.reporting.export_region import WHOLE_IMAGE, ExportRegion
from medapp.reporting.report import DECISION_SUPPORT, build_report_pdf, overlay_png
from medapp.serving.reading import CaseDetails, SignOff
from tests.app_fixtures import make_image, make_prediction

CARD = ModelCard(name="test_model", architecture="small_cnn", version="9.9.9",
                 intended_use="Second reader for breast ultrasound in adults.",
                 out_of_scope_use="Mammography, MRI, children.")
WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
WHOLE = ExportRegion(WHOLE_IMAGE, None, (120, 160))  # synthetic images carry no text


def _pdf_text(pdf: bytes) -> tuple[str, PdfReader]:
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages), reader


def test_report_holds_result_model_time_and_intended_use():
    image = make_image()
    image.metadata["patient_name"] = "Jane Doe"  # intake never puts it there; the report must not print metadata
    prediction = make_prediction(0.62)
    overlay = overlay_heatmap(image.display, prediction.heatmap, opacity=0.4)
    pdf = build_report_pdf(image, prediction, CARD, file_sha256="cd" * 32, overlay=overlay, created=WHEN,
                           export=WHOLE)
    text, reader = _pdf_text(pdf)
    assert pdf.startswith(b"%PDF") and len(reader.pages) == 1
    for expected in (DECISION_SUPPORT, "62% (calibrated)", prediction.category.label, prediction.decision_text,
                         "normal 19%",
                     "±3.0%", "within intended use", "test_model 9.9.9", "ab" * 32, "2026-01-02 03:04:05 UTC",
                     CARD.intended_use, CARD.out_of_scope_use, "cd" * 32, "gradcam"):
        assert " ".join(expected.split()) in text, expected
    assert "Jane" not in text
    images = [im for page in reader.pages for im in page.images]
    assert len(images) == 2  # the image and the overlay
    meta = {k: str(v) for k, v in (reader.metadata or {}).items()}
    assert "/Author" not in meta and meta.get("/Creator") == "medapp"


def test_out_of_scope_report_shows_no_probability_or_overlay():
    image = make_image()
    prediction = make_prediction(0.9, in_scope=False)
    overlay = overlay_heatmap(image.display, prediction.heatmap)
    text, reader = _pdf_text(build_report_pdf(image, prediction, CARD, file_sha256="cd" * 32, overlay=overlay,
                                                   export=WHOLE))
    assert "OUTSIDE INTENDED USE" in text and prediction.out_of_scope_reasons[0] in text
    assert "P(malignant)" not in text and "90.0%" not in text and prediction.category.label not in text
    assert len([im for page in reader.pages for im in page.images]) == 1


def test_overlay_png_round_trips_without_metadata():
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    data = overlay_png(rgb, WHOLE)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im), rgb)
        assert not im.info.get("dpi") and not any(k for k in im.info if k not in ("dpi", "gamma"))
    assert b"tEXt" not in data and b"iTXt" not in data and b"eXIf" not in data


def test_case_label_location_sign_off_and_windowed_picture_in_the_report():
    image = make_image()
    prediction = make_prediction(0.62)
    windowed = np.clip(image.display.astype(int) * 2, 0, 255).astype(np.uint8)
    case = CaseDetails(label="Clinic 7 / lesion A", laterality="left", clock=2, distance_cm=3.5)
    sign = SignOff.make(agrees=False, birads="4B", comment="Irregular margin\non the radial view", user="dr.ng",
                        now=WHEN)
    pdf = build_report_pdf(image, prediction, CARD, file_sha256="cd" * 32, overlay=None, shown=windowed, case=case,
                           sign_off=sign, export=WHOLE, created=WHEN)
    text, reader = _pdf_text(pdf)
    for expected in ("Case Clinic 7 / lesion A", "left breast, 2 o'clock, 3.5 cm from the nipple",
                     "Radiologist sign-off", "disagrees with the model estimate", "BI-RADS assessment 4B",
                     "Irregular margin on the radial view", "dr.ng, 2026-01-02T03:04:05Z", "as windowed on screen"):
        assert expected in text, expected
    (picture,) = [np.asarray(p.image.convert("RGB")) for p in reader.pages[0].images]
    np.testing.assert_array_equal(picture, windowed)  # the window the clinician set, not the raw decode
