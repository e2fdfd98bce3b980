"""Scope gate: does an image look like the breast ultrasound the model was trained on?

Mahalanobis distance of the penultimate features to the training distribution (Lee et al. 2018, "A Simple
Unified Framework for Detecting Out-of-Distribution Samples"), with a Ledoit-Wolf shrunk covariance because 546
training images cannot pin down a full covariance. The pass threshold is the validation split's 95th percentile,
so about 95% of in-scope images pass by construction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.covariance import LedoitWolf
from torch import nn

from .card import SCOPE_FILE, InputSpec, ModelCard
from .checkpoint import sha256_file
from .errors import ModelLoadError
from .models import penultimate_features
from .preprocess import normalize

IN_SCOPE_QUANTILE = 0.95


@torch.no_grad()
def extract_features(model: nn.Module, architecture: str, squares: np.ndarray, spec: InputSpec,
                     batch_size: int = 64) -> np.ndarray:
    """(N, S, S) squares in [0, 1] -> (N, D) float64 penultimate features."""
    model.eval()
    out = []
    for i in range(0, len(squares), batch_size):
        x = normalize(torch.from_numpy(squares[i : i + batch_size]), spec)
        out.append(penultimate_features(architecture, model, x).double())
    return torch.cat(out).numpy()


class ScopeGate:
    """Mahalanobis scorer: ``score(features) -> (N,)``; higher means further from the training images."""

    def __init__(self, mean: np.ndarray, precision: np.ndarray, threshold: float) -> None:
        self.mean = mean
        self.precision = precision
        self.threshold = threshold

    def score(self, features: np.ndarray) -> np.ndarray:
        d = np.atleast_2d(features) - self.mean
        return np.sqrt(np.einsum("nd,de,ne->n", d, self.precision, d).clip(min=0))

    def passes(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold

    @classmethod
    def load(cls, model_dir: str | Path, card: ModelCard) -> ScopeGate:
        path = Path(model_dir) / SCOPE_FILE
        if not path.is_file():
            raise ModelLoadError(f"{SCOPE_FILE} missing in {model_dir}; the model folder is incomplete")
        if card.scope_sha256 and sha256_file(path) != card.scope_sha256:
            raise ModelLoadError(f"{SCOPE_FILE} in {model_dir} does not match the model card's checksum")
        tensors = load_file(str(path))
        return cls(tensors["mean"].double().numpy(), tensors["precision"].double().numpy(),
                   float(card.scope["threshold"]))


def fit_scope_gate(model: nn.Module, card: ModelCard, train_squares: np.ndarray, val_squares: np.ndarray,
                   model_dir: str | Path) -> ScopeGate:
    """Fit on training features, set the threshold on validation, save ``scope.safetensors``, update the card."""
    train_f = extract_features(model, card.architecture, train_squares, card.input)
    val_f = extract_features(model, card.architecture, val_squares, card.input)
    lw = LedoitWolf().fit(train_f)
    gate = ScopeGate(lw.location_, lw.precision_, threshold=0.0)
    gate.threshold = float(np.quantile(gate.score(val_f), IN_SCOPE_QUANTILE))
    path = Path(model_dir) / SCOPE_FILE
    save_file({"mean": torch.from_numpy(gate.mean).float(), "precision": torch.from_numpy(gate.precision).float()},
              str(path))
    card.scope = {
        "method": "mahalanobis",
        "features": "penultimate (global-average-pooled)",
        "threshold": gate.threshold,
        "rule": f"{IN_SCOPE_QUANTILE:.0%} quantile of validation-split scores",
        "shrinkage": float(lw.shrinkage_),
    }
    card.scope_sha256 = sha256_file(path)
    return gate
