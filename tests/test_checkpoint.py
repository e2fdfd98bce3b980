"""Checkpoint round trip through safetensors, and refusal of a weights file that does not match its card."""

from __future__ import annotations

import pytest
import torch

from medapp.checkpoint import load_weights, save_weights, sha256_file
from medapp.errors import ModelLoadError
from medapp.models import create_model


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
