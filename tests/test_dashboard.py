"""The dashboard's numbers: threshold explorer from stored ROC points, anchors, localisation rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medapp.evaluation.metrics import operating_point
from medapp.reporting import dashboard as perf
from tests.app_fixtures import fake_metrics

# Hand-built: 2 positives (scores 0.9, 0.4), 3 negatives (0.7, 0.3, 0.1); roc_curve without dropped points.
TINY = {
    "n_positive": 2, "n_negative": 3,
    "curves": {"roc": {"thresholds": [1.0, 0.9, 0.7, 0.4, 0.3, 0.1],
                       "fpr": [0, 0, 1 / 3, 1 / 3, 2 / 3, 1], "tpr": [0, 0.5, 0.5, 1, 1, 1]}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("threshold", "tp", "fp", "sens", "spec", "ppv", "npv"),
    [
        (0.95, 0, 0, 0.0, 1.0, math.nan, 3 / 5),  # nothing flagged: PPV undefined
        (0.9, 1, 0, 0.5, 1.0, 1.0, 3 / 4),
        (0.8, 1, 0, 0.5, 1.0, 1.0, 3 / 4),  # between 0.9 and 0.7: the 0.9 point is in force
        (0.5, 1, 1, 0.5, 2 / 3, 0.5, 2 / 3),
        (0.4, 2, 1, 1.0, 2 / 3, 2 / 3, 1.0),
        (0.05, 2, 3, 1.0, 0.0, 0.4, math.nan),  # everything flagged: NPV undefined
    ],
)
def test_operating_point_from_roc_hand_checked(threshold, tp, fp, sens, spec, ppv, npv):
    op = perf.operating_point_at(TINY, threshold)  # no per-image predictions: the ROC points
    assert (op.tp, op.fp, op.tn + op.fp, op.fn + op.tp) == (tp, fp, 3, 2)
    for got, want in ((op.sensitivity, sens), (op.specificity, spec), (op.ppv, ppv), (op.npv, npv)):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


def test_operating_point_from_roc_matches_predictions_at_stored_thresholds():
    """At every stored ROC threshold, the ROC fallback equals scoring the stored per-image predictions."""
    m = fake_metrics()
    for t in m["curves"]["roc"]["thresholds"][1:]:
        exact, from_roc = perf.operating_point_at(m, t), perf.operating_point_from_roc(m, t)
        assert (from_roc.tp, from_roc.fp, from_roc.tn, from_roc.fn) == (exact.tp, exact.fp, exact.tn, exact.fn)


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.2, 0.37, 0.5, 0.81, 1.0])
def test_operating_point_is_exact_from_predictions(threshold):
    m = fake_metrics()
    y = np.array([p["label"] == "malignant" for p in m["predictions"]])
    s = np.array([p["p_malignant"] for p in m["predictions"]])
    direct, op = operating_point(y, s, threshold), perf.operating_point_at(m, threshold)
    assert op == direct


def test_explorer_at_card_threshold_reproduces_headline():
    m = fake_metrics()
    op = perf.operating_point_at(m, m["threshold"])
    for key in ("sensitivity", "specificity", "ppv", "npv"):
        assert getattr(op, key) == pytest.approx(m[key])


def test_anchor_rows_put_this_model_among_published_results():
    m = fake_metrics()
    rows = perf.anchor_rows(m)
    assert len(rows) == len(m["anchors"]) + 1
    assert sum("(this model)" in r["model"] for r in rows) == 1
    aucs = [r["auc"] for r in rows]
    assert aucs == sorted(aucs, reverse=True)


def test_localization_rows_mark_default_and_baseline():
    metrics = fake_metrics()
    metrics["localization"]["explain"] = {"target_layer": "x", "method": "gradcam", "views": [[0, 0, 0]]}
    rows = perf.localization_rows(metrics)
    names = [r["method"] for r in rows]
    assert "Grad-CAM (default)" in names and "centre prior (baseline)" in names and len(rows) == 3  # no settings row


def test_localization_table_has_method_rows_only_with_readable_headers():
    """The settings beside the methods ("default", "target", "explain") never become a row of missing values."""
    metrics = fake_metrics()
    metrics["localization"].update(target="predicted", explain={"target_layer": "x", "method": "gradcam"})
    table = perf.localization_table(metrics)
    assert [r["Heatmap method"] for r in table] == ["Grad-CAM (default)", "EigenCAM", "centre prior (baseline)"]
    assert list(table[0]) == ["Heatmap method", "Peak inside the lesion", "Heat inside the lesion", "Lesions"]
    assert table[0]["Peak inside the lesion"] == "84.0%" and table[0]["Lesions"] == "112"
    assert not any(v in ("None", "n/a", "nan") for r in table for v in r.values())
    assert not any("_" in header for header in table[0])  # no raw column names (pointing_game, energy_in_mask)


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("malignant", "explain the malignancy estimate"),
        ("predicted", "explain each image's top-scoring class"),
        ("label", "explain each image's true class"),
        (None, "did not record which class"),
    ],
)
def test_localization_notes_say_which_class_the_heatmaps_explain(target, says):
    metrics = fake_metrics()
    if target is not None:
        metrics["localization"]["target"] = target
    first, *meanings = perf.localization_notes(metrics)
    assert says in first
    assert [m.split("**")[1] for m in meanings] == [h for h, _ in perf.LOCALIZATION_COLUMNS.values()]
    assert "pointing game" in meanings[0] and "energy in mask" in meanings[1]


def test_training_note_names_what_makes_the_losses_incomparable():
    config = {"augment": {"hflip": 0.5}, "label_smoothing": 0.1, "lesion_weight": 2.0, "model_args": {"dropout": 0.3}}
    note = perf.training_note({"train_loss": [1.0], "train_lesion_loss": [0.4]}, config)
    for part in ("augmented images", "label smoothing 0.1", "lesion-mask loss (weight 2", "dropout on",
                 "plain cross-entropy", "separate panels"):
        assert part in note
    plain_note = perf.training_note({"train_loss": [1.0]}, {})
    assert "label smoothing" not in plain_note and "lesion-mask" not in plain_note and "separate panels" in plain_note


def test_card_config_is_empty_without_a_readable_card(tmp_path):
    assert perf.card_config(tmp_path) == {}
    (tmp_path / "model_card.json").write_text("{not json")
    assert perf.card_config(tmp_path) == {}


def test_headline_formats_nan_as_not_available():
    m = fake_metrics()
    m["ece"] = float("nan")
    values = {label: value for label, value, _ in perf.headline(m)}
    assert values["Calibration error"] == "n/a" and values["AUC"] == f"{m['auc']:.3f}"


def test_rate_rows_print_missing_values_one_way():
    point = perf.operating_point_at(TINY, 0.95)  # nothing flagged: PPV undefined
    assert perf.rate_rows(point) == [("Sensitivity", "0.0%"), ("Specificity", "100.0%"), ("PPV", "n/a"),
                                     ("NPV", "60.0%")]


def test_card_sections_describe_every_test_evaluation_or_the_cards_summary():
    from medapp.model.card import ModelCard

    card = ModelCard(name="m", architecture="small_cnn")
    evaluation = dict(perf.card_sections(card))["Evaluation"]
    assert evaluation.startswith("Not evaluated yet")
    card.metrics = {"busi_test": fake_metrics()}
    assert dict(perf.card_sections(card))["Evaluation"].startswith("On the BUSI test (Cairo, Egypt) (n=156")
    second = {**fake_metrics(n=40), "auc_definition": "malignant vs benign"}
    text = dict(perf.card_sections(card, {"BUSI test": fake_metrics(), "BUS-BRA test": second}))["Evaluation"]
    assert "On the BUS-BRA test (n=40, malignant vs benign): AUC" in text and text.count("On the") == 2
