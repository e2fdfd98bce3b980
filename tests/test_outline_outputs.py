"""Everywhere the lesion outline goes (issue 14, item 4): ``predict --json`` and its line, ``--mask-dir``, the drawn
outline and calipers, the words the page and PDF use, and the PDF itself.

The CLI tests run the shipped model (the default model folder, ``$MEDAPP_MODEL_DIR`` when set), which carries the
lesion-outline decoder; the drawing and PDF tests use outlines drawn by hand, where every number is known.
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from model_fixtures import tiny_model_dir  # noqa: F401  (a fixture)
from PIL import Image
from pypdf import PdfReader
from scipy import ndimage
from skimage.draw import ellipse

from medapp.cli import main
from medapp.intake.imaging import load_image
from medapp.model.card import ModelCard
from medapp.model.checkpoint import default_model_dir
from medapp.reporting.export_region import SCAN_REGION, WHOLE_IMAGE, ExportRegion
from medapp.reporting.report import LESION_HEADING, build_report_pdf
from medapp.serving.lesion_finding import LesionFinding, find_lesions
from medapp.serving.outline_overlay import (
    CALIPER_COLOUR,
    LEGEND,
    OTHER_COLOUR,
    OUTLINE_COLOUR,
    PALETTE,
    SOURCE_SENTENCE,
    TICK_WIDTHS,
    describe_lesion,
    draw_outline,
    lesion_summary,
    line_width,
)
from medapp.serving.predict import Predictor
from tests.app_fixtures import busi_test_image, make_image, make_prediction

LESION_KEYS = {"area_px", "long_axis_px", "short_axis_px", "long_axis_mm", "short_axis_mm", "orientation", "shape",
               "margin", "outline_confidence"}
CARD = ModelCard(name="test_model", architecture="small_cnn", version="9.9.9",
                 intended_use="Second reader for breast ultrasound in adults.")
H, W = 240, 320


# --- the CLI, with the shipped model ---


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    found = Predictor.from_dir(default_model_dir())
    assert found.outline_decoder is not None, f"the model at {default_model_dir()} has no lesion-outline decoder"
    return found


def _run(argv: list[str], predictor: Predictor, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``python -m medapp`` in this process, on the model loaded once for the module."""
    monkeypatch.setattr(Predictor, "from_dir", classmethod(lambda cls, *a, **k: predictor))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_json_carries_the_lesion_and_mask_dir_writes_the_outline(predictor, tmp_path, monkeypatch,
                                                                           capsys) -> None:
    path = busi_test_image("malignant", 0)
    masks = tmp_path / "masks"
    code, out, err = _run(["predict", str(path), "--json", "--no-tta", "--mask-dir", str(masks)], predictor,
                          monkeypatch, capsys)
    assert code == 0, err
    (row,) = [json.loads(line) for line in out.splitlines()]
    lesion = row["lesion"]
    assert lesion is not None, row["lesion_note"]
    assert LESION_KEYS <= set(lesion)
    assert lesion["long_axis_mm"] is None and lesion["short_axis_mm"] is None  # a PNG states no pixel size
    assert "PNG" in lesion["mm_unavailable_reason"]
    assert lesion["long_axis_px"] >= lesion["short_axis_px"] > 0 and lesion["area_px"] > 0
    assert lesion["orientation"] in ("parallel", "not parallel")
    assert lesion["shape"] in ("oval", "round", "irregular")
    assert lesion["margin"] in ("circumscribed", "not circumscribed")
    assert 0.0 <= lesion["outline_confidence"] <= 1.0

    written = masks / f"{path.stem}_lesion.png"
    assert sorted(p.name for p in masks.iterdir()) == [written.name]
    with Image.open(written) as im:
        mask = np.asarray(im)
        assert im.mode == "L" and b"tEXt" not in written.read_bytes()
    expected = predictor.predict(load_image(path.read_bytes()), explain=False, tta=False).lesion.outline_mask
    assert mask.dtype == np.uint8 and mask.shape == expected.shape == load_image(path.read_bytes()).original_size
    assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, expected)
    assert int((mask == 255).sum()) >= lesion["area_px"]  # the union of the outlined lesions holds the principal


def test_predict_line_names_the_lesion(predictor, monkeypatch, capsys) -> None:
    path = busi_test_image("malignant", 0)
    code, out, _ = _run(["predict", str(path), "--no-tta"], predictor, monkeypatch, capsys)
    assert code == 0
    lesion = predictor.predict(load_image(path.read_bytes()), explain=False, tta=False).lesion
    g = lesion.principal.geometry
    expected = (f"lesion {g.long_axis.length_px:.0f} x {g.short_axis.length_px:.0f} px (no calibration), "
                f"{g.shape.value}, {g.orientation.value}")
    assert expected in out, out


