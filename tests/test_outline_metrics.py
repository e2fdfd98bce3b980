"""The outline's scores against the radiologists' masks: Dice, IoU and HD95 on drawn shapes with hand-checked values,
the orientation/shape agreement tables, and the outline section of ``evaluate`` on a few real images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.draw import ellipse

from medapp.evaluation.outline_metrics import (
    MISSED,
    agreement,
    cohen_kappa,
    dice,
    hd95,
    iou,
    outline_report,
    pair_lesion,
    score_case,
    score_outline,
    summarize_outlines,
    surface_distances,
    truth_lesion,
)
from medapp.lesion.geometry import measure


def square(top: int, left: int, side: int, shape: tuple[int, int] = (100, 100)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def drawn_ellipse(row: float, col: float, r_radius: float, c_radius: float,
                  shape: tuple[int, int] = (200, 200)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[ellipse(row, col, r_radius, c_radius, shape=shape)] = True
    return mask


def test_identical_masks_score_perfectly():
    mask = square(20, 30, 25)
    assert dice(mask, mask) == 1.0 and iou(mask, mask) == 1.0 and hd95(mask, mask) == 0.0


@pytest.mark.parametrize(("a", "b", "expected_dice", "expected_iou"), [
    # 10x10 squares overlapping in a 5x10 band: |A & B| = 50, |A| + |B| = 200, |A | B| = 150
    (square(0, 0, 10), square(5, 0, 10), 100 / 200, 50 / 150),
    # 10x10 squares overlapping in a 5x5 corner: 25 shared, 175 in the union
    (square(10, 10, 10), square(15, 15, 10), 50 / 200, 25 / 175),
    # disjoint
    (square(0, 0, 10), square(50, 50, 10), 0.0, 0.0),
    # 20x20 square holding a 10x10 one: 100 shared of 400
    (square(0, 0, 20), square(5, 5, 10), 200 / 500, 100 / 400),
])
def test_offset_squares_have_known_overlap(a, b, expected_dice, expected_iou):
    assert dice(a, b) == pytest.approx(expected_dice)
    assert iou(a, b) == pytest.approx(expected_iou)
    assert dice(b, a) == pytest.approx(expected_dice)  # symmetric


def test_square_shifted_by_three_pixels_has_hd95_three():
    a, b = square(30, 30, 20), square(30, 33, 20)
    assert hd95(a, b) == pytest.approx(3.0, abs=0.5)
    assert hd95(b, a) == pytest.approx(hd95(a, b))
    # 76 boundary pixels each; the left and right edges lie 3 px from the other square's, the shared top and
    # bottom rows on it
    distances = surface_distances(a, b)
    assert len(distances) == 2 * 76 and distances.max() == 3.0 and (distances == 0).sum() == 2 * 2 * 17


def test_hd95_in_mm_scales_with_the_pixel_spacing():
    a, b = square(30, 30, 20), square(30, 33, 20)  # shifted along the columns
    assert hd95(a, b, spacing=(0.1, 0.2)) == pytest.approx(0.6, abs=0.1)


def test_empty_prediction_is_a_miss():
    truth = square(10, 10, 20)
    empty = np.zeros_like(truth)
    assert dice(empty, truth) == 0.0 and iou(empty, truth) == 0.0 and math.isnan(hd95(empty, truth))
    for pred in (None, empty):
        score = score_outline(pred, truth)
        assert score.missed and score.dice == 0.0 and score.iou == 0.0 and math.isnan(score.hd95_px)
    summary = summarize_outlines([score_outline(truth, truth), score_outline(None, truth)])
    assert summary["n"] == 2 and summary["missed"] == 1 and summary["n_outlined"] == 1
    assert summary["dice_mean"] == pytest.approx(0.5) and summary["hd95_mean_px"] == 0.0  # HD95 over outlined only


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        dice(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="empty"):
        score_outline(square(0, 0, 3), np.zeros((100, 100), bool))


def test_truth_lesion_is_the_one_the_outline_overlaps_else_the_largest():
    big = drawn_ellipse(60, 60, 20, 40)
    small = drawn_ellipse(150, 150, 12, 12)
    truth = big | small
    np.testing.assert_array_equal(truth_lesion(truth, drawn_ellipse(150, 152, 10, 10)), small)
    np.testing.assert_array_equal(truth_lesion(truth, drawn_ellipse(150, 40, 8, 8)), big)  # overlaps none
    np.testing.assert_array_equal(truth_lesion(truth, None), big)
    speck = np.zeros_like(truth)
    speck[5, 5] = True  # a stray pixel of a drawn mask is not a lesion
    np.testing.assert_array_equal(truth_lesion(big | speck, speck), big)


def test_agreement_tables_count_truth_against_outline():
    wide_oval = drawn_ellipse(100, 100, 20, 45)  # parallel, oval
    tall_oval = drawn_ellipse(100, 100, 45, 20)  # not parallel, oval
    circle = drawn_ellipse(100, 100, 30, 30)  # round
    assert (measure(wide_oval).orientation, measure(wide_oval).shape) == ("parallel", "oval")
    assert (measure(tall_oval).orientation, measure(circle).shape) == ("not parallel", "round")
    pairs = [
        pair_lesion(wide_oval, wide_oval),  # agree on both
        pair_lesion(drawn_ellipse(100, 100, 21, 44), wide_oval),  # a slightly different oval: agree
        pair_lesion(tall_oval, wide_oval),  # orientation wrong, shape right
        pair_lesion(circle, wide_oval),  # orientation right, shape wrong
        pair_lesion(None, tall_oval),  # missed
    ]
    table = agreement(pairs)
    assert table["n"] == 5 and table["n_outlined"] == 4 and table["missed"] == 1
    orientation = table["orientation"]["confusion"]
    assert orientation["parallel"] == {"parallel": 3, "not parallel": 1, MISSED: 0}
    assert orientation["not parallel"] == {"parallel": 0, "not parallel": 0, MISSED: 1}
    shape = table["shape"]["confusion"]
    assert shape["oval"] == {"oval": 3, "round": 1, "irregular": 0, MISSED: 1}
    assert shape["irregular"] == {"oval": 0, "round": 0, "irregular": 0, MISSED: 0}
    assert table["orientation"]["agreement"] == pytest.approx(3 / 4)
    assert table["orientation"]["agreement_counting_missed"] == pytest.approx(3 / 5)
    assert table["shape"]["agreement"] == pytest.approx(3 / 4)
    assert "overlapping" in table["truth_rule"]
    # orientation on the 4 outlined: observed 3/4; rows (truth) 4 parallel, columns 3 parallel + 1 not: chance 3/4
    assert table["orientation"]["kappa"] == pytest.approx(0.0)
    # shape: observed 3/4, truth all oval, predicted 3 oval + 1 round: chance 3/4, kappa 0 again
    assert table["shape"]["kappa"] == pytest.approx(0.0)


@pytest.mark.parametrize(("table", "expected"), [
    ({"a": {"a": 20, "b": 5}, "b": {"a": 10, "b": 15}}, 0.4),  # observed 0.7, chance 0.5 (Cohen's worked form)
    ({"a": {"a": 5, "b": 0}, "b": {"a": 0, "b": 5}}, 1.0),
    ({"a": {"a": 0, "b": 0}, "b": {"a": 0, "b": 0}}, math.nan),
])
def test_cohen_kappa_hand_checked(table, expected):
    value = cohen_kappa(table, ("a", "b"))
    assert math.isnan(value) if math.isnan(expected) else value == pytest.approx(expected)


def test_out_of_scope_images_are_counted_apart():
    truth = drawn_ellipse(100, 100, 20, 40)
    cases = [score_case(None, truth, in_scope=False), score_case(None, truth, in_scope=True)]
    report = outline_report(cases)
    assert report["n_lesion_images"] == 2 and report["outline_skipped_out_of_scope"] == 1
    assert report["all_lesion_images"]["n"] == 2 and report["all_lesion_images"]["dice_mean"] == 0.0
    assert report["in_scope"]["n"] == 1 and report["in_scope"]["missed"] == 1
    assert report["agreement"]["n"] == 1 and report["agreement"]["missed"] == 1


def test_evaluate_reports_the_outline_on_a_few_images(shipped_model_dir, busi_dir, monkeypatch):
    """The whole evaluate path on six BUSI validation images (two per class): Dice per row, the outline section."""
    from medapp.evaluation import evaluate as evaluate_module
    from medapp.model.card import ModelCard

    if not ModelCard.load(shipped_model_dir).outline:
        pytest.skip("the shipped model has no lesion-outline decoder yet")
    real = evaluate_module.load_records

    def few(dataset, split):  # two images of each class, so every metric of the binary report is defined
        records = real(dataset, split)
        return [r for label in ("benign", "malignant", "normal") for r in [x for x in records if x.label == label][:2]]

    monkeypatch.setattr(evaluate_module, "load_records", few)
    result = evaluate_module.evaluate_manifest(shipped_model_dir, "busi", "val", n_boot=20)
    assert result["n"] == 6
    outline = result["outline"]
    assert outline["n_lesion_images"] == 4  # benign and malignant have masks; normal images none
    for summary in (outline["all_lesion_images"], outline["in_scope"]):
        assert summary["n"] <= 4 and summary["missed"] <= summary["n"]
        assert summary["n"] == 0 or 0.0 <= summary["dice_mean"] <= 1.0
    assert outline["in_scope"]["n"] + outline["outline_skipped_out_of_scope"] == 4
    rows = result["predictions"]
    assert [r["dice"] is None for r in rows] == [r["label"] == "normal" for r in rows]
    assert all(0.0 <= r["dice"] <= 1.0 for r in rows if r["dice"] is not None)
    assert {r["outline_status"] for r in rows} <= {None, "outlined", "missed", "out_of_scope"}
    assert set(outline["agreement"]["orientation"]["confusion"]) == {"parallel", "not parallel"}
