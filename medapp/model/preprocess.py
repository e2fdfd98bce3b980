"""Preprocessing shared by training and serving, driven by the model card's :class:`InputSpec`.

Training caches the output of :func:`resize_to_square` and serving calls :func:`preprocess`, which uses the
same function, so what the network sees is identical in both (a test checks it). Augmentation is applied on top
of these squares in training only (``medapp.augment``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .card import InputSpec, ResizePolicy


@dataclass(frozen=True)
class SquareGeometry:
    """Where the original (H, W) image sits inside the square model input, to map heatmaps back."""

    height: int
    width: int
    size: int
    policy: str
    # region of the original that is used: rows [top, top+side_h), cols [left, left+side_w)
    src_top: int
    src_left: int
    src_h: int
    src_w: int
    # region of the square it lands in
    dst_top: int
    dst_left: int
    dst_h: int
    dst_w: int


def compute_geometry(height: int, width: int, size: int, policy: str) -> SquareGeometry:
    """Plan the resize of an (height, width) image into a (size, size) square under ``policy``."""
    policy = ResizePolicy.parse(policy)
    if policy is ResizePolicy.PAD:
        scale = size / max(height, width)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        return SquareGeometry(height, width, size, policy, 0, 0, height, width, (size - h) // 2, (size - w) // 2, h, w)
    if policy is ResizePolicy.CROP:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return SquareGeometry(height, width, size, policy, top, left, side, side, 0, 0, size, size)
    return SquareGeometry(height, width, size, policy, 0, 0, height, width, 0, 0, size, size)


def _resize(array: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of (N, C, h, w) float32 with antialiasing when shrinking (avoids aliasing speckle)."""
    if array.shape[-2:] == (height, width):
        return array
    shrinking = height < array.shape[-2] or width < array.shape[-1]
    return F.interpolate(array, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking)


def resize_to_square(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """(H, W) float32 in [0, 1] -> (size, size) float32 in [0, 1], by the card's resize policy."""
    if pixels.ndim != 2:
        raise ValueError(f"expected a (H, W) grayscale array, got shape {pixels.shape}")
    geo = compute_geometry(*pixels.shape, spec.size, spec.resize)
    src = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    src = src[geo.src_top : geo.src_top + geo.src_h, geo.src_left : geo.src_left + geo.src_w]
    resized = _resize(src[None, None], geo.dst_h, geo.dst_w)[0, 0].clamp_(0.0, 1.0)
    out = torch.zeros((spec.size, spec.size), dtype=torch.float32)
    out[geo.dst_top : geo.dst_top + geo.dst_h, geo.dst_left : geo.dst_left + geo.dst_w] = resized
    return out.numpy()


def normalize(square: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """(..., size, size) squares in [0, 1] -> (..., channels, size, size) normalised as the card says.

    A channel axis is always added, so (S, S) -> (C, S, S) and a batch (N, S, S) -> (N, C, S, S).
    """
    x = ((square - spec.mean) / spec.std).unsqueeze(-3)
    if spec.channels > 1:
        x = x.expand(*x.shape[:-3], spec.channels, *x.shape[-2:])
    return x


def normalized_black(spec: InputSpec) -> float:
    """Black (0) after normalisation: what the letterbox and the borders of shifted test-time views hold."""
    return -spec.mean / spec.std


def preprocess(pixels: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """(H, W) float32 in [0, 1] -> (channels, size, size) float32: exactly what training fed the network."""
    return normalize(torch.from_numpy(resize_to_square(pixels, spec)), spec)


def restore_geometry(heatmap: np.ndarray, geometry: SquareGeometry) -> np.ndarray:
    """(size, size) map over the model input -> (H, W) map over the original image (zeros outside the crop)."""
    hm = torch.from_numpy(np.ascontiguousarray(heatmap, dtype=np.float32))
    region = hm[geometry.dst_top : geometry.dst_top + geometry.dst_h, geometry.dst_left : geometry.dst_left + geometry.dst_w]
    region = _resize(region[None, None], geometry.src_h, geometry.src_w)[0, 0]
    out = torch.zeros((geometry.height, geometry.width), dtype=torch.float32)
    out[geometry.src_top : geometry.src_top + geometry.src_h, geometry.src_left : geometry.src_left + geometry.src_w] = region
    return out.numpy()
