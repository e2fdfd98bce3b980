"""The lesion's outline: a U-Net-style decoder on the classifier's own encoder (one encoder, two heads).

Why a decoder: the lesion-attention head (:mod:`medapp.model.lesion_attention`) learns the radiologists' masks at
stride 16 (10x10 cells at 160 px), enough to steer the classifier, too coarse to draw or measure. The decoder
upsamples from the deepest stage (stride 32) and at each step concatenates the encoder's features of that
stride (skip connections, Ronneberger et al. 2015), plus the attention head's lesion logits at stride 16, back
to the input's full resolution.

Why the encoder is shared and frozen: the classifier, its calibration, threshold, scope gate and every number
reported for it stay exactly as shipped (the outline cannot make them worse), and one forward pass of the encoder
serves both heads. The encoder already learned the lesion from the masks (its attention head), so its features
carry the outline; docs/design_choices.md records the validation Dice this gives.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..errors import ModelLoadError
from .card import OUTLINE_FILE, ModelCard
from .integrity import sha256_file
from .lesion_attention import LesionAttentionEfficientNet

# the encoder stages the decoder reads, deepest first: (block index, stride) of EfficientNet-Lite0's last block
# of each resolution (channels 320, 112, 40, 24, 16)
DEFAULT_TAPS = (15, 10, 4, 2, 0)


@dataclass(frozen=True)
class EncoderOutput:
    """One forward pass of the shared encoder: class logits, the attention head's stride-16 lesion logits, and
    the tapped stages' features by block index."""

    logits: torch.Tensor
    lesion_logits: torch.Tensor
    taps: dict[int, torch.Tensor]


def encode(model: LesionAttentionEfficientNet, inputs: torch.Tensor, taps: tuple[int, ...]) -> EncoderOutput:
    """Run the classifier once (its own pass, :meth:`LesionAttentionEfficientNet.features_and_lesion`), keeping the
    outputs of the blocks in ``taps`` (model in eval mode)."""
    if not isinstance(model, LesionAttentionEfficientNet):
        raise TypeError(f"the lesion outline needs a network with lesion attention, got {type(model).__name__}")
    kept: dict[int, torch.Tensor] = dict.fromkeys(taps)
    features, lesion = model.features_and_lesion(inputs, keep=kept)
    return EncoderOutput(model.classify(features), lesion, kept)


def tap_channels(model: LesionAttentionEfficientNet, taps: tuple[int, ...]) -> list[int]:
    return [model._blocks[i]._project_conv.out_channels for i in taps]


