"""Does the heatmap land on the lesion? Pointing game and energy in mask against the radiologists' masks.

Pointing game (Zhang et al. 2018, "Top-down neural attention by excitation backprop", here without their 15 px
tolerance): a hit when the heatmap's maximum falls inside the lesion mask. Energy in mask: the share of heatmap
mass inside the mask (Wang et al. 2020, Score-CAM's "energy-based pointing game"). Both are scored beside a
centre prior, a Gaussian at the image centre, since lesions in BUSI sit near the middle of the frame and a
heatmap that merely points at the centre must not get credit for localising anything. Anchor: CAM reached 0.71
on breast-mass ultrasound (Byra et al., J Ultrason 2022).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..data.datasets import Record, load_mask
from ..intake.imaging import load_image
from ..model.explain import list_cam_methods

log = logging.getLogger(__name__)

CENTER_PRIOR = "center_prior"
CENTER_PRIOR_SIGMA = 0.25  # Gaussian std as a share of each side


def pointing_game_hit(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """True when the (first) maximum of an (H, W) heatmap lies inside the (H, W) bool mask."""
    _check_shapes(heatmap, mask)
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    return bool(mask[row, col])


def energy_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share in [0, 1] of the heatmap's (non-negative) mass inside the mask; 0 for an all-zero heatmap."""
    _check_shapes(heatmap, mask)
    h = np.clip(np.asarray(heatmap, dtype=np.float64), 0.0, None)
    total = h.sum()
    return float(h[mask].sum() / total) if total > 0 else 0.0


def center_prior(height: int, width: int, sigma: float = CENTER_PRIOR_SIGMA) -> np.ndarray:
    """(H, W) float32 Gaussian in [0, 1] peaked at the image centre, std ``sigma`` times each side."""
    y = (np.arange(height, dtype=np.float32) - (height - 1) / 2) / (sigma * height)
    x = (np.arange(width, dtype=np.float32) - (width - 1) / 2) / (sigma * width)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


def _check_shapes(heatmap: np.ndarray, mask: np.ndarray) -> None:
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap shape {heatmap.shape} differs from mask shape {mask.shape}")


def _summary(hits: list[bool], energies: list[float]) -> dict[str, float | int]:
    n = len(hits)
    return {"pointing_game": float(np.mean(hits)) if n else float("nan"),
            "energy_in_mask": float(np.mean(energies)) if n else float("nan"), "n": n}


def evaluate_localization(predictor: Any, records: Iterable[Record], *, methods: Sequence[str] | None = None,
                          target: str = "malignant") -> dict[str, Any]:
    """Score each CAM method and the centre prior on the records that have a non-empty lesion mask.

    ``predictor`` is a :class:`medapp.predict.Predictor`. ``target``: "malignant" explains the malignancy estimate
    (what the app shows), "predicted" the predicted class, "label" the true class. Returns ``{method:
    {"pointing_game", "energy_in_mask", "n"}, "center_prior": {...}, "default": name, ...}`` for
    ``metrics.json["localization"]``.
    """
    if target not in ("malignant", "predicted", "label"):
        raise ValueError(f"unknown localisation target {target!r}; choose one of: malignant, predicted, label")
    explained = {"malignant": None, "predicted": "predicted"}
    methods = list(methods) if methods is not None else list_cam_methods()
    scores: dict[str, tuple[list[bool], list[float]]] = {m: ([], []) for m in [*methods, CENTER_PRIOR]}
    for record in records:
        mask = load_mask(record)
        if not mask.any():
            continue
        image = load_image(record.path)
        for method in methods:
            heatmap, _ = predictor.explain(image, cam_method=method,
                                           target=record.label if target == "label" else explained[target])
            scores[method][0].append(pointing_game_hit(heatmap, mask))
            scores[method][1].append(energy_in_mask(heatmap, mask))
        prior = center_prior(*mask.shape)
        scores[CENTER_PRIOR][0].append(pointing_game_hit(prior, mask))
        scores[CENTER_PRIOR][1].append(energy_in_mask(prior, mask))
    out: dict[str, Any] = {name: _summary(*s) for name, s in scores.items()}
    out["default"] = predictor.default_cam_method
    out["target"] = target
    out["explain"] = {"target_layer": predictor.target_layer_name, "method": predictor.default_cam_method,
                      "views": [list(v) for v in predictor.views], "smooth_px": predictor.cam_smooth}
    log.info("localisation: %s", {k: v for k, v in out.items() if isinstance(v, dict)})
    return out
