"""Lesion attention: a segmentation head, supervised by the radiologists' BUSI masks, that gates the features.

Why: a classifier trained on 546 images with labels alone learns where lesions are only loosely, so its class
activation maps pointed at the lesion in about 6 of 10 test images. Here a small head on the stride-16 features
(``_blocks.<k>``) predicts the lesion, and every later stage sees those features multiplied by
``leak + (1 - leak) * sigmoid(lesion_logits)``: tissue the head calls lesion passes at full strength, the rest at
``leak`` (context such as posterior shadowing still reaches the classifier, only damped). The whole decision
flows through that gate, so a CAM on its attention map (``_lesion_gate.attention``: the attention weighted by
how much the class score gains from it) shows faithfully where the classifier looked (attention gates as in
Schlemper et al. 2019, "Attention gated networks"; mask-supervised attention as in Li et al. 2018, "Tell me
where to look"). Grad-CAM on the gate's output instead scored worse on the validation lesions, because lesions
are hypoechoic: their features are weaker than the surrounding tissue's even after the gate damps the latter.

In training mode the network returns ``(logits, lesion_logits)`` (as torchvision's Inception returns auxiliary
logits); in eval mode only logits, so serving, CAMs and the scope gate see a plain classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from efficientnet_lite_pytorch import EfficientNet
from torch import nn


class LesionHead(nn.Module):
    """(N, C, h, w) features -> (N, 1, h, w) lesion logits: 3x3 conv-BN-ReLU, then a 1x1 conv."""

    def __init__(self, in_channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden),
                                  nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LesionGate(nn.Module):
    """(features, lesion logits) -> features * (leak + (1 - leak) * attention), attention = sigmoid(logits).

    ``attention`` is a module of its own so that a CAM can hook it (``_lesion_gate.attention``): its (N, 1, h, w)
    output is the one spatial weighting every later stage sees.
    """

    def __init__(self, leak: float) -> None:
        super().__init__()
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"lesion gate leak must be in [0, 1], got {leak}")
        self.leak = leak
        self.attention = nn.Sigmoid()

    def forward(self, x: torch.Tensor, lesion_logits: torch.Tensor) -> torch.Tensor:
        return x * (self.leak + (1.0 - self.leak) * self.attention(lesion_logits))


class LesionAttentionEfficientNet(EfficientNet):
    """EfficientNet (efficientnet_lite_pytorch) with a lesion head and gate after ``_blocks[lesion_block]``.

    Build with ``LesionAttentionEfficientNet.from_name(...)`` then :meth:`attach_lesion`. Parameter names stay
    the base class's (``_blocks.N`` ...), so pretrained weights, the scope gate's layers and CAM layer paths stay
    valid; the new parts are ``_lesion_head`` and ``_lesion_gate``.
    """

    def attach_lesion(self, block: int, leak: float) -> LesionAttentionEfficientNet:
        if not -len(self._blocks) <= block < len(self._blocks):
            raise ValueError(f"lesion block {block} out of range: the network has {len(self._blocks)} blocks")
        self._lesion_block = block % len(self._blocks)
        self._lesion_head = LesionHead(self._blocks[self._lesion_block]._project_conv.out_channels)
        self._lesion_gate = LesionGate(leak)
        return self

    def features_and_lesion(self, inputs: torch.Tensor,
                            keep: dict[int, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C, S, S) -> (head features (N, 1280, S/32, S/32), lesion logits (N, 1, S/16, S/16)). ``keep``: a dict
        whose keys are block indices; each is filled with that block's output (after the gate at the lesion block),
        so the lesion-outline decoder reads the stages from this very pass."""
        x = self._swish(self._bn0(self._conv_stem(inputs)))
        lesion = None
        for idx, block in enumerate(self._blocks):
            rate = self._global_params.drop_connect_rate  # scaled by depth, as the base class does
            x = block(x, drop_connect_rate=rate * idx / len(self._blocks) if rate else rate)
            if idx == self._lesion_block:
                lesion = self._lesion_head(x)
                x = self._lesion_gate(x, lesion)
            if keep is not None and idx in keep:
                keep[idx] = x
        if lesion is None:
            raise RuntimeError("attach_lesion() was not called on this network")
        return self._swish(self._bn1(self._conv_head(x))), lesion

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Head features -> class logits (pooling, dropout, the linear layer)."""
        return self._fc(self._dropout(self._avg_pooling(features).flatten(1)))

    def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.features_and_lesion(inputs)[0]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features, lesion = self.features_and_lesion(inputs)
        logits = self.classify(features)
        return (logits, lesion) if self.training else logits


def lesion_loss(lesion_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy + soft Dice between (N, 1, h, w) logits and (N, S, S) masks in [0, 1].

    Masks are area-averaged down to the logits' grid (soft targets at lesion borders). Dice counts only images
    that have a lesion, since normal images' empty masks make Dice undefined; BCE teaches those to stay empty.
    """
    target = F.adaptive_avg_pool2d(masks[:, None].float(), lesion_logits.shape[-2:])
    bce = F.binary_cross_entropy_with_logits(lesion_logits, target)
    has_lesion = target.flatten(1).sum(1) > 0
    if not has_lesion.any():
        return bce
    prob = torch.sigmoid(lesion_logits)[has_lesion].flatten(1)
    tgt = target[has_lesion].flatten(1)
    dice = 1.0 - (2.0 * (prob * tgt).sum(1) + 1.0) / (prob.sum(1) + tgt.sum(1) + 1.0)
    return bce + dice.mean()
