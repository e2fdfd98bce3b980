"""Contract tests over the model registry: every model builds, runs forward and backward, names its CAM layer."""

from __future__ import annotations

import pytest
import torch

from medapp.models import adapt_input_conv, cam_target_layer, create_model, default_input, list_models

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
    layer = cam_target_layer(name, model)
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
