"""The prediction service shared by the app, the CLI and batch jobs: image -> :class:`Prediction`.

Everything the model needs (architecture, preprocessing, temperature, threshold, scope gate, CAM layer, the
serving policy's limits) comes from the model folder's card, so serving cannot drift from training. A
:class:`Predictor` is loaded once per process and may be shared by many app sessions: model calls are serialised
with a lock, and every CAM releases its hooks.

The headline logits come from :mod:`medapp.model.inference`, the path evaluation and calibration use too. The
test-time views are the heatmap's, so one forward-backward pass gives both the heatmap and the views' logits;
when the views move an image's predicted class, its heatmap is redone for the class reported. Probabilities are
softmax(headline / T) (Guo et al. 2017); the spread of P(malignant) over the views is the uncertainty.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..intake.medical_image import MedicalImage
from ..model.calibrate import softmax
from ..model.card import ModelCard
from ..model.checkpoint import default_model_dir, load_model
from ..model.explain import check_cam_method, run_cam
from ..model.inference import headline_logits, view_logits
from ..model.lesion_outline import LesionDecoder, load_outline_decoder, outline_logits, with_mirror
from ..model.preprocess import (
    SquareGeometry,
    compute_geometry,
    normalize,
    normalized_black,
    resize_to_square,
    restore_geometry,
)
from ..model.registry import cam_target_layer, resolve_layers
from ..model.scope import ScopeGate
from ..model.site_profile import SiteProfile, load_profile
from ..model.views import configured_views
from .lesion_finding import NO_LESION_OUTLINED, LesionFinding, find_lesions
from .likelihood import LikelihoodCategory, categorize_likelihood, decision_sentence, decision_tone
from .quality import QualityFlag, assess_quality, describe_flag

log = logging.getLogger(__name__)

# How a result calibrated by the model card (no site profile) names its calibration, on the page and in the PDF.
SHIPPED_CALIBRATION = "shipped calibration (model card)"
PREDICTED_TARGET = "predicted"  # explain each image's reported class instead of malignancy
OUTSIDE_INTENDED_USE = "Outside intended use: this image does not look like the breast ultrasound the model was " \
                       "trained on, so no result should be read from it"


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
    # the lesion as the model outlines it (mask, measurements), or None and why (``lesion_note``)
    lesion: LesionFinding | None = None
    lesion_note: str = ""

    @property
    def decision_tone(self) -> str:
        """FLAGGED, BIOPSY_RANGE or NOT_FLAGGED (:func:`medapp.serving.likelihood.decision_tone`): what the badge
        says, consistent with the category."""
        return decision_tone(self.p_malignant, self.threshold, self.category)

    @property
    def calibration(self) -> str:
        """Which calibration made these probabilities: a site profile's label, or the shipped card's."""
        return self.model.get("calibration", SHIPPED_CALIBRATION)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no heatmap): the fields of ``predict --json``."""
        return {
            "label": self.label,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "p_malignant": round(self.p_malignant, 6),
            "threshold": self.threshold,
            "decision": self.decision,
            "decision_text": self.decision_text,
            "decision_tone": self.decision_tone if self.in_scope else None,
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
            "lesion": self.lesion.to_dict() if self.lesion is not None else None,
            "lesion_note": self.lesion_note,
        }


class StageTimer:
    """Milliseconds per image of each stage of a batch, for ``Prediction.timing_ms``."""

    def __init__(self, n_images: int) -> None:
        self.n = n_images
        self.start = self.last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = (now - self.last) * 1000.0 / self.n
        self.last = now

    def total(self) -> dict[str, float]:
        return {**self.ms, "total": (time.perf_counter() - self.start) * 1000.0 / self.n}


