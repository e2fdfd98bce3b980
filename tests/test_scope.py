"""Scope gate: fitting and loading, and the acceptance numbers on the shipped model (in-scope pass rate on the
BUSI test split, out-of-scope flag rate on real out-of-scope images)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import TINY_SIZE, out_of_scope_set, outliers_for, speckle_image, tiny_model_dir  # noqa: F401

from medapp.errors import ModelLoadError
from medapp.model.card import InputSpec, ModelCard
from medapp.model.preprocess import normalize, resize_to_square
from medapp.model.registry import architecture_info, create_model
from medapp.model.scope import (
    METHOD,
    ScopeGate,
    extract_layer_features,
    feature_statistics,
    fit_scope_gate,
)
from medapp.serving.predict import Predictor


def _squares(n: int, offset: int = 0) -> np.ndarray:
    spec = InputSpec(size=TINY_SIZE)
    return np.stack([resize_to_square(speckle_image(200, 260, seed=offset + i), spec) for i in range(n)])


def test_fit_separates_ultrasound_from_outliers_and_round_trips(tmp_path: Path) -> None:
    model = create_model("small_cnn", num_classes=3, in_chans=1, width=8).eval()
    card = ModelCard(name="t", architecture="small_cnn", model_args={"width": 8}, input=InputSpec(size=TINY_SIZE))
    train, val = _squares(60), _squares(40, offset=100)
    outliers = outliers_for(card.input)
    gate = fit_scope_gate(model, card, train, val, outliers, tmp_path)
    layers = architecture_info(model).scope_layers
    val_scores = gate.score_features(extract_layer_features(model, layers, val, card.input))
    assert gate.threshold == 0.0 and gate.passes(val_scores).mean() >= 0.95
    assert card.scope["val_pass_rate"] == pytest.approx(gate.passes(val_scores).mean())
    assert card.scope["method"] == METHOD and card.scope["threshold"] == gate.threshold
    assert card.scope["layers"] == list(layers) and len(card.scope_sha256) == 64
    assert f"{len(train)} training images against {len(outliers)} outlier images" in card.scope["rule"]
    loaded = ScopeGate.load(tmp_path, card)
    x = torch.stack([normalize(torch.from_numpy(s), card.input) for s in val])
    np.testing.assert_allclose(loaded.score(model, x), val_scores, rtol=1e-6)
    assert _hooks(model) == 0
    # a smooth ramp (no speckle) is on the outlier side of the boundary
    ramp = np.tile(np.linspace(0, 1, TINY_SIZE, dtype=np.float32), (TINY_SIZE, 1))
    assert not loaded.passes(loaded.score(model, normalize(torch.from_numpy(ramp), card.input)[None]))[0]


def _hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_hand_checked_logistic_score() -> None:
    gate = ScopeGate(("a", "b"), mean=np.array([1.0, 0.0, 0.0]), scale=np.array([1.0, 2.0, 1.0]),
                     coef=np.array([1.0, -1.0, 0.5]), intercept=0.5)
    scores = gate.score_features([np.array([[1.0, 0.0], [3.0, 2.0]]), np.array([[0.0], [-4.0]])])
    # minus the log-odds: -(((x - mean) / scale) @ coef + intercept)
    np.testing.assert_allclose(scores, [-(0 + 0 + 0 + 0.5), -(2 - 1 - 2 + 0.5)])
    assert gate.passes(scores).tolist() == [True, False]
    with pytest.raises(ModelLoadError, match="expects 3 features"):
        gate.score_features([np.zeros((1, 4))])


def test_feature_statistics() -> None:
    a = torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]]])  # (1, 2, 1, 2)
    np.testing.assert_allclose(feature_statistics(a), [[2.0, 2.0, np.sqrt(2.0), 0.0]])


def test_an_earlier_kind_of_gate_is_refused(tmp_path: Path) -> None:
    """The Mahalanobis gates of earlier versions are gone: a folder still holding one must be refitted."""
    from safetensors.torch import save_file

    from medapp.model.checkpoint import sha256_file

    with pytest.raises(ValueError, match="one mean, scale and coefficient per feature"):
        ScopeGate((), np.zeros(4), np.ones(4), np.ones(4), 0.0)
    save_file({"0.mean": torch.zeros(4), "0.precision": torch.eye(4)}, str(tmp_path / "scope.safetensors"))
    card = ModelCard(name="t", architecture="small_cnn",
                     scope={"method": "mahalanobis_feature_statistics", "layers": ["x"], "threshold": 3.0},
                     scope_sha256=sha256_file(tmp_path / "scope.safetensors"))
    with pytest.raises(ModelLoadError, match="earlier kind .*refit the gate"):
        ScopeGate.load(tmp_path, card)


def test_tampered_scope_file_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    data = bytearray((folder / "scope.safetensors").read_bytes())
    data[-3] ^= 0x01
    (folder / "scope.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="scope.safetensors .* does not match"):
        Predictor.from_dir(folder)


# --- acceptance on the shipped model ---

@pytest.fixture(scope="module")
def shipped_predictor(shipped_model_dir: Path) -> Predictor:
    return Predictor.from_dir(shipped_model_dir)


def test_out_of_scope_images_flagged(shipped_predictor: Predictor) -> None:
    images, refused = out_of_scope_set()
    assert len(images) >= 50, "the out-of-scope set is unexpectedly small"
    preds = shipped_predictor.predict_batch([im for _, im in images], tta=False, explain=False)
    missed = [(name, round(p.scope_score, 1)) for (name, _), p in zip(images, preds) if p.in_scope]
    flagged = (len(images) - len(missed) + len(refused)) / (len(images) + len(refused))
    assert flagged == 1.0, f"only {flagged:.1%} flagged; passed the gate: {missed}"
    assert sum(name.startswith("doppler:") for name, _ in images) >= 6
    assert all(p.decision_text.startswith("Outside intended use") for p in preds if not p.in_scope)


@pytest.mark.slow
def test_busi_test_split_passes_scope(shipped_predictor: Predictor, busi_dir: Path) -> None:
    from medapp.data.datasets import load_busi_records
    from medapp.evaluation.evaluate import squares_and_scope

    rate = float(np.mean(squares_and_scope(shipped_predictor, load_busi_records("test", busi_dir))[1]))
    assert rate >= 0.95, f"only {rate:.1%} of BUSI test images pass the scope gate"


@pytest.mark.slow
def test_localization_on_busi_test_lesions(shipped_predictor: Predictor, busi_dir: Path) -> None:
    from medapp.data.datasets import load_busi_records
    from medapp.evaluation.localization import evaluate_localization

    result = evaluate_localization(shipped_predictor, load_busi_records("test", busi_dir),
                                   methods=[shipped_predictor.default_cam_method])
    default = result[result["default"]]
    assert default["n"] >= 100
    assert default["pointing_game"] >= 0.80, result
    assert default["pointing_game"] >= result["center_prior"]["pointing_game"] + 0.10, result
