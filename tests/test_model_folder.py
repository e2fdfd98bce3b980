"""Writing an evaluation into a model folder: explicit, and a partial run never drops an earlier record."""

from __future__ import annotations

import json
from pathlib import Path

from model_fixtures import build_tiny_model_dir

from medapp.model.card import ModelCard, metrics_filename
from medapp.reporting.model_folder import merge_with_previous, publish_evaluation
from tests.app_fixtures import fake_metrics


def _result(model_dir: Path, **extra: object) -> dict:
    card = ModelCard.load(model_dir)
    result = {**fake_metrics(), "dataset": "busi", "split": "test", "weights_sha256": card.weights_sha256}
    for record in ("localization", "scope_pass_rate"):
        result.pop(record, None)
    return {**result, **extra}


def test_metrics_file_names() -> None:
    assert metrics_filename("busi", "test") == "metrics.json"
    assert metrics_filename("busi", "val") == "metrics_busi_val.json"
    assert metrics_filename("breastmnist", "test") == "metrics_breastmnist_test.json"


def test_a_partial_run_keeps_the_localisation_record(tmp_path: Path) -> None:
    model_dir = build_tiny_model_dir(tmp_path / "m")
    localization = {"gradcam": {"pointing_game": 0.9, "energy_in_mask": 0.4, "n": 10}, "default": "gradcam"}
    publish_evaluation(model_dir, _result(model_dir, localization=localization, scope_pass_rate=0.97))
    publish_evaluation(model_dir, _result(model_dir))  # run again without --localization
    stored = json.loads((model_dir / "metrics.json").read_text())
    assert stored["localization"] == localization and stored["scope_pass_rate"] == 0.97
    assert stored["carried_over"] == ["localization", "scope_pass_rate"]
    card = ModelCard.load(model_dir)
    assert card.metrics["busi_test"]["localization"] == localization
    assert (model_dir / "README.md").is_file() and (model_dir / "plots" / "busi_test_roc.png").is_file()


def test_records_of_other_weights_are_not_carried_over() -> None:
    previous = {"weights_sha256": "a" * 64, "dataset": "busi", "split": "test", "n": 5, "localization": {"x": 1}}
    new = {"weights_sha256": "b" * 64, "dataset": "busi", "split": "test", "n": 5}
    assert merge_with_previous(new, previous) == new
    assert merge_with_previous(new, None) == new
    assert merge_with_previous({**new, "weights_sha256": "a" * 64}, previous)["localization"] == {"x": 1}
