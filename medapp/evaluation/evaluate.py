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

from ..data.datasets import Split, load_breastmnist, load_mask, load_records
from ..data.manifest import Record
from ..data.near_duplicates import busi_near_duplicate_free_test
from ..errors import SiteProfileError
from ..intake.imaging import load_image
from ..model.calibrate import softmax
from ..model.checkpoint import load_model
from ..model.inference import headline_views, predict_logits
from ..model.preprocess import resize_to_square
from ..serving.likelihood import categorize_likelihood
from ..serving.predict import Predictor
from .localization import evaluate_localization
from .metrics import (
    binary_auc,
    bootstrap_auc_ci,
    curve_points,
    expected_calibration_error,
    multiclass_summary,
    operating_point,
    reliability_bins,
)
from .outline_metrics import OutlineCase, outline_report, score_case

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


def category_rates(is_malignant: np.ndarray, is_normal: np.ndarray, categories: list[str]) -> dict[str, float]:
    """How the wording reads on this set: the share of cancers shown as "normal" or the lowest-suspicion band
    (BI-RADS 3 range), which must stay near zero, and the share of normal images shown as "normal"."""
    low = np.array([c in ("normal", "3") for c in categories])
    normal = np.array([c == "normal" for c in categories])
    return {"malignant_shown_low": float(low[is_malignant].mean()) if is_malignant.any() else float("nan"),
            "normal_shown_normal": float(normal[is_normal].mean()) if is_normal.any() else float("nan")}


def squares_and_scope(predictor: Any, records: list[Record],
                      batch_size: int = 16) -> tuple[np.ndarray, np.ndarray, list[OutlineCase | None]]:
    """Each image decoded once: its (S, S) model-size square (as training caches it), whether the app would
    report on it (the Predictor's own scope gate and quality checks), and, when the model outlines lesions, its
    outline scored against the radiologists' masks (None for an image without a lesion mask or without a decoder)."""
    squares, in_scope, outlines = [], [], []
    outlining = predictor.outline_decoder is not None
    for i in range(0, len(records), batch_size):
        batch = records[i : i + batch_size]
        images = [load_image(r.path) for r in batch]
        squares += [resize_to_square(im.pixels, predictor.card.input) for im in images]
        predictions = predictor.predict_batch(images, tta=False, explain=False)
        in_scope += [p.in_scope for p in predictions]
        for record, prediction in zip(batch, predictions, strict=True):
            truth = load_mask(record) if outlining and record.masks else None
            outlines.append(score_case(prediction.lesion, truth, prediction.in_scope)
                            if truth is not None and truth.any() else None)
    return np.stack(squares), np.array(in_scope), outlines


def outline_section(outlines: list[OutlineCase | None], devices: list[str], threshold: float) -> dict[str, Any]:
    """The ``outline`` section: the Predictor's outline (what the app shows) against the union of the radiologists'
    masks on every image that has a lesion mask, and per scanner when there are several."""
    cases = [c for c in outlines if c is not None]
    section: dict[str, Any] = {
        "definition": "Dice and IoU of the outline the app shows (every outlined lesion) with the union of the "
                      "radiologists' masks at the image's resolution; HD95 in pixels over outlined lesions; a lesion "
                      "image with no outline counts Dice 0 (missed); out-of-scope images get no outline and are "
                      "counted apart (outline_skipped_out_of_scope), scored as Dice 0 in all_lesion_images and left "
                      "out of in_scope; agreement compares the principal outlined lesion with one radiologist lesion",
        "outline_threshold": threshold,
        **outline_report(cases),
    }
    if len(set(devices)) > 1:
        section["per_device"] = {
            device: {"device": device, **outline_report([c for c, d in zip(outlines, devices, strict=True)
                                                         if c is not None and d == device])}
            for device in sorted(set(devices))}
    return section


def subgroup_reports(key: str, values: list[str], threshold: float, is_mal: np.ndarray, p_mal: np.ndarray,
                     p_raw: np.ndarray, in_scope: np.ndarray, n_boot: int) -> dict[str, dict[str, Any]]:
    """The binary report (without curves) and scope pass rate of each value of ``key`` (e.g. each scanner)."""
    out = {}
    for value in sorted(set(values)):
        rows = np.array([v == value for v in values])
        report = binary_report(threshold, is_mal[rows], p_mal[rows], p_raw[rows], n_boot)
        report.pop("curves")
        out[value] = {key: value, "n": int(rows.sum()), **report, "scope_pass_rate": float(in_scope[rows].mean())}
    return out


