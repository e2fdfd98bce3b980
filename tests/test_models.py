"""Contract tests over the model registry: every model builds, runs forward and backward, names its CAM layer."""

from __future__ import annotations

import pytest
import torch

from medapp.model.registry import (
    _REGISTRY,
    ArchitectureInfo,
    adapt_input_conv,
    architecture_info,
    attach_info,
    cam_target_layer,
    create_model,
    default_input,
    leading_stages,
    list_models,
    register_model,
)

# small_cnn and efficientnet_lite0 at 64 px, resnet18 at 32 px: enough to exercise every layer quickly
SIZES = {"small_cnn": 64, "efficientnet_lite0": 64, "resnet18": 32}


def test_registry_lists_scratch_and_pretrained_models():
    assert {"small_cnn", "resnet18", "efficientnet_lite0"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_without_nans(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_chans=1)
    x = torch.randn(2, 1, SIZES.get(name, 64), SIZES.get(name, 64))
    logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list_models())
def test_every_model_names_its_cam_layer(name):
    model = create_model(name, num_classes=3, in_chans=1)
    layer = cam_target_layer(model)
    assert any(layer is m for m in model.modules())
    mean, std = default_input(name)
    assert 0 <= mean <= 1 and std > 0


def test_unknown_model_lists_registered_ones():
    with pytest.raises(ValueError, match="registered models: .*small_cnn"):
        create_model("vgg99")


def test_grayscale_stem_reproduces_rgb_response_to_a_gray_image():
    """Summing the RGB kernel keeps pretrained features exact for R=G=B input (timm's adapt_input_conv)."""
    weight = torch.randn(8, 3, 3, 3)
    gray = torch.rand(1, 1, 10, 10)
    rgb_out = torch.nn.functional.conv2d(gray.expand(1, 3, 10, 10), weight)
    gray_out = torch.nn.functional.conv2d(gray, adapt_input_conv(weight, 1))
    assert torch.allclose(rgb_out, gray_out, atol=1e-5)


def test_pretrained_lite0_loads_imagenet_weights_offline():
    a = create_model("efficientnet_lite0", pretrained=True)
    b = create_model("efficientnet_lite0", pretrained=True)
    c = create_model("efficientnet_lite0", pretrained=False)
    key = "_blocks.3._depthwise_conv.weight"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], c.state_dict()[key])


@pytest.mark.parametrize("name", list_models())
def test_every_model_carries_its_scope_layers_and_stages(name):
    model = create_model(name, num_classes=3, in_chans=1)
    info = architecture_info(model)
    modules = dict(model.named_modules())
    assert len(info.scope_layers) >= 1 and all(layer in modules for layer in info.scope_layers)
    stages = leading_stages(model)
    assert len(stages) == len(info.stages) >= 4
    assert all(any(m is n for n in model.modules()) for stage in stages for m in stage)


def test_lesion_attention_changes_the_cam_layer_through_its_own_factory():
    plain = create_model("efficientnet_lite0", pretrained=False)
    lesion = create_model("efficientnet_lite0", pretrained=False, lesion_block=10)
    assert architecture_info(plain).cam_layer == "_conv_head"
    assert architecture_info(lesion).cam_layer == "_lesion_gate.attention"


class _TinyNet(torch.nn.Module):
    def __init__(self, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(in_chans, 4, 3, padding=1)
        self.body = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(4, 8, 3, stride=2, padding=1),
                                        torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                        torch.nn.Linear(8, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


def test_a_new_architecture_is_one_registration(tmp_path):
    """Registering a factory is all it takes: freezing, the scope gate and the heatmap work with no other code."""
    import numpy as np
    from model_fixtures import medical_image, outliers_for, speckle_image

    from medapp.model.card import InputSpec, ModelCard
    from medapp.model.checkpoint import save_weights
    from medapp.model.scope import fit_scope_gate
    from medapp.serving.predict import Predictor
    from medapp.training.release import explain_entry

    @register_model("tiny_test_net", mean=0.5, std=0.5, description="test only")
    def tiny_test_net(*, num_classes: int, in_chans: int) -> torch.nn.Module:
        model = _TinyNet(num_classes, in_chans)
        return attach_info(model, ArchitectureInfo(cam_layer="body.3", scope_layers=("body.1", "body.3"),
                                                   stages=("stem", "body.1", "body.3", "head")))

    try:
        torch.manual_seed(0)
        model = create_model("tiny_test_net").eval()
        assert [len(s) for s in leading_stages(model)] == [1, 1, 1, 1]
        card = ModelCard(name="tiny", architecture="tiny_test_net", input=InputSpec(size=32),
                         explain=explain_entry({}, model))
        squares = np.random.default_rng(0).uniform(0, 1, (30, 32, 32)).astype(np.float32)
        fit_scope_gate(model, card, squares[:20], squares[20:], outliers_for(card.input), tmp_path)
        card.weights_sha256 = save_weights(model, tmp_path / "model.safetensors")
        card.save(tmp_path)
        prediction = Predictor.from_dir(tmp_path).predict(medical_image(speckle_image(64, 80)))
        assert card.scope["layers"] == ["body.1", "body.3"] and prediction.heatmap.shape == (64, 80)
    finally:
        _REGISTRY.pop("tiny_test_net")