def test_mask_dir_without_an_outline_writes_nothing_and_says_so(tiny_model_dir, tmp_path, capsys) -> None:  # noqa: F811
    path = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 260), dtype=np.uint8)).save(path)
    masks = tmp_path / "masks"
    assert main(["predict", str(path), "--model", str(tiny_model_dir), "--no-tta", "--mask-dir", str(masks)]) == 0
    err = capsys.readouterr().err
    assert list(masks.iterdir()) == []
    assert f"note: {path}: no lesion mask written: " in err


# --- drawing, on outlines drawn by hand ---


def _finding(image=None, *, second: bool = True) -> LesionFinding:
    """An oval lesion (semi-axes 40 x 70 px, centre (120, 150)) and, with ``second``, a small one top right."""
    image = image or make_image(H, W)
    prob = np.zeros((H, W), np.float32)
    prob[ellipse(120, 150, 40, 70, shape=prob.shape)] = 0.9
    if second:
        prob[ellipse(40, 280, 15, 20, shape=prob.shape)] = 0.7
    finding = find_lesions(prob, 0.5, image)
    assert finding is not None and len(finding.lesions) == (2 if second else 1)
    return finding


def _segment_distance(shape: tuple[int, int], start, end) -> np.ndarray:
    """(H, W) distance of each pixel centre to the segment start-end ((row, col) points)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    a, b = np.asarray(start, np.float64), np.asarray(end, np.float64)
    d = b - a
    t = np.clip(((rows - a[0]) * d[0] + (cols - a[1]) * d[1]) / float(d @ d), 0.0, 1.0)
    return np.hypot(rows - (a[0] + t * d[0]), cols - (a[1] + t * d[1]))


def test_draw_outline_changes_only_pixels_on_the_outlines_and_calipers_in_the_stated_colours() -> None:
    image = make_image(H, W)
    finding = _finding(image)
    out = draw_outline(image.display, finding)
    assert out.shape == image.display.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, image.display)
    changed = (out != image.display).any(axis=2)
    colours = {tuple(int(v) for v in c) for c in out[changed]}
    assert colours == set(PALETTE)  # outline, calipers and the other lesion, nothing else

    width = line_width(out.shape)
    assert width == 2  # 2 px on an image this size
    boundary = np.zeros((H, W), bool)
    for lesion in finding.lesions:
        boundary |= lesion.mask ^ ndimage.binary_erosion(lesion.mask)
    near = ndimage.distance_transform_edt(~boundary) <= width + 1
    g = finding.principal.geometry
    for caliper in (g.long_axis, g.short_axis):
        near |= _segment_distance((H, W), caliper.start, caliper.end) <= TICK_WIDTHS * width + 1
    assert changed.any() and not (changed & ~near).any()

    principal_edge = finding.principal.mask ^ ndimage.binary_erosion(finding.principal.mask)
    yellow = (out == OUTLINE_COLOUR).all(axis=2)
    # the whole boundary is drawn: every edge pixel has the outline colour (or a caliper over it) within a pixel
    drawn = ndimage.binary_dilation(yellow | (out == CALIPER_COLOUR).all(axis=2), iterations=1)
    assert drawn[principal_edge].mean() == 1.0
    dashed = (out == OTHER_COLOUR).all(axis=2)
    other_edge = ndimage.binary_dilation(finding.lesions[1].mask ^ ndimage.binary_erosion(finding.lesions[1].mask),
                                         iterations=width + 1)
    assert dashed.any() and not (dashed & ~other_edge).any()
    assert 0.25 < ndimage.binary_dilation(dashed, iterations=1)[finding.lesions[1].mask
                                                                ^ ndimage.binary_erosion(finding.lesions[1].mask)
                                                                ].mean() < 0.85  # dashes, not a solid line
    blue = (out == CALIPER_COLOUR).all(axis=2)
    on_long = _segment_distance((H, W), g.long_axis.start, g.long_axis.end) <= 1.0
    on_short = _segment_distance((H, W), g.short_axis.start, g.short_axis.end) <= 1.0
    assert blue[on_long].mean() > 0.5 and blue[on_short].mean() > 0.5  # both diameters drawn along their length

    plain = draw_outline(image.display, finding, calipers=False)
    assert not (plain == CALIPER_COLOUR).all(axis=2).any() and (plain == OUTLINE_COLOUR).all(axis=2).any()


def test_draw_outline_scales_with_the_image_and_refuses_a_mismatched_outline() -> None:
    assert line_width((500, 600, 3)) == 2 and line_width((1200, 1600, 3)) == 4
    finding = _finding(second=False)
    with pytest.raises(ValueError, match="does not match the image"):
        draw_outline(np.zeros((H // 2, W // 2, 3), np.uint8), finding)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        draw_outline(np.zeros((H, W), np.uint8), finding)


# --- the words ---


def test_description_in_pixels_says_why_and_in_millimetres_from_the_calibration() -> None:
    finding = _finding()
    g = finding.principal.geometry
    assert abs(g.long_axis.length_px - 140) <= 1 and abs(g.short_axis.length_px - 80) <= 1  # 2a, 2b
    text = describe_lesion(finding)
    rows = dict(text.rows)
    assert rows["Size"] == (f"long axis {g.long_axis.length_px:.0f} px, short axis {g.short_axis.length_px:.0f} px "
                            "(perpendicular to it)")
    assert rows["Orientation"] == f"parallel (height/width {g.aspect_ratio:.2f})"
    assert rows["Shape"].startswith("oval (solidity") and rows["Margin"].startswith("circumscribed (roughness")
    assert rows["Outline confidence"] == f"{finding.confidence:.2f}"
    assert rows["Other lesions"].startswith("1 more outlined (dashed): ")
    assert text.source == SOURCE_SENTENCE == "Computed from the model's outline of the lesion, not measured by a person."
    assert text.scale == "Sizes in pixels: PNG images carry no calibration, so sizes are in pixels."
    assert lesion_summary(finding) == (f"lesion {g.long_axis.length_px:.0f} x {g.short_axis.length_px:.0f} px "
                                       "(no calibration), oval, parallel, 1 more outlined")

    calibrated = dataclasses.replace(make_image(H, W), source_kind="dicom", pixel_spacing_mm=(0.1, 0.1))
    mm = _finding(calibrated, second=False)
    g = mm.principal.geometry
    rows = dict(describe_lesion(mm).rows)
    assert rows["Size"] == (f"long axis {g.long_axis.length_px * 0.1:.1f} mm, short axis "
                            f"{g.short_axis.length_px * 0.1:.1f} mm (perpendicular to it)")
    assert rows["Depth, area"] == f"top edge {g.depth_px * 0.1:.1f} mm below the top of the scan; area " \
                                  f"{g.area_px * 0.01:.0f} mm²"
    assert describe_lesion(mm).scale == "Millimetres from the image's own calibration: DICOM Pixel Spacing."
    assert lesion_summary(mm) == f"lesion {g.long_axis.length_px * 0.1:.1f} x {g.short_axis.length_px * 0.1:.1f} mm, " \
                                 "oval, parallel"


# --- the PDF ---


def _pdf(image, prediction, export: ExportRegion) -> tuple[str, PdfReader]:
    reader = PdfReader(io.BytesIO(build_report_pdf(image, prediction, CARD, file_sha256="cd" * 32, export=export)))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages), reader


def test_pdf_carries_the_outlined_picture_cropped_after_drawing_and_the_measurements() -> None:
    image = dataclasses.replace(make_image(H, W), scan_region=(60, 40, 200, 300))  # the scan, as a DICOM states it
    prediction = make_prediction(0.62, shape=(H, W))
    prediction.lesion = _finding(image)
    text, reader = _pdf(image, prediction, ExportRegion(SCAN_REGION, image.scan_region, (H, W)))
    assert LESION_HEADING in text
    for label, value in describe_lesion(prediction.lesion).rows:
        assert " ".join(f"{label} {value}".split()) in text, label
    assert SOURCE_SENTENCE in text and "PNG images carry no calibration" in text and LEGEND in text
    assert "with the model's lesion outline" in text
    (picture,) = [np.asarray(p.image.convert("RGB")) for page in reader.pages for p in page.images]
    expected = draw_outline(image.display, prediction.lesion)[60:200, 40:300]
    assert picture.shape == expected.shape  # cropped to the scan region after the outline was drawn
    np.testing.assert_array_equal(picture, expected)
    assert (picture == OUTLINE_COLOUR).all(axis=2).any() and (picture == CALIPER_COLOUR).all(axis=2).any()


def test_pdf_without_an_outline_says_why_and_out_of_scope_says_nothing_of_a_lesion() -> None:
    image = make_image(H, W)
    whole = ExportRegion(WHOLE_IMAGE, None, (H, W))
    prediction = make_prediction(0.3, shape=(H, W))
    prediction.lesion_note = "no lesion outlined: the model's outline found no region large enough to measure"
    text, reader = _pdf(image, prediction, whole)
    assert f"{LESION_HEADING} Outline {prediction.lesion_note}" in text
    (picture,) = [np.asarray(p.image.convert("RGB")) for page in reader.pages for p in page.images]
    np.testing.assert_array_equal(picture, image.display)

    outside = make_prediction(0.3, shape=(H, W), in_scope=False)
    outside.lesion = _finding(image)
    text, reader = _pdf(image, outside, whole)
    assert LESION_HEADING not in text and "long axis" not in text
    (picture,) = [np.asarray(p.image.convert("RGB")) for page in reader.pages for p in page.images]
    np.testing.assert_array_equal(picture, image.display)

