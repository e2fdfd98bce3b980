"""Calibration on the validation split: temperature scaling and the operating threshold on P(malignant)."""

from __future__ import annotations

import numpy as np
import torch


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """One scalar T minimising the NLL of softmax(logits / T) (Guo et al. 2017, "On Calibration of Modern
    Neural Networks"). ``logits`` (N, C), ``labels`` (N,) int. T > 1 softens over-confident networks."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = exp(log_t) stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, C) logits -> (N, C) probabilities of softmax(logits / T), float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def choose_threshold(p_malignant: np.ndarray, is_malignant: np.ndarray, min_sensitivity: float = 0.90) -> float:
    """The highest threshold t with sensitivity(P >= t) >= ``min_sensitivity`` on these (validation) cases.

    Highest, because among thresholds that catch enough cancers it flags the fewest benign lesions.
    """
    p = np.asarray(p_malignant, dtype=np.float64)
    pos = np.sort(p[np.asarray(is_malignant, dtype=bool)])[::-1]
    if pos.size == 0:
        raise ValueError("cannot choose a threshold: no malignant cases in the calibration set")
    needed = int(np.ceil(min_sensitivity * pos.size))  # flag at least this many of the positives
    return float(pos[needed - 1])


def choose_threshold_every_site(p_malignant: np.ndarray, is_malignant: np.ndarray, site: np.ndarray,
                                min_sensitivity: float = 0.90) -> float:
    """The highest threshold that keeps validation sensitivity >= ``min_sensitivity`` at *every* site with cancers
    in the set (``site``: one label per case): the lowest of the sites' own :func:`choose_threshold`.

    Pooled, the larger or easier site can carry the target while the other falls short of it (the two-site model's
    pooled threshold caught 0.875 of BUS-BRA's validation cancers); a threshold that does not carry between sites
    should at least hold at each site it was set on.
    """
    p, y, site = np.asarray(p_malignant), np.asarray(is_malignant, dtype=bool), np.asarray(site)
    sites = [s for s in np.unique(site) if y[site == s].any()]
    if not sites:
        raise ValueError("cannot choose a threshold: no malignant cases in the calibration set")
    return min(choose_threshold(p[site == s], y[site == s], min_sensitivity) for s in sites)


def _log_odds(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(q) - np.log1p(-q)


def fit_platt(p_malignant: np.ndarray, is_malignant: np.ndarray, max_iter: int = 200) -> tuple[float, float]:
    """Slope a and intercept b minimising the NLL of sigmoid(a * logit(p) + b) (Platt 1999, on the log-odds).

    Unlike a temperature, the intercept can move every estimate up or down together, which is what a site with
    another cancer prevalence or another scanner gain needs (the model was systematically low at a new hospital).
    """
    x = torch.as_tensor(_log_odds(p_malignant))
    y = torch.as_tensor(np.asarray(is_malignant, dtype=np.float64))
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(params[0] * x + params[1], y)
        loss.backward()
        return loss

    opt.step(closure)
    slope, intercept = (float(v) for v in params.detach())
    return slope, intercept


def apply_platt(probs: np.ndarray, malignant_index: int, slope: float, intercept: float) -> np.ndarray:
    """(N, C) probabilities with P(malignant) remapped by Platt scaling; the other classes keep their ratio to
    each other and share what is left, so every row still sums to 1."""
    p = np.asarray(probs, dtype=np.float64)
    old = p[:, malignant_index]
    new = 1.0 / (1.0 + np.exp(-(slope * _log_odds(old) + intercept)))
    rest = np.clip(1.0 - old, 1e-12, None)
    out = p * ((1.0 - new) / rest)[:, None]
    out[:, malignant_index] = new
    return out
