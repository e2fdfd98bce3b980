"""Burned-in PHI: a name drawn into the pixels never reaches the PDF or the overlay (issue 12, item 4).

A DICOM ultrasound frame is built with the patient's name, ID and birth date rendered into its header band and an
Ultrasound Region Sequence stating where the scan is; every export is compared pixel by pixel with the scan region.
Without a stated region, nothing is exported until the user chooses, and blanking the bands removes the drawn text.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from intake_fixtures import dicom_bytes, make_dataset
from PIL import Image, ImageDraw
from pypdf import PdfReader

from medapp.__main__ import main
from medapp.errors import ExportNotConfirmedError
from medapp.intake.imaging import load_image
from medapp.model.card import ModelCard
from medapp.model.explain import overlay_heatmap
from medapp.reporting.export_region import BAND_FRACTION, BLANK_BANDS, SCAN_REGION, WHOLE_IMAGE, export_region
from medapp.reporting.report import _picture, build_report_pdf, overlay_png
from tests.app_fixtures import make_prediction, png_bytes
from tests.model_fixtures import tiny_model_dir  # noqa: F401  (a fixture)

HEIGHT, WIDTH = 300, 400
REGION = (60, 30, 280, 370)  # top, left, bottom, right (exclusive) of the scan
NAME_TEXT = "DOE^JANE  ID 99887766  03/02/1961"
CARD = ModelCard(name="test_model", architecture="small_cnn", version="9.9.9")


def frame_with_burned_in_name() -> np.ndarray:
    """Speckle in the scan region, the patient's name and ID drawn in white in the header band above it."""
    rng = np.random.default_rng(7)
    pixels = np.zeros((HEIGHT, WIDTH), np.uint8)
    top, left, bottom, right = REGION
    pixels[top:bottom, left:right] = rng.integers(20, 200, (bottom - top, right - left), dtype=np.uint8)
    canvas = Image.fromarray(pixels)
    ImageDraw.Draw(canvas).text((8, 6), NAME_TEXT, fill=255)  # in the top band, as scanners draw it
    ImageDraw.Draw(canvas).text((8, HEIGHT - 16), "ST ELSEWHERE 2026-11-30", fill=255)  # and the footer band
    return np.asarray(canvas)


def ultrasound_dicom(with_region: bool = True) -> bytes:
    region = pydicom.Dataset()
    region.RegionSpatialFormat, region.RegionDataType = 1, 1  # 2D, tissue
    top, left, bottom, right = REGION
    region.RegionLocationMinX0, region.RegionLocationMinY0 = left, top
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = right - 1, bottom - 1  # inclusive in DICOM
    extra = {"SequenceOfUltrasoundRegions": [region]} if with_region else {}
    return dicom_bytes(make_dataset(frame_with_burned_in_name(), modality="US", BurnedInAnnotation="YES", **extra))


def _text_pixels(rgb: np.ndarray) -> int:
    """How many near-white pixels (the drawn text; the speckle stays below 200) an exported picture holds."""
    return int((np.asarray(rgb)[..., :3] >= 230).all(axis=-1).sum())


def test_scan_region_read_from_the_ultrasound_region_sequence():
    image = load_image(ultrasound_dicom())
    assert image.scan_region == REGION
    assert _text_pixels(image.display) > 50  # the name really is in the pixels
    assert load_image(ultrasound_dicom(with_region=False)).scan_region is None


def test_pdf_and_overlay_hold_only_the_scan_region():
    image = load_image(ultrasound_dicom())
    export = export_region(image, choice=WHOLE_IMAGE)  # a region in the file wins over any choice
    assert export.mode == SCAN_REGION
    prediction = make_prediction(0.7, shape=(HEIGHT, WIDTH))
    overlay = overlay_heatmap(image.display, prediction.heatmap, opacity=0.4)
    top, left, bottom, right = REGION

    png = overlay_png(overlay, export)
    with Image.open(io.BytesIO(png)) as im:
        exported = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(exported, overlay[top:bottom, left:right])

    pdf = build_report_pdf(image, prediction, CARD, file_sha256="cd" * 32, overlay=overlay, export=export)
    reader = PdfReader(io.BytesIO(pdf))
    pictures = [np.asarray(p.image.convert("RGB")) for p in reader.pages[0].images]
    expected = [np.asarray(_picture(rgb[top:bottom, left:right]).convert("RGB")) for rgb in (image.display, overlay)]
    assert len(pictures) == 2
    for picture, want in zip(pictures, expected, strict=True):
        np.testing.assert_array_equal(picture, want)  # exactly the scan region: not one pixel of the header
        assert _text_pixels(picture) == 0
    text = " ".join(reader.pages[0].extract_text().split())
    assert "cropped to the scan region" in text and "DOE" not in text


def test_no_region_means_no_export_until_the_user_chooses():
    rgb = np.repeat(frame_with_burned_in_name()[..., None], 3, axis=2)
    image = load_image(png_bytes(rgb))
    assert image.scan_region is None
    with pytest.raises(ExportNotConfirmedError, match="no scan region"):
        export_region(image)
    blanked = export_region(image, BLANK_BANDS).apply(image.display)
    band = round(HEIGHT * BAND_FRACTION)
    assert _text_pixels(blanked) == 0 and not blanked[:band].any() and not blanked[-band:].any()
    np.testing.assert_array_equal(blanked[band:-band], image.display[band:-band])  # the scan itself untouched
    whole = export_region(image, WHOLE_IMAGE)
    np.testing.assert_array_equal(whole.apply(image.display), image.display)
    assert "confirmed" in whole.description


def test_predict_overlays_are_cropped_or_withheld(tiny_model_dir: Path, tmp_path: Path,  # noqa: F811
                                                  capsys: pytest.CaptureFixture[str]):
    (tmp_path / "us.dcm").write_bytes(ultrasound_dicom())
    (tmp_path / "screen.png").write_bytes(png_bytes(frame_with_burned_in_name()))
    out = tmp_path / "overlays"
    code = main(["predict", str(tmp_path / "us.dcm"), str(tmp_path / "screen.png"), "--model", str(tiny_model_dir),
                 "--no-tta", "--overlay-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 0 and [p.name for p in out.iterdir()] == ["us_overlay.png"]
    assert "screen.png: no overlay written" in err and "--without-region" in err
    with Image.open(out / "us_overlay.png") as im:
        assert im.size == (REGION[3] - REGION[1], REGION[2] - REGION[0])
        assert _text_pixels(np.asarray(im.convert("RGB"))) == 0
    code = main(["predict", str(tmp_path / "screen.png"), "--model", str(tiny_model_dir), "--no-tta",
                 "--overlay-dir", str(out), "--without-region", "blank-bands"])
    with Image.open(out / "screen_overlay.png") as im:
        band = round(HEIGHT * BAND_FRACTION)
        assert code == 0 and not np.asarray(im)[:band].any() and not np.asarray(im)[-band:].any()

