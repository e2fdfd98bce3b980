"""Checkpoint round trip through safetensors, and refusal of a weights file that does not match its card."""

from __future__ import annotations

import pytest
import torch

from medapp.errors import ModelLoadError
from medapp.model.checkpoint import load_weights, save_weights, sha256_file
from medapp.model.registry import create_model


def test_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = create_model("small_cnn", width=8).eval()
    path = tmp_path / "m.safetensors"
    digest = save_weights(model, path)
    assert digest == sha256_file(path)
    clone = load_weights(create_model("small_cnn", width=8).eval(), path, digest)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(model(x), clone(x))


def test_tampered_weights_are_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    digest = save_weights(create_model("small_cnn", width=8), path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="SHA-256.*changed or corrupted"):
        load_weights(create_model("small_cnn", width=8), path, digest)


def test_wrong_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(create_model("small_cnn", width=8), path)
    with pytest.raises(ModelLoadError, match="do not fit the architecture"):
        load_weights(create_model("small_cnn", width=16), path)


@pytest.mark.parametrize("field", ["threshold", "temperature", "serving", "explain", "weights_sha256", "scope"])
def test_a_card_missing_a_required_field_is_refused(tmp_path, field):
    """Once a card without "threshold" was served at 0.5: now every field serving relies on must be stated."""
    import json
    import shutil

    from model_fixtures import build_tiny_model_dir

    from medapp.model.card import ModelCard

    folder = build_tiny_model_dir(tmp_path / "m")
    ModelCard.load(folder)  # complete: loads
    raw = json.loads((folder / "model_card.json").read_text())
    del raw[field]
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "model_card.json").write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match=f"required field.*{field}"):
        ModelCard.load(broken)


@pytest.mark.parametrize(("path", "value", "message"), [
    (("threshold",), 1.5, "threshold must be a probability"), (("temperature",), 0.0, "temperature must be positive"),
    (("explain", "method"), "", "explain.method is missing"), (("serving", "normal_ceiling"), 2.0, "normal_ceiling"),
])
def test_a_card_with_a_value_out_of_range_is_refused(tmp_path, path, value, message):
    from model_fixtures import build_tiny_model_dir, edit_card

    from medapp.model.card import ModelCard

    folder = build_tiny_model_dir(tmp_path / "m")
    edit_card(folder, path, value)
    with pytest.raises(ModelLoadError, match=message):
        ModelCard.load(folder)


@pytest.mark.parametrize(("path", "value"), [
    (("temperature",), -1.0), (("temperature",), 0.0), (("threshold",), 1.5), (("threshold",), 0.9),
    (("class_names",), ["malignant", "benign", "normal"]), (("scope", "threshold"), 1e9), (("scope_sha256",), ""),
    (("intended_use",), "any image"),
])
def test_every_edit_of_a_released_card_is_refused_as_not_matching(tmp_path, path, value):
    """Issue 12, item 6: the edits that once served a 99% cancer as "<1%, not flagged", and any other, are
    refused by the one loader of serving and evaluation, naming the mismatch; the released folder loads."""
    import shutil

    from model_fixtures import build_tiny_model_dir, edit_card

    from medapp.serving.predict import Predictor

    folder = build_tiny_model_dir(tmp_path / "m")
    Predictor.from_dir(folder)  # as released: loads
    edited = tmp_path / "edited"
    shutil.copytree(folder, edited)
    edit_card(edited, path, value)
    with pytest.raises(ModelLoadError, match="model_card.json in .* does not match SHA256SUMS"):
        Predictor.from_dir(edited)


def test_a_folder_without_checksums_or_with_a_swapped_scope_gate_is_refused(tmp_path):
    import shutil

    from model_fixtures import build_tiny_model_dir

    from medapp.serving.predict import Predictor

    folder = build_tiny_model_dir(tmp_path / "m")
    unsealed = tmp_path / "unsealed"
    shutil.copytree(folder, unsealed)
    (unsealed / "SHA256SUMS").unlink()
    with pytest.raises(ModelLoadError, match="has no SHA256SUMS"):
        Predictor.from_dir(unsealed)
    other = build_tiny_model_dir(tmp_path / "other", seed=1)
    swapped = tmp_path / "swapped"
    shutil.copytree(folder, swapped)
    shutil.copy(other / "scope.safetensors", swapped / "scope.safetensors")
    with pytest.raises(ModelLoadError, match="scope.safetensors in .* does not match SHA256SUMS"):
        Predictor.from_dir(swapped)