def evaluate_manifest(model_dir: str | Path, dataset: str = "busi", split: str = "test", *, n_boot: int = 2000,
                      localization: bool = False, profile: str | None = None) -> dict[str, Any]:
    """Score a manifest dataset's split (BUSI, BUS-BRA, ...): malignant vs rest on the calibrated headline, which
    for a dataset without normal images (BUS-BRA) is malignant vs benign; per scanner when there are several.
    ``profile``: a site profile's calibration and threshold instead of the card's."""
    predictor = Predictor.from_dir(model_dir, profile=profile)
    card = predictor.card
    threshold = predictor.threshold
    records = load_records(dataset, Split.parse(split))
    squares, in_scope, outlines = squares_and_scope(predictor, records)
    views = headline_views(card.tta_headline, card.explain, card.input)
    logits = predict_logits(predictor.model, squares, card.input, views=views)
    labels = np.array([card.class_names.index(r.label) for r in records])
    probs, probs_raw = predictor.calibrated(logits), softmax(logits)
    m = card.malignant_index
    is_mal = labels == m
    devices = [r.device for r in records]
    categories = [categorize_likelihood(float(p[m]), label=card.class_names[int(p.argmax())],
                                        threshold=threshold, normal_ceiling=card.serving.normal_ceiling).code
                  for p in probs]
    result: dict[str, Any] = {
        "model": card.name, "version": card.version, "weights_sha256": card.weights_sha256,
        **({"site_profile": predictor.profile.to_dict()} if predictor.profile is not None else {}),
        "dataset": dataset, "split": split, "n": len(records),
        "auc_definition": "malignant vs " + ("rest" if "normal" in {r.label for r in records} else "benign"),
        **binary_report(threshold, is_mal, probs[:, m], probs_raw[:, m], n_boot),
        **multiclass_summary(labels, probs, len(card.class_names)),
        "class_names": list(card.class_names),
        "temperature": card.temperature,
        "scope_pass_rate": float(in_scope.mean()),
        **category_rates(labels == m, labels == card.class_names.index("normal"), categories),
        "anchors": ANCHORS if dataset == "busi" else [],
        "predictions": [{"image": r.image, "label": r.label, "p_malignant": float(p), "in_scope": bool(s),
                         "category": c, "device": r.device}
                        for r, p, s, c in zip(records, probs[:, m], in_scope, categories, strict=True)],
    }
    if predictor.outline_decoder is not None:
        result["outline"] = outline_section(outlines, devices, float(card.outline["threshold"]))
        for row, case in zip(result["predictions"], outlines, strict=True):
            row["dice"] = None if case is None else case.score.dice
            row["hd95_px"] = None if case is None or case.score.missed else case.score.hd95_px
            row["outline_status"] = (None if case is None else "out_of_scope" if case.out_of_scope
                              else "missed" if case.score.missed else "outlined")
    if len(set(devices)) > 1:
        result["per_device"] = subgroup_reports("device", devices, threshold, is_mal, probs[:, m],
                                                probs_raw[:, m], in_scope, n_boot)
    if dataset == "busi" and split == "test":
        clean = {r.image for r in busi_near_duplicate_free_test()}
        subset = ["duplicate_free" if r.image in clean else "near_copy_outside_test" for r in records]
        result["near_duplicates"] = subgroup_reports("subset", subset, threshold, is_mal, probs[:, m],
                                                     probs_raw[:, m], in_scope, n_boot)
    if localization:
        result["localization"] = evaluate_localization(predictor, records)
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
             n_boot: int = 2000, profile: str | None = None) -> dict[str, Any]:
    """Score a model folder on ``dataset``'s ``split``; returns the metrics dict and writes nothing.

    Writing it into the model folder is an explicit, separate step
    (:func:`medapp.reporting.model_folder.publish_evaluation`, ``evaluate --update-model``).
    """
    if dataset == "breastmnist":
        if profile:
            raise SiteProfileError("a site profile applies to a hospital's own images, not to BreastMNIST's 28 px "
                                   "thumbnails; evaluate BreastMNIST without --profile")
        return evaluate_breastmnist(model_dir, split, n_boot=n_boot)
    return evaluate_manifest(model_dir, dataset, split, n_boot=n_boot, localization=localization, profile=profile)
