"""The one path from model-size squares to a model's headline logits.

Training's validation, calibration (temperature and threshold), evaluation and the Predictor all call these
functions, so what ``evaluate`` scores is exactly what the app shows (a test checks it on the same image).

A model's headline is the unaugmented image's logits or, when its card says ``tta_headline``, the mean of the
logits of the card's test-time views (:mod:`medapp.model.views`: the image and small diagonal shifts, the same
views the heatmap averages); its temperature and threshold were fitted on that same headline.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .card import InputSpec
from .preprocess import normalize, normalized_black
from .views import View, configured_views, view_batch


def headline_views(tta_headline: bool, explain: dict[str, Any], spec: InputSpec) -> list[View] | None:
    """The views whose mean logits are a model's headline (None: the unaugmented image alone).

    Arguments are the model card's (or, before the card exists, the training config's) ``tta_headline``,
    ``explain`` entry and input spec.
    """
    return configured_views(explain, spec.size) if tta_headline else None


def view_logits(model: nn.Module, x: torch.Tensor, views: list[View], fill: float) -> torch.Tensor:
    """(N, C, S, S) normalised input -> (V, N, classes) float32 logits of every view, in one forward pass."""
    return model(view_batch(x, views, fill)).float().reshape(len(views), len(x), -1)


def headline_logits(logits: torch.Tensor, views_logits: torch.Tensor | None, tta_headline: bool) -> torch.Tensor:
    """(N, classes) headline: the views' mean when the card calibrated on it, else the unaugmented ``logits``.

    ``views_logits`` (V, N, classes) from :func:`view_logits` (or the CAM pass, which computes the same views).
    """
    return views_logits.mean(0) if tta_headline and views_logits is not None else logits


@torch.no_grad()
def predict_logits(model: nn.Module, squares: np.ndarray, spec: InputSpec, batch_size: int = 64,
                   device: torch.device | None = None, views: list[View] | None = None) -> np.ndarray:
    """(N, S, S) squares in [0, 1] -> (N, classes) headline logits, model in eval mode.

    With ``views`` (from :func:`headline_views`) the mean of the views' logits, else the image's own.
    """
    model.eval()
    device = device or torch.device("cpu")
    out = []
    for i in range(0, len(squares), batch_size):
        x = normalize(torch.from_numpy(squares[i : i + batch_size]), spec).to(device)
        if views:
            out.append(view_logits(model, x, views, normalized_black(spec)).mean(0).cpu())
        else:
            out.append(model(x).float().cpu())
    return torch.cat(out).numpy()
