"""Scope gate: does an image look like the breast ultrasound the model was trained on?

Score: Mahalanobis distance (Lee et al. 2018, "A Simple Unified Framework for Detecting Out-of-Distribution
Samples") of per-channel feature statistics, the spatial mean and standard deviation of each channel's activations
(the texture statistics of Gatys et al. 2015, used for out-of-distribution detection by Sastry & Oore 2020), at an
early and a late stage of the network. An early stage keeps pretrained weights (frozen or barely moved), so its
statistics describe ultrasound speckle and are not over-fitted to the training images; the late stage adds what
the classifier learned. Each layer's distance is divided by its median on the validation split and the two are
averaged. Covariances are Ledoit-Wolf shrunk (546 training images cannot pin down a full covariance).

Why not the penultimate features alone (the first version, since removed): after fine-tuning they sit so tightly
around the training images (median distance 22 vs 61 for validation on the first shipped model) that a
validation-quantile threshold passed only 87% of the test split while a cat photograph scored like an ultrasound.

Which two layers: the network's own :class:`~medapp.model.registry.ArchitectureInfo` names them, and the fitted
gate records them in the model card.

The pass threshold is the split-conformal 95% quantile of the validation scores (Vovk et al. 2005; Angelopoulos
& Bates 2021): the ceil((n + 1) * 0.95)-th smallest of n, so that a new in-scope image passes with probability at
least 95% (a plain 95th percentile of 78 scores promises only about 95%, and passed 94.9% of the test split with a
candidate model, docs/candidate_lesion_best_epoch/).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.covariance import LedoitWolf
from torch import nn

from ..errors import ModelLoadError
from .card import SCOPE_FILE, InputSpec, ModelCard
from .checkpoint import sha256_file
from .preprocess import normalize
from .registry import architecture_info

IN_SCOPE_QUANTILE = 0.95
METHOD = "mahalanobis_feature_statistics"


def feature_statistics(activation: torch.Tensor) -> np.ndarray:
    """(N, C, h, w) activations -> (N, 2C) float64: each channel's spatial mean, then its spatial std."""
    a = activation.detach().float()
    return torch.cat([a.mean(dim=(2, 3)), a.std(dim=(2, 3))], dim=1).double().numpy()