class _Stage(nn.Module):
    """Upsample x2, concatenate the skip features, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.body(torch.cat([x, skip], 1))


class LesionDecoder(nn.Module):
    """Tapped encoder features (deepest first) + stride-16 lesion logits -> (N, 1, S, S) outline logits.

    The attention head's logits join the skip at the stage of the same size, so the decoder starts from what the
    classifier already believes is lesion and refines its border with the shallower stages.
    """

    def __init__(self, channels: list[int], widths: tuple[int, ...] = (96, 64, 48, 32, 24),
                 deep_blocks: nn.ModuleList | None = None, branch_from: int | None = None) -> None:
        super().__init__()
        # optional: the encoder's deepest blocks copied and fine-tuned for the outline (the classifier keeps its
        # own), fed from the shared stage before ``branch_from``; None: the shared encoder's deepest tap as is
        self.deep_blocks = deep_blocks
        self.branch_from = branch_from
        if len(widths) != len(channels):
            raise ValueError(f"one decoder width per tapped stage: {len(channels)} taps, {len(widths)} widths")
        self.entry = nn.Sequential(nn.Conv2d(channels[0], widths[0], 1, bias=False), nn.BatchNorm2d(widths[0]),
                                   nn.ReLU(inplace=True))
        # the stride-16 stage (second tap) also receives the attention head's one-channel logits
        self.stages = nn.ModuleList(
            _Stage(widths[i - 1], channels[i] + (1 if i == 1 else 0), widths[i]) for i in range(1, len(channels)))
        self.out = nn.Conv2d(widths[-1], 1, 1)

    def forward(self, features: list[torch.Tensor], lesion_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.entry(features[0])
        for i, stage in enumerate(self.stages, start=1):
            skip = features[i]
            if i == 1:
                skip = torch.cat([skip, F.interpolate(lesion_logits, size=skip.shape[-2:], mode="bilinear",
                                                      align_corners=False)], 1)
            x = stage(x, skip)
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=False)


def build_decoder(model: LesionAttentionEfficientNet, taps: tuple[int, ...] = DEFAULT_TAPS,
                  branch_from: int | None = None) -> LesionDecoder:
    """A decoder for ``model``'s taps; with ``branch_from``, its own trainable copy of blocks ``branch_from`` on
    (started from the classifier's weights), so the deepest, most task-specific features can learn the outline
    while the classifier's own blocks stay frozen."""
    if not branch_from:
        return LesionDecoder(tap_channels(model, taps))
    if not 0 < branch_from < len(model._blocks) or taps[0] != len(model._blocks) - 1:
        raise ValueError(f"branch_from {branch_from} needs 0 < branch_from < {len(model._blocks)} and the last block "
                         "as the deepest tap")
    deep = nn.ModuleList(copy.deepcopy(model._blocks[i]) for i in range(branch_from, len(model._blocks)))
    return LesionDecoder(tap_channels(model, taps), deep_blocks=deep.requires_grad_(True), branch_from=branch_from)


def outline_logits(model: LesionAttentionEfficientNet, decoder: LesionDecoder, inputs: torch.Tensor,
                   taps: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, S, S) normalised input -> (class logits (N, classes), outline logits (N, 1, S, S)).

    The encoder runs without gradients (it is frozen); the decoder as its own mode says.
    """
    branch = decoder.branch_from
    with torch.no_grad():
        encoded = encode(model, inputs, tuple(taps) + ((branch - 1,) if branch else ()))
    features = [encoded.taps[i] for i in taps]
    if decoder.deep_blocks is not None:
        x = encoded.taps[branch - 1]
        for block in decoder.deep_blocks:
            x = block(x, drop_connect_rate=None)
        features[0] = x
    return encoded.logits, decoder(features, encoded.lesion_logits, tuple(inputs.shape[-2:]))


def outline_probability(model: LesionAttentionEfficientNet, decoder: LesionDecoder, inputs: torch.Tensor,
                        taps: tuple[int, ...], flip_average: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(class logits of the unmirrored pass (N, classes), outline probability (N, S, S)); with ``flip_average``
    the mean of the image's and its mirror image's probabilities (mirrored back), chosen on validation."""
    logits, outline = outline_logits(model, decoder, inputs, taps)
    prob = torch.sigmoid(outline[:, 0])
    return logits, (with_mirror(model, decoder, inputs, taps, prob) if flip_average else prob)


def with_mirror(model: LesionAttentionEfficientNet, decoder: LesionDecoder, inputs: torch.Tensor,
                taps: tuple[int, ...], prob: torch.Tensor) -> torch.Tensor:
    """The mean of ``prob`` (the image's outline probability) and its mirror image's, mirrored back. A pass of
    its own: serving runs it outside the scope gate's capture, which must see the image alone."""
    mirrored = torch.sigmoid(outline_logits(model, decoder, inputs.flip(-1), taps)[1][:, 0]).flip(-1)
    return (prob + mirrored) / 2


def load_outline_decoder(model_dir: str | Path, card: ModelCard, model: nn.Module) -> LesionDecoder | None:
    """The model folder's outline decoder (None when its card records none), its SHA-256 checked against the card.

    The folder's SHA256SUMS, checked when the model loaded, covers the file too; the card's own hash ties the
    decoder to this card, so a decoder copied from another model is refused.
    """
    entry = card.outline
    if not entry:
        return None
    if int(entry.get("input_size") or card.input.size) != card.input.size:
        raise ModelLoadError(f"the lesion-outline decoder in {Path(model_dir)} was trained at {entry['input_size']} px, "
                             f"but it shares the classifier's {card.input.size} px pass; retrain it for this model")
    path = Path(model_dir) / entry.get("file", OUTLINE_FILE)
    if not path.is_file():
        raise ModelLoadError(f"the model card records a lesion-outline decoder, but {path.name} is missing from "
                             f"{Path(model_dir)}; reinstall the model folder as released")
    if sha256_file(path) != entry.get("sha256"):
        raise ModelLoadError(f"{path.name} in {Path(model_dir)} does not match the SHA-256 in the model card; "
                             "reinstall the model folder as released")
    decoder = build_decoder(model, tuple(entry["taps"]), entry.get("branch_from"))
    try:
        decoder.load_state_dict(load_file(str(path)), strict=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise ModelLoadError(f"{path.name} does not fit this model's encoder: {e}") from e
    return decoder.eval().requires_grad_(False)
