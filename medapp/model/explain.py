"""Where the model looked: class activation maps through pytorch-grad-cam, and an overlay for eyes.

A new CAM method is one entry in :data:`CAM_METHODS`. :func:`run_cam` builds a fresh CAM object per call and
always releases its hooks (also when it fails), so a model shared by many app sessions never accumulates hooks
(trap 5 of ../shared/STYLE.md); the caller serialises calls with a lock.

The map is averaged over views, each mapped back, as pytorch-grad-cam's ``aug_smooth`` does with its test-time
transforms: optionally the left-right mirror (which makes the map of a mirrored image exactly the mirrored map)
and small diagonal shifts (which smooth the coarse 4x4-8x8 grid of deep layers). The same pass returns every
view's logits, which the predictor uses as its test-time augmentation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam import AblationCAM, EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from .views import View, cam_views, merge_view_maps, view_batch

DEFAULT_CAM_METHOD = "gradcam"
# Selvaraju et al. 2017 (Grad-CAM); Chattopadhay et al. 2018 (Grad-CAM++); Draelos & Carin 2020 (HiResCAM);
# Jiang et al. 2021 (LayerCAM); Muhammad & Yeasin 2020 (EigenCAM); Wang et al. 2020 (Score-CAM);
# Desai & Ramaswamy 2020 (Ablation-CAM).
CAM_METHODS: dict[str, type[BaseCAM]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
}
# One forward pass per activation channel (hundreds to a thousand): seconds per image on a CPU.
SLOW_CAM_METHODS = frozenset({"scorecam", "ablationcam"})
# What each method shows, in one plain line for the app's "advanced" heatmap menu (the card's default is shown
# first as the recommended one, without a menu).
CAM_DESCRIPTIONS = {
    "gradcam": "Grad-CAM: regions whose features raised the estimate, averaged per channel; coarse",
    "gradcam++": "Grad-CAM++: like Grad-CAM, weighting each region's own contribution; finds the whole lesion more "
                 "often here",
    "hirescam": "HiResCAM: sharper, element by element; can show a ring around a lesion with a cold centre",
    "layercam": "LayerCAM: fine-grained; can show a ring around a lesion with a cold centre",
    "eigencam": "EigenCAM: the strongest pattern in the features, whatever the estimate; not specific to malignancy",
    "scorecam": "Score-CAM: tests each feature map's effect on the estimate; slow (seconds per image)",
    "ablationcam": "Ablation-CAM: removes each feature map and measures the drop; slow (seconds per image)",
}


def cam_label(method: str) -> str:
    """The name people read ("Grad-CAM++"), from :data:`CAM_DESCRIPTIONS`."""
    return CAM_DESCRIPTIONS.get(method, method).split(":")[0]


def list_cam_methods(include_slow: bool = False) -> list[str]:
    """Selectable CAM method names, the default first; the slow ones only when asked for."""
    return [m for m in CAM_METHODS if include_slow or m not in SLOW_CAM_METHODS]


def check_cam_method(method: str, allow_slow: bool = False) -> str:
    """Validate a method name; raises ValueError listing the valid ones."""
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of: {', '.join(list_cam_methods(True))}")
    if method in SLOW_CAM_METHODS and not allow_slow:
        raise ValueError(f"CAM method {method!r} takes seconds per image on a CPU; enable slow methods explicitly "
                         f"(allow_slow=True / --allow-slow-cam) or choose one of: {', '.join(list_cam_methods())}")
    return method


def _cut_graph_hook(_module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    """Start the autograd graph at the target layer: backward then runs through the head only (frozen weights).

    The clone keeps the output a non-leaf, so an in-place activation after the layer (``ReLU(inplace=True)``)
    still works.
    """
    return output.detach().requires_grad_(True).clone()


@dataclass
class CamResult:
    """``maps`` (N, S, S) float32 in [0, 1]; ``logits`` (V*N, classes) of the views the maps were averaged over,
    view-major, from the same forward pass (so test-time augmentation costs no second pass)."""

    maps: np.ndarray
    logits: torch.Tensor


def run_cam(model: nn.Module, target_layer: nn.Module | list[nn.Module], x: torch.Tensor,
            class_index: int | list[int], method: str = DEFAULT_CAM_METHOD, *, allow_slow: bool = False,
            views: list[View] | None = None, fill: float = 0.0, smooth: float = 0.0) -> CamResult:
    """Class activation maps for a batch, and the model's logits on every view.

    ``x`` (N, C, S, S) normalised model input; ``class_index`` one class for all or one per image. Several
    target layers give the mean of their (each max-scaled) maps, as pytorch-grad-cam aggregates them (fusing a
    coarse and a finer stage, as LayerCAM's authors do, sharpens the 4x4 map of the last stage).

    The map is averaged over ``views`` (from :func:`cam_views`; default the image and its mirror): optionally
    the mirror, and diagonal moves filled with ``fill`` (the normalised black), every map moved back. Shifts
    move the coarse activation grid under the image and so raise the map's effective resolution (Morbidelli et
    al. 2020, "Augmented Grad-CAM: heat-maps super resolution through augmentation"). ``smooth`` > 0 then
    applies a Gaussian of that std (px) to damp single-cell peaks of shallow layers' maps.

    Maps are each scaled to max 1 (all zeros where the class has no positive evidence). Hooks are released
    before returning, also on error.
    """
    cam_class = CAM_METHODS[check_cam_method(method, allow_slow)]
    n = x.shape[0]
    indices = [class_index] * n if isinstance(class_index, int) else list(class_index)
    if len(indices) != n:
        raise ValueError(f"got {len(indices)} class indices for {n} images")
    views = views or cam_views()
    batch = view_batch(x, views, fill)
    targets = [ClassifierOutputTarget(int(i)) for i in indices] * len(views)
    layers = list(target_layer) if isinstance(target_layer, (list, tuple)) else [target_layer]
    # cut at the layer that runs first (module order), so gradients still reach every target layer;
    # registered before CAM's hooks, so those see its output
    order = {id(m): i for i, m in enumerate(model.modules())}
    cut = min(layers, key=lambda m: order.get(id(m), 0)).register_forward_hook(_cut_graph_hook)
    cam: BaseCAM | None = None
    try:
        cam = cam_class(model=model, target_layers=layers)
        maps = cam(input_tensor=batch, targets=targets)
        logits = cam.outputs.detach().float()
    finally:
        cut.remove()
        if cam is not None:
            # not `with cam:`, whose __exit__ swallows IndexError with a print
            cam.activations_and_grads.release()
            cam.outputs = None
        model.zero_grad(set_to_none=True)
    maps = torch.from_numpy(np.nan_to_num(np.asarray(maps, dtype=np.float32)))
    out = merge_view_maps(maps, views, n).numpy()
    if smooth > 0:
        from scipy.ndimage import gaussian_filter

        out = gaussian_filter(out, sigma=(0, smooth, smooth), mode="nearest")
    peak = out.reshape(n, -1).max(axis=1).reshape(n, 1, 1)
    return CamResult(np.where(peak > 0, out / np.maximum(peak, 1e-12), 0.0).astype(np.float32), logits)


@functools.lru_cache(maxsize=16)
def _colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of a matplotlib colormap (a table lookup is ~20x faster than the call)."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError as e:
        raise ValueError(f"unknown colormap {name!r}; use a matplotlib colormap name such as jet, turbo, "
                         "inferno or viridis") from e
    return (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 RGB through a matplotlib colormap (256 levels)."""
    levels = (np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return _colormap_lut(colormap)[levels]


def overlay_heatmap(display_rgb: np.ndarray, heatmap: np.ndarray, *, opacity: float = 0.5,
                    colormap: str = "jet") -> np.ndarray:
    """Blend a heatmap onto the image: (H, W, 3) uint8 and (H, W) in [0, 1] -> (H, W, 3) uint8.

    ``opacity`` in [0, 1] is the heatmap's weight (0 shows the image alone).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    image = np.asarray(display_rgb)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got shape {image.shape} dtype {image.dtype}")
    if heatmap.shape != image.shape[:2]:
        raise ValueError(f"heatmap shape {heatmap.shape} does not match the image's {image.shape[:2]}")
    colour = colorize(heatmap, colormap).astype(np.float32)
    out = image.astype(np.float32) * (1.0 - opacity) + colour * opacity
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def colorbar_image(length: int = 256, thickness: int = 16, *, colormap: str = "jet",
                   vertical: bool = True) -> np.ndarray:
    """A colour bar for the legend: (length, thickness, 3) uint8, high values at the top (or right if horizontal)."""
    ramp = np.linspace(1.0, 0.0, length, dtype=np.float32) if vertical else np.linspace(0.0, 1.0, length,
                                                                                          dtype=np.float32)
    bar = colorize(ramp, colormap)
    if vertical:
        return np.repeat(bar[:, None, :], thickness, axis=1)
    return np.repeat(bar[None, :, :], thickness, axis=0)