@contextmanager
def capture_activations(model: nn.Module, layers: tuple[str, ...]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the named layers' outputs during forward passes inside the block; hooks removed on exit."""
    modules = dict(model.named_modules())
    acts: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in layers:
            if name not in modules:
                raise ModelLoadError(f"scope gate layer {name!r} is not in the model; refit the gate "
                                     "(`python -m medapp calibrate --model DIR`)")
            handles.append(modules[name].register_forward_hook(
                lambda _m, _i, out, name=name: acts.__setitem__(name, out.detach())))
        yield acts
    finally:
        for handle in handles:
            handle.remove()


class ScopeGate:
    """``score(...)`` -> (N,) distances, higher is further from the training images; ``passes`` applies the limit."""

    def __init__(self, layers: tuple[str, ...], means: list[np.ndarray], precisions: list[np.ndarray],
                 scales: list[float], threshold: float) -> None:
        if not layers or not (len(means) == len(precisions) == len(scales) == len(layers)):
            raise ValueError("scope gate needs one mean, precision and scale per layer")
        self.layers = tuple(layers)
        self.means = means
        self.precisions = precisions
        self.scales = scales
        self.threshold = threshold

    def capture(self, model: nn.Module) -> AbstractContextManager[dict[str, torch.Tensor]]:
        """Record the gate's layers' outputs during forward passes inside the block; hooks removed on exit."""
        return capture_activations(model, self.layers)

    def score_features(self, features: list[np.ndarray]) -> np.ndarray:
        """Per-layer (N, D) features -> (N,) combined score: mean of each layer's distance / its scale."""
        total = 0.0
        for f, mean, precision, scale in zip(features, self.means, self.precisions, self.scales):
            d = np.atleast_2d(f) - mean
            total = total + np.sqrt(np.einsum("nd,de,ne->n", d, precision, d).clip(min=0)) / scale
        return np.asarray(total / len(features), dtype=np.float64)

    def score_captured(self, acts: dict[str, torch.Tensor], n: int) -> np.ndarray:
        """Scores of the first ``n`` rows of activations recorded by :meth:`capture`."""
        return self.score_features([feature_statistics(acts[name][:n]) for name in self.layers])

    @torch.no_grad()
    def score(self, model: nn.Module, x: torch.Tensor) -> np.ndarray:
        """(N, C, S, S) normalised input -> (N,) scores (runs a forward pass)."""
        model.eval()
        with self.capture(model) as acts:
            model(x)
        return self.score_captured(acts, x.shape[0])

    def passes(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold

    @classmethod
    def load(cls, model_dir: str | Path, card: ModelCard) -> ScopeGate:
        path = Path(model_dir) / SCOPE_FILE
        if not path.is_file():
            raise ModelLoadError(f"{SCOPE_FILE} missing in {model_dir}; the model folder is incomplete")
        if card.scope_sha256 and sha256_file(path) != card.scope_sha256:
            raise ModelLoadError(f"{SCOPE_FILE} in {model_dir} does not match the model card's checksum; the file "
                                 "was changed or corrupted — reinstall the model")
        if "layers" not in card.scope:
            raise ModelLoadError(f"the scope gate in {model_dir} names no layers (the first version's gate); refit "
                                 "the gate (`python -m medapp calibrate --model DIR`)")
        tensors = {k: v.double().numpy() for k, v in load_file(str(path)).items()}
        threshold = float(card.scope["threshold"])
        layers = tuple(card.scope["layers"])
        return cls(layers, [tensors[f"{i}.mean"] for i in range(len(layers))],
                   [tensors[f"{i}.precision"] for i in range(len(layers))], list(card.scope["scales"]), threshold)


@torch.no_grad()
def extract_layer_features(model: nn.Module, layers: tuple[str, ...], squares: np.ndarray, spec: InputSpec,
                           batch_size: int = 32) -> list[np.ndarray]:
    """(N, S, S) squares in [0, 1] -> per layer (N, 2C) float64 feature statistics."""
    model.eval()
    out: list[list[np.ndarray]] = [[] for _ in layers]
    with capture_activations(model, layers) as acts:
        for i in range(0, len(squares), batch_size):
            model(normalize(torch.from_numpy(squares[i : i + batch_size]), spec))
            for j, name in enumerate(layers):
                out[j].append(feature_statistics(acts[name]))
    return [np.concatenate(rows) for rows in out]


def conformal_threshold(scores: np.ndarray, coverage: float) -> float:
    """The ceil((n + 1) * coverage)-th smallest of n calibration scores (the largest when that exceeds n).

    For a new score exchangeable with them, P(new <= threshold) >= coverage (split conformal prediction).
    """
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    k = min(len(ordered), int(np.ceil((len(ordered) + 1) * coverage)))
    return float(ordered[k - 1])


def fit_gate(model: nn.Module, train_squares: np.ndarray, val_squares: np.ndarray,
             spec: InputSpec) -> tuple[ScopeGate, list[float]]:
    """Fit on training features, scale and threshold on validation; nothing is written. Returns the gate and each
    layer's Ledoit-Wolf shrinkage. Means and precisions are rounded to float32, as saved and served."""
    layers = architecture_info(model).scope_layers
    train_f = extract_layer_features(model, layers, train_squares, spec)
    val_f = extract_layer_features(model, layers, val_squares, spec)
    fits = [LedoitWolf().fit(f) for f in train_f]
    gate = ScopeGate(layers, [lw.location_ for lw in fits], [lw.precision_ for lw in fits], [1.0] * len(layers), 0.0)
    # each layer's distance in units of its median on validation, so layers of different width weigh alike
    for j in range(len(layers)):
        single = ScopeGate((layers[j],), [gate.means[j]], [gate.precisions[j]], [1.0], 0.0)
        gate.scales[j] = float(np.median(single.score_features([val_f[j]])))
    # the float32 that is saved, so the threshold matches exactly what serving computes
    gate.means = [torch.from_numpy(m).float().double().numpy() for m in gate.means]
    gate.precisions = [torch.from_numpy(p).float().double().numpy() for p in gate.precisions]
    gate.threshold = conformal_threshold(gate.score_features(val_f), IN_SCOPE_QUANTILE)
    return gate, [float(lw.shrinkage_) for lw in fits]


def fit_scope_gate(model: nn.Module, card: ModelCard, train_squares: np.ndarray, val_squares: np.ndarray,
                   model_dir: str | Path) -> ScopeGate:
    """:func:`fit_gate`, then save ``scope.safetensors`` and record the gate in the card."""
    gate, shrinkage = fit_gate(model, train_squares, val_squares, card.input)
    path = Path(model_dir) / SCOPE_FILE
    tensors = {}
    for j in range(len(gate.layers)):
        tensors[f"{j}.mean"] = torch.from_numpy(gate.means[j]).float()
        tensors[f"{j}.precision"] = torch.from_numpy(gate.precisions[j]).float()
    save_file(tensors, str(path))
    card.scope = {
        "method": METHOD,
        "features": "per-channel spatial mean and std of activations",
        "layers": list(gate.layers),
        "scales": gate.scales,
        "threshold": gate.threshold,
        "rule": f"split-conformal {IN_SCOPE_QUANTILE:.0%} quantile of validation-split scores "
                f"(ceil((n+1)*{IN_SCOPE_QUANTILE})-th smallest of n = {len(val_squares)})",
        "shrinkage": shrinkage,
    }
    card.scope_sha256 = sha256_file(path)
    return gate
