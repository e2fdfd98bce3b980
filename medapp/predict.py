"""The prediction service shared by the app, the CLI and batch jobs: image -> :class:`Prediction`.

Everything the model needs (architecture, preprocessing, temperature, threshold, scope gate, CAM layer) comes
from the model folder's card, so serving cannot drift from training. A :class:`Predictor` is loaded once per
process and may be shared by many app sessions: model calls are serialised with a lock, and every CAM releases
its hooks.

Probabilities are those of the unaugmented image, the view the card's temperature and threshold were fitted on
(Guo et al. 2017); test-time augmentation (mirror and +/-4% shifts) only measures how stable P(malignant) is.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .calibrate import softmax
from .card import CARD_FILE, MALIGNANT, ModelCard
from .checkpoint import load_model
from .errors import ModelLoadError
from .explain import DEFAULT_CAM_METHOD, check_cam_method, compute_cam, resolve_layers
from .imaging import MedicalImage
from .likelihood import LikelihoodCategory, categorize_likelihood, format_probability
from .models import cam_target_layer
from .preprocess import SquareGeometry, compute_geometry, normalize, resize_to_square, restore_geometry
from .quality import QualityFlag, assess_quality, describe_flag
from .scope import ScopeGate

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
MODEL_DIR_ENV = "MEDAPP_MODEL_DIR"
TTA_SHIFT = 0.04  # shift views move the image by 4% of the input size, within training's translate augmentation
# Low confidence: P(malignant) moves this much (std) across TTA views, or sits this close to the threshold.
UNCERTAINTY_LIMIT = 0.10
THRESHOLD_MARGIN = 0.05
OUTSIDE_INTENDED_USE = "Outside intended use: this image does not look like the breast ultrasound the model was " \
                       "trained on, so no result should be read from it"


def default_model_dir() -> Path:
    """``$MEDAPP_MODEL_DIR``, or the single folder under ``models/`` that holds a model card."""
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    found = sorted(p.parent for p in MODELS_DIR.glob(f"*/{CARD_FILE}")) if MODELS_DIR.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelLoadError(f"no shipped model under {MODELS_DIR} (expected models/<name>/{CARD_FILE}); "
                             f"train one, or point {MODEL_DIR_ENV} or --model at a model folder")
    names = ", ".join(p.name for p in found)
    raise ModelLoadError(f"several models under {MODELS_DIR} ({names}); choose one with --model or {MODEL_DIR_ENV}")


@dataclass
class Prediction:
    """One image's result. ``heatmap`` is (H, W) float32 in [0, 1] over the original image, or None."""

    probabilities: dict[str, float]
    p_malignant: float
    threshold: float
    decision: bool
    decision_text: str
    label: str
    category: LikelihoodCategory
    uncertainty: float
    low_confidence: bool
    in_scope: bool
    scope_score: float
    scope_threshold: float
    quality_flags: list[str]
    out_of_scope_reasons: list[str]
    heatmap: np.ndarray | None
    cam_method: str
    cam_target: str
    model: dict[str, str]
    timing_ms: dict[str, float]
    notes: list[str] = field(default_factory=list)
    image_size: tuple[int, int] = (0, 0)  # (height, width) of the original image
    tta_views: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no heatmap): the fields of ``predict --json``."""
        return {
            "label": self.label,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "p_malignant": round(self.p_malignant, 6),
            "threshold": self.threshold,
            "decision": self.decision,
            "decision_text": self.decision_text,
            "category": self.category.code,
            "category_label": self.category.label,
            "uncertainty": round(self.uncertainty, 6),
            "low_confidence": self.low_confidence,
            "in_scope": self.in_scope,
            "scope_score": round(self.scope_score, 4),
            "scope_threshold": round(self.scope_threshold, 4),
            "quality_flags": list(self.quality_flags),
            "out_of_scope_reasons": list(self.out_of_scope_reasons),
            "cam_method": self.cam_method,
            "cam_target": self.cam_target,
            "image_size": list(self.image_size),
            "tta_views": self.tta_views,
            "model": dict(self.model),
            "timing_ms": {k: round(v, 2) for k, v in self.timing_ms.items()},
            "notes": list(self.notes),
        }


def tta_views(squares: torch.Tensor, shift: float = TTA_SHIFT) -> torch.Tensor:
    """(N, S, S) squares in [0, 1] -> (V, N, S, S): identity first, left-right mirror, then four shifts.

    Shifts fill with black, as the letterbox does; ultrasound is never mirrored top-bottom (the probe is on top).
    """
    size = squares.shape[-1]
    s = max(1, round(size * shift))
    padded = F.pad(squares, (s, s, s, s))
    views = [squares, squares.flip(-1)]
    for dy, dx in ((0, s), (0, -s), (s, 0), (-s, 0)):
        views.append(padded[:, s - dy : s - dy + size, s - dx : s - dx + size])
    return torch.stack(views)


class Predictor:
    """A loaded model folder: ``predict(image)`` -> :class:`Prediction`. Thread-safe."""

    def __init__(self, model: nn.Module, card: ModelCard, gate: ScopeGate, *, model_dir: Path | None = None,
                 explain_config: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.model.requires_grad_(False)  # inference only; CAM gradients start at the target layer
        self.card = card
        self.gate = gate
        self.model_dir = model_dir
        # how heatmaps are made: the card's "explain" entry (target_layer, method, flip_average, shift, smooth)
        cfg = dict(explain_config if explain_config is not None else card.explain)
        self.explain_config = cfg
        self.target_layer = (resolve_layers(model, cfg["target_layer"]) if cfg.get("target_layer")
                             else [cam_target_layer(card.architecture, model)])
        names = {id(m): name for name, m in model.named_modules()}
        self.target_layer_name = "+".join(names.get(id(m), type(m).__name__) for m in self.target_layer)
        self.default_cam_method = check_cam_method(cfg.get("method", DEFAULT_CAM_METHOD))
        self.flip_average = bool(cfg.get("flip_average", True))
        # CAM views' diagonal shift as a share of the input size (0: mirror only)
        self.cam_shift = round(float(cfg.get("shift", 0.0)) * card.input.size)
        # Gaussian smoothing of the map, std as a share of the input size (0: none)
        self.cam_smooth = float(cfg.get("smooth", 0.0)) * card.input.size
        self._lock = threading.RLock()

    @classmethod
    def from_dir(cls, model_dir: str | Path | None = None) -> Predictor:
        """Load ``model_dir`` (default :func:`default_model_dir`), verifying the weights' SHA-256 against the card."""
        model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        card, model = load_model(model_dir)
        return cls(model, card, ScopeGate.load(model_dir, card), model_dir=model_dir)

    @property
    def model_info(self) -> dict[str, str]:
        return {"name": self.card.name, "version": self.card.version, "sha256": self.card.weights_sha256}

    def _class_index(self, target: str | int | None, default: int) -> int:
        names = self.card.class_names
        if target is None:
            return default
        if isinstance(target, int) and 0 <= target < len(names):
            return target
        if target in names:
            return names.index(target)
        raise ValueError(f"unknown CAM target {target!r}; choose one of: {', '.join(names)}")

    def predict(self, image: MedicalImage, *, cam_method: str | None = None, target: str | None = None,
                tta: bool = True, explain: bool = True, allow_slow_cam: bool = False) -> Prediction:
        """Predict one image; see :meth:`predict_batch`."""
        return self.predict_batch([image], cam_method=cam_method, target=target, tta=tta, explain=explain,
                                  allow_slow_cam=allow_slow_cam)[0]

    def predict_batch(self, images: Sequence[MedicalImage], *, cam_method: str | None = None,
                      target: str | None = None, tta: bool = True, explain: bool = True,
                      allow_slow_cam: bool = False) -> list[Prediction]:
        """Predict several images in one batched forward pass (and one batched CAM).

        ``target`` is the class name the heatmap explains (default: each image's predicted class). ``timing_ms``
        holds each stage's time divided by the batch size.
        """
        if not images:
            return []
        method = check_cam_method(cam_method or self.default_cam_method, allow_slow_cam)
        spec, n = self.card.input, len(images)
        timing: dict[str, float] = {}
        t0 = t = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal t
            now = time.perf_counter()
            timing[stage] = (now - t) * 1000.0 / n
            t = now

        squares = torch.from_numpy(np.stack([resize_to_square(im.pixels, spec) for im in images]))
        geometries = [compute_geometry(*im.pixels.shape, spec.size, spec.resize) for im in images]
        flags = [assess_quality(im.pixels) for im in images]
        views = tta_views(squares) if tta else squares[None]
        n_views = views.shape[0]
        x = normalize(views.reshape(-1, spec.size, spec.size), spec)
        lap("preprocess")
        with self._lock:
            with torch.no_grad():
                with self.gate.capture(self.model) as acts:
                    logits = self.model(x).float().numpy()
                lap("forward")
                if self.gate.layers:
                    scores = self.gate.score_captured(acts, n)  # identity views come first
                else:
                    scores = self.gate.score(self.model, self.card.architecture, x[:n])
                lap("scope")
            probs = softmax(logits, self.card.temperature).reshape(n_views, n, -1)
            heatmaps: list[np.ndarray | None] = [None] * n
            labels = probs[0].argmax(axis=1)
            targets = [self._class_index(target, int(i)) for i in labels]
            if explain:
                maps = compute_cam(self.model, self.target_layer, x[:n], targets, method, allow_slow=allow_slow_cam,
                                   flip_average=self.flip_average, shift=self.cam_shift,
                                   fill=-spec.mean / spec.std, smooth=self.cam_smooth)
                lap("cam")
                heatmaps = [_restore(m, g) for m, g in zip(maps, geometries)]
                lap("restore")
        total = (time.perf_counter() - t0) * 1000.0 / n
        timing["total"] = total
        return [self._build(images[i], probs[:, i], float(scores[i]), flags[i], heatmaps[i], method, targets[i],
                            dict(timing), n_views) for i in range(n)]

    def _build(self, image: MedicalImage, probs: np.ndarray, score: float, flags: list[QualityFlag],
               heatmap: np.ndarray | None, method: str, target: int, timing: dict[str, float],
               n_views: int) -> Prediction:
        """probs: (V, C) calibrated probabilities over the views, the unaugmented view first."""
        names, card = self.card.class_names, self.card
        m = card.malignant_index
        p = float(probs[0, m])
        uncertainty = float(probs[:, m].std()) if n_views > 1 else 0.0
        label = names[int(probs[0].argmax())]
        reasons = [describe_flag(f, image.pixels.shape) for f in flags]
        gate_pass = bool(self.gate.passes(np.array([score]))[0])
        if not gate_pass:
            reasons.append(f"image content is unlike the breast-ultrasound training images (scope score "
                           f"{score:.2f}, limit {self.gate.threshold:.2f}); the model was not made for it")
        in_scope = not reasons
        decision = p >= card.threshold
        if not in_scope:
            decision_text = OUTSIDE_INTENDED_USE
        elif decision:
            decision_text = (f"P(malignant) {format_probability(p)} is at or above the operating threshold "
                             f"{card.threshold:.0%}: "
                             "flagged as suspicious for malignancy")
        else:
            decision_text = (f"P(malignant) {format_probability(p)} is below the operating threshold "
                             f"{card.threshold:.0%}: "
                             "not flagged")
        low_conf = uncertainty > UNCERTAINTY_LIMIT or abs(p - card.threshold) < THRESHOLD_MARGIN
        notes = list(image.notes)
        if n_views > 1:
            notes.append(f"uncertainty: std of P(malignant) over {n_views} test-time views (mirror, shifts)")
        return Prediction(
            probabilities={name: float(probs[0, j]) for j, name in enumerate(names)},
            p_malignant=p,
            threshold=float(card.threshold),
            decision=bool(decision),
            decision_text=decision_text,
            label=label,
            category=categorize_likelihood(p, label=label, threshold=card.threshold),
            uncertainty=uncertainty,
            low_confidence=bool(low_conf),
            in_scope=in_scope,
            scope_score=score,
            scope_threshold=float(self.gate.threshold),
            quality_flags=[f.value for f in flags],
            out_of_scope_reasons=reasons,
            heatmap=heatmap,
            cam_method=method,
            cam_target=names[target],
            model=self.model_info,
            timing_ms=timing,
            notes=notes,
            image_size=tuple(image.pixels.shape),
            tta_views=n_views,
        )

    def explain(self, image: MedicalImage, *, cam_method: str | None = None, target: str | None = None,
                allow_slow_cam: bool = False) -> tuple[np.ndarray, str]:
        """Only the heatmap: ((H, W) float32 in [0, 1], explained class name). For localisation scoring."""
        pred = self.predict(image, cam_method=cam_method, target=target, tta=False, explain=True,
                            allow_slow_cam=allow_slow_cam)
        assert pred.heatmap is not None
        return pred.heatmap, pred.cam_target


def _restore(square_map: np.ndarray, geometry: SquareGeometry) -> np.ndarray:
    """(S, S) map over the model input -> (H, W) float32 in [0, 1] over the original image, max rescaled to 1."""
    out = np.clip(restore_geometry(square_map, geometry), 0.0, 1.0)
    peak = float(out.max())
    return (out / peak).astype(np.float32) if peak > 0 else out.astype(np.float32)


__all__ = ["MALIGNANT", "Prediction", "Predictor", "default_model_dir", "tta_views"]
