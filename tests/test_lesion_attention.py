"""Lesion attention: the mask-supervised gate, its loss, joint augmentation of image and mask, and training."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from medapp.errors import ConfigError
from medapp.model.card import ModelCard
from medapp.model.lesion_attention import LesionGate, lesion_loss
from medapp.model.registry import cam_target_layer, create_model
from medapp.training.augment import PairedTransform
from medapp.training.config import AugmentConfig, TrainConfig
from medapp.training.train import train


@pytest.fixture(scope="module")
def lesion_model() -> torch.nn.Module:
    return create_model("efficientnet_lite0", num_classes=3, in_chans=1, pretrained=False, lesion_block=10)


def test_training_mode_returns_lesion_logits_eval_mode_only_logits(lesion_model: torch.nn.Module) -> None:
    x = torch.randn(2, 1, 64, 64)
    lesion_model.train()
    logits, lesion = lesion_model(x)
    assert logits.shape == (2, 3) and lesion.shape == (2, 1, 4, 4)  # stride 16
    lesion_model.eval()
    with torch.no_grad():
        out = lesion_model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)


def test_keeps_the_backbone_parameter_names(lesion_model: torch.nn.Module) -> None:
    plain = create_model("efficientnet_lite0", num_classes=3, in_chans=1, pretrained=False)
    extra = set(lesion_model.state_dict()) - set(plain.state_dict())
    assert set(plain.state_dict()) <= set(lesion_model.state_dict())
    assert extra and all(k.startswith("_lesion_head.") for k in extra)
    assert cam_target_layer(lesion_model) is lesion_model._lesion_gate.attention
    assert cam_target_layer(plain) is plain._conv_head


def test_pretrained_weights_still_load_with_the_head() -> None:
    plain = create_model("efficientnet_lite0", num_classes=3, in_chans=1, pretrained=True)
    gated = create_model("efficientnet_lite0", num_classes=3, in_chans=1, pretrained=True, lesion_block=10)
    torch.testing.assert_close(gated._blocks[5]._project_conv.weight, plain._blocks[5]._project_conv.weight)


@pytest.mark.parametrize(("logit", "factor"), [(50.0, 1.0), (-50.0, 0.25), (0.0, 0.625)])
def test_gate_passes_lesion_and_damps_the_rest_to_leak(logit: float, factor: float) -> None:
    x = torch.full((1, 3, 2, 2), 2.0)
    out = LesionGate(0.25)(x, torch.full((1, 1, 2, 2), logit))
    torch.testing.assert_close(out, x * factor)


def test_gate_refuses_a_leak_outside_0_1() -> None:
    with pytest.raises(ValueError, match="leak must be in"):
        LesionGate(1.5)


def test_lesion_loss_rewards_the_right_mask() -> None:
    masks = torch.zeros(2, 16, 16)
    masks[0, 4:12, 4:12] = 1.0  # one lesion image, one normal image
    target = torch.nn.functional.adaptive_avg_pool2d(masks[:, None], (4, 4))
    right, wrong = (target * 2 - 1) * 8, (1 - target * 2) * 8
    assert lesion_loss(right, masks) < 0.1 < lesion_loss(wrong, masks)
    normal_only = lesion_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 16, 16))
    assert torch.isfinite(normal_only) and normal_only == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_paired_transform_moves_the_mask_with_the_image() -> None:
    torch.manual_seed(0)
    square = torch.zeros(1, 48, 48)
    square[0, 10:22, 26:40] = 1.0
    geometric_only = PairedTransform(AugmentConfig(hflip=1.0, degrees=10, translate=0.1, brightness=0, contrast=0))
    for _ in range(5):
        image, mask = geometric_only(square.clone(), square.clone())
        torch.testing.assert_close(image, mask)  # the same draw moved both
        assert not torch.equal(mask, square)
    with_intensity = PairedTransform(AugmentConfig(hflip=0, degrees=0, translate=0, scale_min=1, scale_max=1,
                                                   brightness=0.5, contrast=0.5, speckle=0.3))
    image, mask = with_intensity(square.clone(), square.clone())
    assert torch.equal(mask, square) and not torch.equal(image, square)  # intensity changes the image only


def test_one_epoch_with_lesion_loss(busi_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(architecture="efficientnet_lite0", model_args={"pretrained": False, "lesion_block": 10},
                      image_size=32, epochs=1, subset=12, batch_size=4, threads=1, lesion_weight=1.0,
                      out_dir=str(tmp_path / "run"))
    out = train(cfg)
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["train_lesion_loss"]) > 0
    assert (out / "model_card.json").is_file()


def test_lesion_loss_needs_a_model_with_lesion_attention(busi_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(architecture="small_cnn", model_args={"width": 8}, image_size=32, epochs=1, subset=12,
                      batch_size=4, threads=1, lesion_weight=1.0, out_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="needs a model with lesion attention"):
        train(cfg)


def test_weight_averaging_ships_the_mean_of_the_last_epochs(busi_dir: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(architecture="small_cnn", model_args={"width": 8}, image_size=32, epochs=2, subset=12,
                      batch_size=4, threads=1, swa_epochs=2, patience=1, out_dir=str(tmp_path / "run"))
    card = ModelCard.load(train(cfg))
    assert card.metrics["weights"] == "average of epochs 1-2" and card.metrics["best_epoch"] == 2
    with pytest.raises(ConfigError, match="swa_epochs=3 must be between 0 and epochs=2"):
        TrainConfig(epochs=2, swa_epochs=3)
