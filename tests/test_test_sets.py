"""Each hospital's test split side by side, per scanner and across sites: hand-built metrics, checked text."""

from __future__ import annotations

import json

from medapp.reporting import test_sets
from tests.app_fixtures import fake_metrics, shipped_model_dirs

BUSI, BUSBRA = "BUSI test (Cairo, Egypt)", "BUS-BRA test (Rio de Janeiro, Brazil)"
# Hand-built: 40 images, 10 malignant; 8 of 10 found, 27 of 30 others not flagged.
SMALL = {"n": 40, "n_positive": 10, "n_negative": 30, "auc": 0.9, "auc_ci": [0.8, 0.96], "threshold": 0.2,
         "sensitivity": 0.8, "specificity": 0.9, "ece": 0.05, "scope_pass_rate": 0.975,
         "auc_definition": "malignant vs benign"}


def test_comparison_rows_put_the_test_sets_side_by_side_with_counts():
    busi = {**SMALL, "auc_definition": "malignant vs rest",
            "near_duplicates": {"duplicate_free": {**SMALL, "n": 20, "n_positive": 5, "n_negative": 15,
                                                   "sensitivity": 0.6, "specificity": 14 / 15}}}
    rows = test_sets.comparison_rows({BUSI: busi, BUSBRA: SMALL})
    table = {r["Measure"]: r for r in rows}
    assert list(rows[0]) == ["Measure", BUSI, "BUSI test, without near-copies", BUSBRA]
    assert table["AUC (95% CI)"][BUSBRA] == "0.900 (0.800-0.960)"
    assert table["Sensitivity at the threshold"][BUSBRA] == "80.0% (8 of 10)"
    assert table["Specificity at the threshold"][BUSBRA] == "90.0% (27 of 30)"
    assert table["Sensitivity at the threshold"]["BUSI test, without near-copies"] == "60.0% (3 of 5)"
    assert table["Specificity at the threshold"]["BUSI test, without near-copies"] == "93.3% (14 of 15)"
    assert table["AUC compares"][BUSI] == table["AUC compares"]["BUSI test, without near-copies"] == "malignant vs rest"
    assert table["AUC compares"][BUSBRA] == "malignant vs benign"  # BUS-BRA has no normal images
    assert table["Images"][BUSBRA] == "40 (10 malignant)" and table["Calibration error (ECE)"][BUSBRA] == "0.050"
    assert test_sets.comparison_rows({}) == []


def test_missing_values_read_not_available():
    rows = test_sets.comparison_rows({BUSBRA: {**SMALL, "sensitivity": float("nan"), "ece": None}})
    table = {r["Measure"]: r[BUSBRA] for r in rows}
    assert table["Sensitivity at the threshold"] == "n/a" and table["Calibration error (ECE)"] == "n/a"


def test_scanner_rows_mark_scanners_too_small_to_judge():
    per_device = {"Big": {**SMALL}, "Tiny": {**SMALL, "n": 4, "n_positive": 2, "n_negative": 2, "sensitivity": 1.0,
                                              "specificity": 0.5}}
    rows = test_sets.scanner_rows({BUSI: SMALL, BUSBRA: {**SMALL, "per_device": per_device}})
    assert [(r["Test set"], r["Scanner"]) for r in rows] == [("BUS-BRA test", "Big"), ("BUS-BRA test", "Tiny")]
    assert rows[0]["Note"] == "" and rows[0]["Sensitivity"] == "80.0% (8 of 10)"
    assert rows[1]["Note"] == "too few to judge (2 malignant and 2 other)"
    assert rows[1]["Specificity"] == "50.0% (1 of 2)"


def test_cross_site_display_reads_like_the_other_tables():
    row = {"trained_on": "busi", "tested_on": "busbra", "site_seen_in_training": False, "n": 304, "auc": 0.7345,
           "auc_ci": [0.675, 0.797], "sensitivity": 0.52, "specificity": 0.8333, "ece": 0.21, "scope_pass_rate": 1.0}
    (shown,) = test_sets.cross_site_display([row])
    assert shown["Site seen in training"] == "no" and shown["AUC (95% CI)"] == "0.735 (0.675-0.797)"
    assert shown["Sensitivity"] == "52.0%" and shown["Passed the scope gate"] == "100.0%"


def test_site_evaluations_leave_out_breastmnist(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(fake_metrics()))
    (tmp_path / "metrics_busbra_test.json").write_text(json.dumps({**fake_metrics(n=40), "dataset": "busbra"}))
    (tmp_path / "metrics_breastmnist_test.json").write_text(json.dumps(fake_metrics(n=30)))
    assert list(test_sets.site_evaluations(tmp_path)) == [BUSI, BUSBRA]


def test_shipped_folder_shows_both_hospitals_from_its_files():
    """The side-by-side numbers are the stored files' numbers (nothing typed in)."""
    for model_dir in shipped_model_dirs():
        sites = test_sets.site_evaluations(model_dir)
        if len(sites) < 2:
            continue
        rows = {r["Measure"]: r for r in test_sets.comparison_rows(sites)}
        for label, m in sites.items():
            assert rows["AUC (95% CI)"][label].startswith(f"{m['auc']:.3f} (")
            assert rows["Images"][label].startswith(f"{m['n']} (")


def test_the_outline_is_shown_beside_each_test_set_and_scanner():
    agree = {"orientation": {"agreement_counting_missed": 0.9}, "shape": {"agreement_counting_missed": 0.75}}
    outline = {"all_lesion_images": {"dice_mean": 0.8212, "n": 30}, "agreement": agree,
               "per_device": {"Big": {"all_lesion_images": {"dice_mean": 0.86, "n": 20}, "agreement": agree}}}
    evaluations = {BUSI: SMALL, BUSBRA: {**SMALL, "outline": outline, "per_device": {"Big": SMALL, "Other": SMALL}}}
    table = {r["Measure"]: r for r in test_sets.comparison_rows(evaluations)}
    assert table["Lesion outline Dice"][BUSBRA] == "0.821 (30 lesions)"
    assert table["Lesion outline Dice"][BUSI] == "n/a"  # scored without an outline
    assert table["Outline vs radiologist: orientation / shape agree"][BUSBRA] == "0.900 / 0.750"
    assert [r["Outline Dice"] for r in test_sets.scanner_rows(evaluations)] == ["0.860", "n/a"]
