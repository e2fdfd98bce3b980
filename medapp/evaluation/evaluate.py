"""Evaluation: score a model folder on a held-out split; the metrics dict is what ``metrics.json`` holds.

Select on validation, report test: run ``--split test`` once per shipped model. The headline is malignant vs
rest on calibrated P(malignant); ``accuracy`` at P >= 0.5 matches MedMNIST's ACC, and sensitivity, specificity,
PPV and NPV are reported at the card's operating threshold.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import Split, load_breastmnist, load_busi_records, load_squares
from ..model.calibrate import softmax
from ..model.checkpoint import load_model
from ..model.inference import headline_views, predict_logits
from ..model.preprocess import resize_to_square
from .metrics import (
    binary_auc,
    bootstrap_auc_ci,
    curve_points,
    expected_calibration_error,
    multiclass_summary,
    operating_point,
    reliability_bins,
)

log = logging.getLogger(__name__)

# Published BreastMNIST test-split results this model is compared with (malignant vs rest, 156 images).
ANCHORS: list[dict[str, Any]] = [
    {"model": "ResNet-18 (28 px)", "auc": 0.901, "accuracy": 0.863,
     "source": "MedMNIST v2, Yang et al., Scientific Data 10:41 (2023), Table 3"},
    {"model": "ResNet-18 (224 px)", "auc": 0.891, "accuracy": 0.833,
     "source": "MedMNIST v2, Yang et al., Scientific Data 10:41 (2023), Table 3"},
    {"model": "ResNet-50 (28 px)", "auc": 0.857, "accuracy": 0.812,
     "source": "MedMNIST v2, Yang et al., Scientific Data 10:41 (2023), Table 3"},
    {"model": "ResNet-50 (224 px)", "auc": 0.866, "accuracy": 0.842,
     "source": "MedMNIST v2, Yang et al., Scientific Data 10:41 (2023), Table 3"},
    {"model": "auto-sklearn", "auc": 0.836, "accuracy": 0.803,
     "source": "MedMNIST v2, Yang et al., Scientific Data 10:41 (2023), Table 3"},
    {"model": "AutoKeras", "auc": 0.871, "accuracy": 0.831,
     "source": "MedMNIST v2, Yang et al., Scientific Data 10:41 (2023), Table 3"},
    {"model": "Google AutoML Vision", "auc": 0.919, "accuracy": 0.861,
     "source": "MedMNIST v2, Yang et al., Scientific Data 10:41 (2023), Table 3"},
    {"model": "AlexNet (128 px), best published", "auc": 0.940, "accuracy": 0.906,
     "source": "MedMNIST+, Doerrich et al., arXiv:2404.15786 (2024)"},
]


def binary_report(threshold: float, is_malignant: np.ndarray, p_mal: np.ndarray, p_mal_raw: np.ndarray,
                  n_boot: int) -> dict[str, Any]:
    """Malignant-vs-rest metrics (calibrated ``p_mal``, uncalibrated ``p_mal_raw``) at the card's ``threshold``,
    shared by the BUSI and BreastMNIST modes."""
    auc = binary_auc(is_malignant, p_mal)
    at_threshold = operating_point(is_malignant, p_mal, threshold)
    return {
        "auc": auc,
        "auc_ci": list(bootstrap_auc_ci(is_malignant, p_mal, n_boot=n_boot)),
        "accuracy": operating_point(is_malignant, p_mal, 0.5).accuracy,
        "threshold": threshold,
        **{k: getattr(at_threshold, k) for k in ("sensitivity", "specificity", "ppv", "npv")},
        "n_positive": int(is_malignant.sum()),
        "n_negative": int((~is_malignant).sum()),
        "ece": expected_calibration_error(is_malignant, p_mal),
        "ece_uncalibrated": expected_calibration_error(is_malignant, p_mal_raw),
        "curves": {
            **curve_points(is_malignant, p_mal),
            "reliability": {"calibrated": reliability_bins(is_malignant, p_mal),
                            "uncalibrated": reliability_bins(is_malignant, p_mal_raw)},
        },
    }


def evaluate_busi(model_dir: str | Path, split: str = "test", *, n_boot: int = 2000,
                  localization: bool = False) -> dict[str, Any]:
    card, model = load_model(model_dir)
    records = load_busi_records(Split.parse(split))
    views = headline_views(card.tta_headline, card.explain, card.input)
    logits = predict_logits(model, load_squares(records, card.input, progress=True), card.input, views=views)
    labels = np.array([card.class_names.index(r.label) for r in records])
    probs, probs_raw = softmax(logits, card.temperature), softmax(logits)
    m = card.malignant_index
    is_mal = labels == m
    result: dict[str, Any] = {
        "model": card.name, "version": card.version, "weights_sha256": card.weights_sha256,
        "dataset": "busi", "split": split, "n": len(records),
        **binary_report(card.threshold, is_mal, probs[:, m], probs_raw[:, m], n_boot),
        **multiclass_summary(labels, probs, len(card.class_names)),
        "class_names": list(card.class_names),
        "temperature": card.temperature,
        "anchors": ANCHORS,
        "predictions": [{"image": r.image, "label": r.label, "p_malignant": float(p)}
                        for r, p in zip(records, probs[:, m], strict=True)],
    }
    if localization:
        from ..serving.predict import Predictor
        from .localization import evaluate_localization, scope_pass_rate

        predictor = Predictor.from_dir(model_dir)
        result["localization"] = evaluate_localization(predictor, records)
        result["scope_pass_rate"] = scope_pass_rate(predictor, records)
    return result


def evaluate_breastmnist(model_dir: str | Path, split: str = "test", *, n_boot: int = 2000) -> dict[str, Any]:
    """The same model and preprocessing on the official 28 px file (upsampled by the card's resize policy)."""
    card, model = load_model(model_dir)
    data = load_breastmnist(split)
    squares = np.stack([resize_to_square(img.astype(np.float32) / 255.0, card.input) for img in data.images])
    logits = predict_logits(model, squares, card.input,
                            views=headline_views(card.tta_headline, card.explain, card.input))
    m = card.malignant_index
    p_mal, p_raw = softmax(logits, card.temperature)[:, m], softmax(logits)[:, m]
    return {"model": card.name, "version": card.version, "weights_sha256": card.weights_sha256,
            "dataset": "breastmnist", "split": split, "n": len(p_mal),
            **binary_report(card.threshold, data.malignant, p_mal, p_raw, n_boot), "anchors": ANCHORS}


def evaluate(model_dir: str | Path, *, split: str = "test", dataset: str = "busi", localization: bool = False,
             n_boot: int = 2000) -> dict[str, Any]:
    """Score a model folder on ``dataset``'s ``split``; returns the metrics dict and writes nothing.

    Writing it into the model folder is an explicit, separate step
    (:func:`medapp.reporting.model_folder.publish_evaluation`, ``evaluate --update-model``).
    """
    if dataset == "busi":
        return evaluate_busi(model_dir, split, n_boot=n_boot, localization=localization)
    if dataset == "breastmnist":
        return evaluate_breastmnist(model_dir, split, n_boot=n_boot)
    raise ValueError(f"unknown dataset {dataset!r}; choose one of: busi, breastmnist")
