"""The lesion-outline decoder: one encoder pass for both heads, a tiny real training run installed into a copy of
the shipped model folder, the classifier untouched by it, and a decoder that does not belong refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import medical_image, speckle_image

from medapp.errors import ModelLoadError
from medapp.model.card import OUTLINE_FILE, ModelCard
from medapp.model.checkpoint import load_model
from medapp.model.lesion_outline import DEFAULT_TAPS, build_decoder, encode, load_outline_decoder, outline_logits
from medapp.serving.predict import Predictor
from medapp.training.train_outline import THRESHOLD_GRID, load_outline_config, train_outline

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def shipped(shipped_model_dir: Path):
    card, model = load_model(shipped_model_dir)
    return card, model


@pytest.mark.parametrize("branch_from", [None, 11])
def test_one_encoder_pass_gives_the_classifier_logits_and_a_full_size_outline(shipped, branch_from) -> None:
    card, model = shipped
    x = torch.randn(2, 1, card.input.size, card.input.size)
    decoder = build_decoder(model, DEFAULT_TAPS, branch_from).eval()
    with torch.no_grad():
        logits, outline = outline_logits(model, decoder, x, DEFAULT_TAPS)
        plain = model(x)
    assert torch.equal(logits, plain)  # the shared pass is the classifier's own
    assert outline.shape == (2, 1, card.input.size, card.input.size)
    if branch_from:  # the decoder's own copy of the deep blocks starts as the classifier's, and learns alone
        own = dict(decoder.deep_blocks.named_parameters())
        assert all(p.requires_grad for p in own.values())
        theirs = model._blocks[11]._project_conv.weight
        assert torch.equal(own["0._project_conv.weight"], theirs) and own["0._project_conv.weight"] is not theirs
    encoded = encode(model, x, DEFAULT_TAPS)
    assert sorted(encoded.taps) == sorted(DEFAULT_TAPS)
    assert encoded.lesion_logits.shape[-1] == card.input.size // 16


@pytest.fixture(scope="module")
def outlined_model(shipped_model_dir: Path, tmp_path_factory: pytest.TempPathFactory, busi_dir: Path) -> Path:
    """A copy of the shipped folder with a decoder from a real (tiny) training run installed into it."""
    root = tmp_path_factory.mktemp("outline")
    folder = root / "model"
    shutil.copytree(shipped_model_dir, folder, ignore=shutil.ignore_patterns(OUTLINE_FILE))
    card = json.loads((folder / "model_card.json").read_text())
    card.pop("outline", None)  # start from a classifier without a decoder, as training does
    (folder / "model_card.json").write_text(json.dumps(card))
    ModelCard.from_dict(card).save(folder)
    cfg = load_outline_config(Path(__file__).resolve().parents[1] / "configs/outline_lite0_160.yaml",  # shipped, tiny
                              {"base_model": str(folder), "subset": 6, "epochs": 1, "batch_size": 4,
                               "out_dir": str(root / "run"), "threads": 2})
    train_outline(cfg, command="test", install=True)
    return folder


def test_training_chooses_epoch_and_threshold_on_validation_and_installs_sealed(outlined_model: Path) -> None:
    card = ModelCard.load(outlined_model)
    entry = card.outline
    assert entry["threshold"] in THRESHOLD_GRID
    assert entry["best_epoch"] == 1 and entry["taps"] == list(DEFAULT_TAPS)
    assert entry["branch_from"] == 11 and isinstance(entry["flip_average"], bool)
    assert 0.0 <= entry["validation"]["val_dice"] <= 1.0
    assert {"val_dice_busi", "val_dice_busbra"} <= set(entry["validation"])
    assert OUTLINE_FILE in (outlined_model / "SHA256SUMS").read_text()
    _, model = load_model(outlined_model)  # the sealed folder still loads
    assert load_outline_decoder(outlined_model, card, model) is not None


@pytest.mark.parametrize("flip_average", [False, True])
def test_the_outline_leaves_the_classifier_exactly_as_shipped(outlined_model: Path, shipped_model_dir: Path,
                                                              flip_average: bool) -> None:
    image = medical_image(speckle_image(300, 400, seed=3))
    outlining = Predictor.from_dir(outlined_model)
    outlining.card.outline["flip_average"] = flip_average  # the mirror pass must not reach the scope gate
    with_outline = outlining.predict(image, explain=False)
    original = Predictor.from_dir(shipped_model_dir)
    original.outline_decoder = None
    without = original.predict(image, explain=False)
    assert with_outline.probabilities == without.probabilities
    assert with_outline.scope_score == without.scope_score
    assert without.lesion is None and without.lesion_note == "this model has no lesion-outline decoder"
    if with_outline.in_scope:
        assert with_outline.lesion is not None or with_outline.lesion_note
    else:
        assert with_outline.lesion is None and "outside the model's intended use" in with_outline.lesion_note


def test_a_changed_decoder_is_refused(outlined_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(outlined_model, folder)
    data = bytearray((folder / OUTLINE_FILE).read_bytes())
    data[-1] ^= 1
    (folder / OUTLINE_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match SHA256SUMS"):
        load_model(folder)


def test_a_decoder_the_card_does_not_vouch_for_is_refused(outlined_model: Path, tmp_path: Path) -> None:
    card, model = load_model(outlined_model)
    card.outline = {**card.outline, "sha256": "0" * 64}
    with pytest.raises(ModelLoadError, match="does not match the SHA-256 in the model card"):
        load_outline_decoder(outlined_model, card, model)
    (missing := tmp_path / "m").mkdir()
    with pytest.raises(ModelLoadError, match="is missing"):
        load_outline_decoder(missing, card, model)


def test_outline_probabilities_map_back_to_the_original_image(outlined_model: Path) -> None:
    predictor = Predictor.from_dir(outlined_model)
    image = medical_image(speckle_image(240, 420, seed=5))
    prediction = predictor.predict(image, explain=False)
    if prediction.lesion is not None:
        assert prediction.lesion.outline_mask.shape == (240, 420)
        assert prediction.lesion.outline_mask.dtype == np.bool_
    assert "lesion" in prediction.to_dict()
