"""Scope gate: is an image breast ultrasound at all, whatever hospital or scanner it came from?

Score: the log-odds that the image is *not* breast ultrasound, from a logistic regression on per-channel feature
statistics of the network's late stage (each channel's spatial mean and standard deviation: the texture
statistics of Gatys et al. 2015, used for out-of-distribution detection by Sastry & Oore 2020). The positives are
every training site's training images; the negatives are outlier images (:mod:`medapp.data.outliers`:
photographs, other modalities, maps, drawn phantoms, text, gratings, noise), the outlier exposure of Hendrycks,
Mazeika & Dietterich 2019. An image passes when the score is at most 0: more likely breast ultrasound than not.

Why not a distance to the training images (the previous gate, a Mahalanobis distance of the same statistics
thresholded at the 95% conformal quantile of validation scores): it recognised the hospitals it was fitted on,
not ultrasound. Fitted on BUSI alone it passed 4% of BUS-BRA's images, fitted on BUS-BRA alone 21% of BUSI's
(docs/design_choices.md): any image from a third site would have been refused. A classifier that has seen what
lies outside draws its line between ultrasound and everything else, so the threshold is its decision boundary,
not a quantile of one site's scores; fitted on one site it passes 98.7-100% of the other's test images.

Why the late stage alone: with the early stage added the leave-one-site-out and held-out-outlier-family checks
were the same, and one 128 px CT slice passed (docs/design_choices.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from ..errors import ModelLoadError
from .card import SCOPE_FILE, InputSpec, ModelCard
from .checkpoint import sha256_file
from .preprocess import normalize
from .registry import architecture_info

METHOD = "outlier_exposure_logistic"
REGULARISATION_C = 0.1  # inverse L2 strength on standardised features (chosen on validation, design_choices.md)
PASS_THRESHOLD = 0.0  # the decision boundary: log-odds 0, as likely breast ultrasound as not
_TENSORS = ("mean", "scale", "coef")


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
    """``score(...)`` -> (N,) log-odds against breast ultrasound (higher is further out); ``passes`` applies the
    threshold. The linear model on standardised features is stored as plain arrays, so serving needs no sklearn."""

    def __init__(self, layers: tuple[str, ...], mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: float, threshold: float = PASS_THRESHOLD) -> None:
        if not layers or not (np.shape(mean) == np.shape(scale) == np.shape(coef)) or np.ndim(coef) != 1:
            raise ValueError("scope gate needs layers and one mean, scale and coefficient per feature")
        self.layers = tuple(layers)
        self.mean, self.scale, self.coef = (np.asarray(a, dtype=np.float64) for a in (mean, scale, coef))
        self.intercept = float(intercept)
        self.threshold = float(threshold)

    def capture(self, model: nn.Module) -> AbstractContextManager[dict[str, torch.Tensor]]:
        """Record the gate's layers' outputs during forward passes inside the block; hooks removed on exit."""
        return capture_activations(model, self.layers)

    def score_features(self, features: list[np.ndarray]) -> np.ndarray:
        """Per-layer (N, D) features -> (N,) scores: minus the logistic regression's log-odds of ultrasound."""
        x = np.concatenate([np.atleast_2d(f) for f in features], axis=1)
        if x.shape[1] != self.coef.shape[0]:
            raise ModelLoadError(f"the scope gate expects {self.coef.shape[0]} features, the model gives "
                                 f"{x.shape[1]}; refit the gate (`python -m medapp calibrate --model DIR`)")
        return -(((x - self.mean) / self.scale) @ self.coef + self.intercept)

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

    def save(self, path: Path) -> None:
        save_file({"mean": torch.from_numpy(self.mean), "scale": torch.from_numpy(self.scale),
                   "coef": torch.from_numpy(self.coef), "intercept": torch.tensor([self.intercept])}, str(path))

    @classmethod
    def load(cls, model_dir: str | Path, card: ModelCard) -> ScopeGate:
        path = Path(model_dir) / SCOPE_FILE
        if not path.is_file():
            raise ModelLoadError(f"{SCOPE_FILE} missing in {model_dir}; the model folder is incomplete")
        if not card.scope_sha256:
            raise ModelLoadError(f"the model card in {model_dir} records no scope_sha256, so the scope gate cannot "
                                 "be verified; reinstall the model folder as released")
        if sha256_file(path) != card.scope_sha256:
            raise ModelLoadError(f"{SCOPE_FILE} in {model_dir} does not match the model card's checksum; the file "
                                 "was changed or corrupted — reinstall the model")
        tensors = {k: v.double().numpy() for k, v in load_file(str(path)).items()}
        if card.scope.get("method") != METHOD or "layers" not in card.scope or not all(
                k in tensors for k in (*_TENSORS, "intercept")):
            raise ModelLoadError(f"the scope gate in {model_dir} is an earlier kind ({card.scope.get('method')}); "
                                 "refit the gate (`python -m medapp calibrate --model DIR`)")
        return cls(tuple(card.scope["layers"]), *(tensors[k] for k in _TENSORS), float(tensors["intercept"][0]),
                   float(card.scope["threshold"]))


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


def fit_gate(model: nn.Module, in_scope_squares: np.ndarray, outlier_squares: np.ndarray,
             spec: InputSpec) -> ScopeGate:
    """Logistic regression, breast ultrasound (the training images) against the outliers, each class weighted
    to equal total weight; nothing is written. Saved as float64, so serving computes exactly the fitted function."""
    layers = architecture_info(model).scope_layers
    x = np.concatenate([np.concatenate(extract_layer_features(model, layers, s, spec), axis=1)
                        for s in (in_scope_squares, outlier_squares)])
    y = np.r_[np.ones(len(in_scope_squares)), np.zeros(len(outlier_squares))]
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    clf = LogisticRegression(C=REGULARISATION_C, class_weight="balanced", max_iter=5000)
    clf.fit((x - scaler.mean_) / scale, y)
    return ScopeGate(layers, scaler.mean_, scale, clf.coef_[0], float(clf.intercept_[0]))


def fit_scope_gate(model: nn.Module, card: ModelCard, train_squares: np.ndarray, val_squares: np.ndarray,
                   outlier_squares: np.ndarray, model_dir: str | Path) -> ScopeGate:
    """:func:`fit_gate` on the training images, save ``scope.safetensors``, record the gate and its validation
    pass rate in the card."""
    gate = fit_gate(model, train_squares, outlier_squares, card.input)
    path = Path(model_dir) / SCOPE_FILE
    gate.save(path)
    val_scores = gate.score_features(extract_layer_features(model, gate.layers, val_squares, card.input))
    card.scope = {
        "method": METHOD,
        "features": "per-channel spatial mean and std of activations",
        "layers": list(gate.layers),
        "threshold": gate.threshold,
        "rule": f"logistic regression (C={REGULARISATION_C}), {len(train_squares)} training images against "
                f"{len(outlier_squares)} outlier images; passes at log-odds >= 0 (more likely breast ultrasound "
                "than not)",
        "val_pass_rate": float(gate.passes(val_scores).mean()),
        "n_val": len(val_squares),
    }
    card.scope_sha256 = sha256_file(path)
    return gate
