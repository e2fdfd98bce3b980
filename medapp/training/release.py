"""The release step after training: calibrate on validation, fit the scope gate, write the model card.

``train`` calls :func:`finalize_model` at the end of its run; ``python -m medapp calibrate --model DIR`` calls
:func:`recalibrate`, which redoes the same step on a trained folder (weights untouched). This is where a model
folder's contract is written; evaluation only reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ..model.calibrate import choose_threshold_every_site, fit_temperature, softmax
from ..model.card import CARD_FILE, CLASS_NAMES, INTENDED_USE, OUT_OF_SCOPE_USE, WEIGHTS_FILE, InputSpec, ModelCard
from ..model.checkpoint import load_weights, sha256_file
from ..model.explain import DEFAULT_CAM_METHOD
from ..model.inference import headline_views, predict_logits
from ..model.registry import architecture_info, create_model, default_input, trained_model_args
from ..data.outliers import outlier_squares
from ..model.scope import fit_scope_gate
from .config import TrainConfig, load_config
from .dataset import TrainingData, load_training_data


def input_spec_for(cfg: TrainConfig) -> InputSpec:
    mean, std = default_input(cfg.architecture)
    return InputSpec(size=cfg.image_size, channels=1, resize=cfg.resize, mean=mean, std=std)


def explain_entry(configured: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """The card's ``explain`` entry: the config's (chosen on validation lesions with bench/cam_choice.py), with
    the network's own CAM layer and the default method where the config names none."""
    return {"target_layer": architecture_info(model).cam_layer, "method": DEFAULT_CAM_METHOD, **configured}


# How the card describes each known dataset; a hospital's own manifest is described by its name.
DATASET_DESCRIPTIONS = {
    "busi": "BUSI (Al-Dhabyani et al. 2020, CC0; 600 women aged 25-75, Baheya Hospital, Cairo, Egypt), official "
            "MedMNIST BreastMNIST split",
    "busbra": "BUS-BRA (Gomez-Flores et al. 2024; National Cancer Institute, Rio de Janeiro, Brazil; every lesion "
              "biopsy-proven, no normal images; four scanners), split by patient",
}


def describe_training_data(cfg: TrainConfig, data: TrainingData) -> str:
    """The card's ``training_data`` sentence: which datasets, splits and how many images of each."""
    parts = []
    for i, spec in enumerate(data.specs):
        n_train, n_val = int((data.train_source == i).sum()), int((data.val_source == i).sum())
        parts.append(f"{DATASET_DESCRIPTIONS.get(spec.name, spec.name)}: trained on {'+'.join(cfg.train_splits)} "
                     f"({n_train} images), selected, calibrated and scope-fitted on {cfg.val_split} ({n_val} "
                     f"images), test split held out")
    if len(data.specs) == 1:
        return parts[0]
    weights = ", ".join(f"{s.name} {s.weight:g}" for s in data.specs)
    return f"{'; '.join(parts)}. Sampling weights: {weights} (each dataset drawn in proportion to its weight)."


def training_sites(data: TrainingData) -> list[dict[str, Any]]:
    """The sites and scanners the model has seen, with image counts: what the card says it was trained on."""
    sites: dict[tuple[str, str], dict[str, Any]] = {}
    for split, records in (("train", data.train_records), ("val", data.val_records)):
        for r in records:
            entry = sites.setdefault((r.dataset, r.site), {"dataset": r.dataset, "site": r.site, "train": 0,
                                                           "val": 0, "devices": {}})
            entry[split] += 1
            entry["devices"][r.device] = entry["devices"].get(r.device, 0) + 1
    return list(sites.values())


def finalize_model(cfg: TrainConfig, spec: InputSpec, weights_path: Path, data: TrainingData, *, command: str,
                   best_epoch: int, best_val_auc: float, outline: dict[str, Any] | None = None) -> ModelCard:
    """Reload the weights, fit temperature and threshold on the pooled validation splits, fit the scope gate on
    every training site against the outlier images, write the card. ``outline``: the card entry of a lesion-outline
    decoder trained on these very weights (kept by ``calibrate``; a new training run has none)."""
    model = create_model(cfg.architecture, num_classes=len(CLASS_NAMES), in_chans=spec.channels,
                         **trained_model_args(cfg.architecture, cfg.model_args))
    load_weights(model, weights_path).eval()
    val_logits = predict_logits(model, data.val_x, spec, views=headline_views(cfg.tta_headline, cfg.explain, spec))
    temperature = fit_temperature(val_logits, data.val_y)
    m = CLASS_NAMES.index("malignant")
    threshold = choose_threshold_every_site(softmax(val_logits, temperature)[:, m], data.val_y == m, data.val_source,
                                            cfg.min_sensitivity)
    card = ModelCard(
        name=cfg.name,
        architecture=cfg.architecture,
        model_args=trained_model_args(cfg.architecture, cfg.model_args),
        input=spec,
        temperature=temperature,
        threshold=threshold,
        threshold_rule=f"highest threshold on calibrated P(malignant) with validation sensitivity >= "
                       f"{cfg.min_sensitivity:.2f} at every training site",
        intended_use=INTENDED_USE,
        out_of_scope_use=OUT_OF_SCOPE_USE,
        training_data=describe_training_data(cfg, data),
        training_sites=training_sites(data),
        config=cfg.to_dict(),
        command=command,
        explain=explain_entry(cfg.explain, model),
        tta_headline=cfg.tta_headline,
        outline=dict(outline or {}),
        weights_sha256="",
        metrics={"best_epoch": best_epoch, "val_auc": best_val_auc,
                 **({"weights": f"average of epochs {cfg.epochs - cfg.swa_epochs + 1}-{cfg.epochs}"}
                    if cfg.swa_epochs else {})},
    )
    fit_scope_gate(model, card, data.train_x, data.val_x, outlier_squares(spec), weights_path.parent)
    card.weights_sha256 = sha256_file(weights_path)
    card.save(weights_path.parent)
    return card


def recalibrate(model_dir: str | Path, command: str = "") -> ModelCard:
    """Re-run the post-training stage (temperature, threshold, scope gate, card) on a trained model folder.

    Uses the folder's resolved ``config.yaml``; the weights are untouched, so the result equals what ``train``
    wrote at the end of its run.
    """
    model_dir = Path(model_dir)
    cfg = load_config(model_dir / "config.yaml")
    old = _previous_card_fields(model_dir)
    spec = input_spec_for(cfg)
    return finalize_model(cfg, spec, model_dir / WEIGHTS_FILE, load_training_data(cfg, spec, masks=False),
                          command=old.get("command") or command,
                          best_epoch=old.get("metrics", {}).get("best_epoch", -1),
                          best_val_auc=old.get("metrics", {}).get("val_auc", float("nan")),
                          outline=old.get("outline"))


def _previous_card_fields(model_dir: Path) -> dict[str, Any]:
    """The command and training metrics of the card being replaced (read as plain JSON: it may predate fields
    the current card requires)."""
    path = model_dir / CARD_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
