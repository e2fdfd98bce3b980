"""Training-time augmentation with torchvision transforms v2, on (1, S, S) float32 squares in [0, 1].

Geometric: flips, small rotations, shifts and zoom (probe position and depth vary between scans). Intensity:
brightness, contrast and gamma (gain and dynamic-range settings differ between machines), multiplicative speckle
noise and blur (ultrasound's own texture and resolution vary). Which of these help was measured on validation.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2

from .config import AugmentConfig


class SpeckleNoise(nn.Module):
    """x * (1 + sigma * n), n ~ N(0, 1): multiplicative noise, the first-order model of ultrasound speckle."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma * float(torch.rand(()))
        return (x * (1.0 + sigma * torch.randn_like(x))).clamp_(0.0, 1.0)


class RandomGamma(nn.Module):
    """x ** g with log g uniform in [-max_log, max_log]: a monotone change of the display curve."""

    def __init__(self, max_log: float) -> None:
        super().__init__()
        self.max_log = max_log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = float(torch.empty(()).uniform_(-self.max_log, self.max_log).exp())
        return x.clamp(0.0, 1.0).pow(g)


def _geometric_steps(cfg: AugmentConfig) -> list[nn.Module]:
    steps: list[nn.Module] = []
    if cfg.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(cfg.hflip))
    if cfg.degrees or cfg.translate or cfg.scale_min != 1 or cfg.scale_max != 1:
        steps.append(v2.RandomAffine(degrees=cfg.degrees, translate=(cfg.translate, cfg.translate),
                                     scale=(cfg.scale_min, cfg.scale_max),
                                     interpolation=v2.InterpolationMode.BILINEAR))
    return steps


def _photometric_steps(cfg: AugmentConfig) -> list[nn.Module]:
    steps: list[nn.Module] = []
    if cfg.brightness or cfg.contrast:
        steps.append(v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast))
    if cfg.gamma > 0:
        steps.append(RandomGamma(cfg.gamma))
    if cfg.blur > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 1.0))], p=cfg.blur))
    if cfg.speckle > 0:
        steps.append(SpeckleNoise(cfg.speckle))
    if cfg.erase > 0:
        steps.append(v2.RandomErasing(p=cfg.erase, scale=(0.02, 0.1), value=0.0))
    return steps


def _compose(steps: list[nn.Module]) -> nn.Module:
    return v2.Compose(steps) if steps else nn.Identity()  # v2.Compose refuses an empty list


def build_train_transform(cfg: AugmentConfig) -> nn.Module:
    """The random transform applied to each training square; identity parts are left out."""
    return _compose(_geometric_steps(cfg) + _photometric_steps(cfg))


class PairedTransform(nn.Module):
    """Augment a (1, S, S) square and its (1, S, S) lesion mask: one draw of the geometry for both, intensity
    changes on the image only (so the mask still outlines the moved lesion)."""

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        self.geometric = _compose(_geometric_steps(cfg))
        self.photometric = _compose(_photometric_steps(cfg))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        both = self.geometric(torch.cat([image, mask]))
        return self.photometric(both[:1]), both[1:]
