"""Evaluation of the shipped model on the official test split: the floors the product promises, and the schema."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medapp.evaluation.evaluate import evaluate_breastmnist, evaluate_manifest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = {"model", "split", "n", "auc", "auc_ci", "accuracy", "threshold", "sensitivity", "specificity",
                 "ppv", "npv", "accuracy_3class", "macro_auc_3class", "confusion_matrix", "class_names", "ece",
                 "ece_uncalibrated", "curves", "predictions", "scope_pass_rate", "auc_definition"}


@pytest.fixture(scope="module")
def test_metrics(shipped_model_dir, busi_dir):
    return evaluate_manifest(shipped_model_dir, "busi", "test", n_boot=200)


def test_shipped_model_beats_the_published_floors(test_metrics):
    assert test_metrics["n"] == 156
    assert test_metrics["auc"] >= 0.92  # MedMNIST v2 best: 0.919 (Google AutoML Vision)
    assert test_metrics["accuracy"] >= 0.87  # MedMNIST v2 best: 0.863 (ResNet-18, 28 px)
    assert test_metrics["ece"] <= 0.08


def test_metrics_schema(test_metrics):
    assert REQUIRED_KEYS <= set(test_metrics)
    lo, hi = test_metrics["auc_ci"]
    assert lo <= test_metrics["auc"] <= hi
    assert sum(map(sum, test_metrics["confusion_matrix"])) == 156
    assert {"roc", "pr", "reliability"} <= set(test_metrics["curves"])
    preds = test_metrics["predictions"]
    assert len(preds) == 156 and {"image", "label", "p_malignant", "in_scope", "device"} <= set(preds[0])
    assert test_metrics["scope_pass_rate"] == pytest.approx(sum(p["in_scope"] for p in preds) / 156)
    assert all(0 <= p["p_malignant"] <= 1 for p in preds)


def test_shipped_metrics_json_matches_a_fresh_evaluation(shipped_model_dir, test_metrics):
    """The committed metrics.json is what the code computes now (no stale or hand-edited numbers)."""
    stored = json.loads((shipped_model_dir / "metrics.json").read_text())
    for key in ("auc", "accuracy", "sensitivity", "specificity", "ece", "ece_uncalibrated", "accuracy_3class"):
        assert stored[key] == pytest.approx(test_metrics[key], abs=1e-6), key


def test_breastmnist_mode_scores_the_28px_file(shipped_model_dir, busi_dir):
    result = evaluate_breastmnist(shipped_model_dir, "test", n_boot=50)
    assert result["n"] == 156 and result["n_positive"] == 42
    assert 0.5 < result["auc"] <= 1 and not math.isnan(result["ece"])


def _tree_digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_evaluate_cli_writes_json_and_leaves_the_model_folder_alone(shipped_model_dir, busi_dir, tmp_path):
    """Asked for a score, evaluate writes the --json file and nothing else; --update-model writes the folder."""
    model_dir = tmp_path / "model"  # a copy: the test must not rewrite the shipped folder
    shutil.copytree(shipped_model_dir, model_dir)
    before = _tree_digest(model_dir)
    out = tmp_path / "m.json"
    command = [sys.executable, "-m", "medapp", "evaluate", "--model", str(model_dir), "--split", "val",
               "--json", str(out), "--bootstrap", "50"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(out.read_text())
    assert metrics["split"] == "val" and metrics["n"] == 78
    assert "AUC" in result.stdout
    assert _tree_digest(model_dir) == before  # reading is not writing

    result = subprocess.run([*command, "--update-model"], capture_output=True, text=True, cwd=PROJECT_ROOT,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((model_dir / "metrics_busi_val.json").read_text())
    assert written["auc"] == metrics["auc"] and (model_dir / "plots" / "busi_val_roc.png").is_file()
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["metrics"]["busi_val"]["auc"] == metrics["auc"]
    assert "metrics.json" not in {k for k, v in _tree_digest(model_dir).items() if before.get(k) != v}


def test_what_evaluate_scores_is_what_the_app_shows(shipped_model_dir, test_metrics):
    """The same test images through the Predictor (as the app and the CLI run it) give evaluate's P(malignant)."""
    from medapp.data.datasets import load_busi_records
    from medapp.intake.imaging import load_image
    from medapp.serving.predict import Predictor

    predictor = Predictor.from_dir(shipped_model_dir)
    records = {r.image: r for r in load_busi_records("test")}
    scored = test_metrics["predictions"][::31]
    for i, row in enumerate(scored):
        image = load_image(records[row["image"]].path)
        shown = predictor.predict(image, explain=i % 2 == 0)  # with the heatmap's pass and without
        assert shown.p_malignant == pytest.approx(row["p_malignant"], abs=1e-5), row["image"]


def test_busbra_scored_per_scanner_as_malignant_vs_benign(shipped_model_dir, busi_dir):
    """A second hospital's manifest through the same evaluation: per-scanner rows and in-scope flags."""
    from medapp.evaluation.evaluate import evaluate_manifest

    if not (busi_dir / "busbra" / "metadata.csv").is_file():
        pytest.skip(f"BUS-BRA not found at {busi_dir / 'busbra'}")
    result = evaluate_manifest(shipped_model_dir, "busbra", "val", n_boot=50)
    assert result["n"] == 153 and result["auc_definition"] == "malignant vs benign"
    assert result["n_positive"] + result["n_negative"] == 153 and 0.5 < result["auc"] <= 1
    devices = result["per_device"]
    assert len(devices) >= 3 and sum(d["n"] for d in devices.values()) == 153
    assert all({"auc", "sensitivity", "specificity", "ece", "scope_pass_rate"} <= set(d) for d in devices.values())
    assert {p["device"] for p in result["predictions"]} == set(devices)
