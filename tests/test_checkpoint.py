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
    import json

    from model_fixtures import build_tiny_model_dir

    from medapp.model.card import ModelCard

    folder = build_tiny_model_dir(tmp_path / "m")
    raw = json.loads((folder / "model_card.json").read_text())
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (folder / "model_card.json").write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match=message):
        ModelCard.load(folder)