class Predictor:
    """A loaded model folder: ``predict(image)`` -> :class:`Prediction`. Thread-safe."""

    def __init__(self, model: nn.Module, card: ModelCard, gate: ScopeGate, *, model_dir: Path | None = None,
                 explain_config: dict[str, Any] | None = None, profile: SiteProfile | None = None,
                 outline_decoder: LesionDecoder | None = None) -> None:
        self.model = model.eval()
        self.model.requires_grad_(False)  # inference only; CAM gradients start at the target layer
        self.card = card
        self.gate = gate
        self.model_dir = model_dir
        # a site's own calibration and threshold on top of the card's (medapp.model.site_profile), or None
        self.profile = profile
        # how heatmaps are made: the card's "explain" entry (target_layer, method, flip_average, shift, smooth);
        # a benchmark may pass another (bench/cam_choice.py)
        cfg = dict(explain_config if explain_config is not None else card.explain)
        self.explain_config = cfg
        self.target_layer = (resolve_layers(model, cfg["target_layer"]) if cfg.get("target_layer")
                             else [cam_target_layer(model)])
        names = {id(m): name for name, m in model.named_modules()}
        self.target_layer_name = "+".join(names.get(id(m), type(m).__name__) for m in self.target_layer)
        self.default_cam_method = check_cam_method(cfg.get("method") or card.explain["method"])
        # (mirror, dy, dx) of the views the heatmap and the test-time augmentation share; identity first
        self.views = configured_views(cfg, card.input.size)
        # Gaussian smoothing of the map, std as a share of the input size (0: none)
        self.cam_smooth = float(cfg.get("smooth", 0.0)) * card.input.size
        self.fill = normalized_black(card.input)  # what shifted views and the letterbox hold
        # the lesion-outline decoder on the same encoder (card.outline), run in the headline's forward pass
        self.outline_decoder = outline_decoder
        self._lock = threading.RLock()

    @classmethod
    def from_dir(cls, model_dir: str | Path | None = None, *, profile: str | None = None) -> Predictor:
        """Load ``model_dir`` (default :func:`~medapp.model.checkpoint.default_model_dir`), verifying the weights'
        SHA-256 against the card; ``profile`` names a site profile saved beside it (refused if fitted for other
        weights)."""
        model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        card, model = load_model(model_dir)
        site = load_profile(model_dir, profile, card) if profile else None
        return cls(model, card, ScopeGate.load(model_dir, card), model_dir=model_dir, profile=site,
                   outline_decoder=load_outline_decoder(model_dir, card, model))

    @property
    def model_info(self) -> dict[str, str]:
        info = {"name": self.card.name, "version": self.card.version, "sha256": self.card.weights_sha256}
        if self.profile is not None:
            info["site_profile"] = self.profile.name
            info["calibration"] = self.profile.label
        return info

    @property
    def threshold(self) -> float:
        """The operating threshold in force: the site profile's, else the card's."""
        return float(self.profile.threshold if self.profile is not None else self.card.threshold)

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """(N, C) headline logits -> the probabilities shown: softmax(logits / T), then the site profile's map."""
        probs = softmax(logits, self.card.temperature)
        return self.profile.apply(probs, self.card.malignant_index) if self.profile is not None else probs

    def _class_index(self, target: str | int | None, predicted: int) -> int:
        """The class a heatmap explains: malignant by default (what raised the malignancy estimate, the number
        the clinician acts on, whatever the top class); ``"predicted"`` the reported class; or a class name."""
        names = self.card.class_names
        if target is None:
            return self.card.malignant_index
        if target == PREDICTED_TARGET:
            return predicted
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

        ``target`` is the class name the heatmap explains (default: malignant; ``"predicted"``: each image's
        reported class). ``tta`` False
        skips the test-time views unless the card's headline is their mean. ``timing_ms`` holds each stage's
        time divided by the batch size.
        """
        if not images:
            return []
        method = check_cam_method(cam_method or self.default_cam_method, allow_slow_cam)
        spec, n = self.card.input, len(images)
        timer = StageTimer(n)
        x = normalize(torch.from_numpy(np.stack([resize_to_square(im.pixels, spec) for im in images])), spec)
        geometries = [compute_geometry(*im.pixels.shape, spec.size, spec.resize) for im in images]
        flags = [assess_quality(im.pixels, self.card.serving.quality, im.display) for im in images]
        timer.lap("preprocess")
        use_views = len(self.views) > 1 and (tta or self.card.tta_headline)
        with self._lock:
            with torch.no_grad(), self.gate.capture(self.model) as acts:
                logits, shared_outline = self._forward(x)
            timer.lap("forward")
            scores = self.gate.score_captured(acts, n)
            timer.lap("scope")
            maps: list[np.ndarray] = []
            views_logits = None
            if explain:  # the CAM's pass doubles as the test-time views' forward
                guess = [self._class_index(target, int(i)) for i in logits.argmax(dim=1)]
                maps, views_logits = self._cam(x, guess, method, allow_slow_cam)
                timer.lap("cam_and_tta")
            elif use_views:
                with torch.no_grad():
                    views_logits = view_logits(self.model, x, self.views, self.fill)
                timer.lap("tta")
            head = headline_logits(logits, views_logits, self.card.tta_headline)
            targets = [self._class_index(target, int(i)) for i in head.argmax(dim=1)]
            heatmaps: list[np.ndarray | None] = [None] * n
            if explain:
                redo = [i for i in range(n) if targets[i] != guess[i]]
                if redo:  # the views moved the predicted class: explain the class that is reported
                    again, _ = self._cam(x[redo], [targets[i] for i in redo], method, allow_slow_cam)
                    for j, i in enumerate(redo):
                        maps[i] = again[j]
                timer.lap("cam_redo")
                heatmaps = [_restore(m, g) for m, g in zip(maps, geometries, strict=True)]
                timer.lap("restore")
        probs = self.calibrated(head.numpy())
        view_probs = (self.calibrated(views_logits.reshape(-1, head.shape[1]).numpy())
                      .reshape(len(self.views), n, -1) if views_logits is not None and use_views else None)
        predictions = [self._build(images[i], probs[i], None if view_probs is None else view_probs[:, i],
                                   float(scores[i]), flags[i], heatmaps[i], method, targets[i]) for i in range(n)]
        self._add_lesions(images, predictions, x, shared_outline, geometries)
        timer.lap("outline")
        timing = timer.total()
        for prediction in predictions:
            prediction.timing_ms = dict(timing)
        return predictions

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits, and with an outline decoder the (N, S, S) outline probability of the image itself from the
        same encoder pass (run inside the scope gate's capture: one pass of the image, nothing else)."""
        if self.outline_decoder is None:
            return self.model(x).float(), None
        logits, outline = outline_logits(self.model, self.outline_decoder, x, tuple(self.card.outline["taps"]))
        return logits.float(), torch.sigmoid(outline[:, 0])

    def _add_lesions(self, images: Sequence[MedicalImage], predictions: list[Prediction], x: torch.Tensor,
                     outline: torch.Tensor | None, geometries: list[SquareGeometry]) -> None:
        """Each in-scope image's outlined lesions, measured (:func:`find_lesions`); the outline's mirror pass (when
        the card says ``flip_average``) and the mapping back to the original image only for those images. An image
        the model is not qualified to judge gets no outline, and ``lesion_note`` says why."""
        if outline is None:
            for prediction in predictions:
                prediction.lesion_note = "this model has no lesion-outline decoder"
            return
        judged = [i for i, p in enumerate(predictions) if p.in_scope]
        for i in set(range(len(predictions))) - set(judged):
            predictions[i].lesion_note = "no outline: the image is outside the model's intended use"
        if not judged:
            return
        prob = outline[judged]
        if self.card.outline.get("flip_average"):
            with self._lock, torch.no_grad():  # a model call: serialised like the others
                prob = with_mirror(self.model, self.outline_decoder, x[judged], tuple(self.card.outline["taps"]), prob)
        threshold = float(self.card.outline["threshold"])
        for i, square in zip(judged, prob.numpy(), strict=True):
            predictions[i].lesion = find_lesions(restore_geometry(square, geometries[i]), threshold, images[i])
            predictions[i].lesion_note = "" if predictions[i].lesion is not None else NO_LESION_OUTLINED

    def _cam(self, x: torch.Tensor, classes: list[int], method: str,
             allow_slow: bool) -> tuple[list[np.ndarray], torch.Tensor]:
        """Each image's (S, S) map for its class, and the (V, N, classes) logits of the views it averaged."""
        result = run_cam(self.model, self.target_layer, x, classes, method, allow_slow=allow_slow, views=self.views,
                         fill=self.fill, smooth=self.cam_smooth)
        return list(result.maps), result.logits.reshape(len(self.views), len(x), -1)

    def _build(self, image: MedicalImage, probs: np.ndarray, view_probs: np.ndarray | None, score: float,
               flags: list[QualityFlag], heatmap: np.ndarray | None, method: str, target: int) -> Prediction:
        """probs: (C,) calibrated headline probabilities; view_probs: (V, C) each test-time view's, or None."""
        names, card, policy = self.card.class_names, self.card, self.card.serving
        m = card.malignant_index
        p = float(probs[m])
        n_views = 1 if view_probs is None else len(view_probs)
        uncertainty = float(view_probs[:, m].std()) if n_views > 1 else 0.0
        label = names[int(probs.argmax())]
        reasons = [describe_flag(f, policy.quality, image.pixels.shape) for f in flags]
        gate_pass = bool(self.gate.passes(np.array([score]))[0])
        if not gate_pass:
            reasons.append(f"image content does not look like breast ultrasound (scope score {score:.2f}, limit "
                           f"{self.gate.threshold:.2f}); the model was not made for it")
        in_scope = not reasons
        notes = list(image.notes)
        threshold = self.threshold
        if self.profile is not None:
            notes.append(f"{self.profile.label} (site profile; the shipped calibration and threshold are not used)")
        if n_views > 1:
            kinds = "mirror, shifts" if any(flip for flip, _, _ in self.views) else "shifts"
            notes.append(f"uncertainty: std of P(malignant) over {n_views} test-time views ({kinds})")
        category = categorize_likelihood(p, label=label, threshold=threshold, normal_ceiling=policy.normal_ceiling)
        return Prediction(
            probabilities={name: float(probs[j]) for j, name in enumerate(names)},
            p_malignant=p,
            threshold=threshold,
            decision=bool(p >= threshold),
            decision_text=decision_sentence(p, threshold, category) if in_scope else OUTSIDE_INTENDED_USE,
            label=label,
            category=category,
            uncertainty=uncertainty,
            low_confidence=bool(uncertainty > policy.uncertainty_limit
                                or abs(p - threshold) < policy.threshold_margin),
            in_scope=in_scope,
            scope_score=score,
            scope_threshold=float(self.gate.threshold),
            quality_flags=[f.value for f in flags],
            out_of_scope_reasons=reasons,
            heatmap=heatmap,
            cam_method=method,
            cam_target=names[target],
            model=self.model_info,
            timing_ms={},
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


__all__ = ["PREDICTED_TARGET", "Prediction", "Predictor"]
