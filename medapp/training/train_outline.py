"""Training the lesion-outline decoder on a shipped classifier's frozen encoder, and installing it beside it.

``python -m medapp train-outline --config configs/outline_lite0_160.yaml [--install] [--key value ...]``

The decoder (:mod:`medapp.model.lesion_outline`) learns the radiologists' masks of every configured dataset's
train split (BUSI's 2-3 masks per image as their union; normal images teach an empty outline), under the same
paired augmentation as the classifier (one geometry for image and mask). The epoch with the best mean Dice on the
pooled validation lesions is kept, and the probability threshold that draws the outline is chosen on the same
validation lesions. ``--install`` writes the decoder into the base model's folder and its ``outline`` entry into
the card (re-sealing the folder), so serving finds it; the classifier's weights are never touched.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.datasets import load_mask_squares
from ..evaluation.outline_metrics import dice as outline_dice
from ..model.card import OUTLINE_FILE, ModelCard
from ..model.checkpoint import load_model, save_weights, sha256_file
from ..model.lesion_attention import lesion_loss
from ..model.lesion_outline import DEFAULT_TAPS, build_decoder, outline_logits, outline_probability
from ..model.preprocess import normalize
from .augment import PairedTransform
from .config import OutlineConfig, TrainConfig, load_config, save_config
from .dataset import SquaresDataset, WeightedEpochSampler, load_training_data
from .train import seed_everything

log = logging.getLogger(__name__)

THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.30, 0.71, 0.05))


def load_outline_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> OutlineConfig:
    """Defaults <- YAML file <- ``--key value`` overrides, as ``train``'s config."""
    return load_config(path, overrides, OutlineConfig)


@torch.no_grad()
def predict_outline_squares(model: torch.nn.Module, decoder: torch.nn.Module, squares: np.ndarray, spec,
                            batch_size: int = 32, flip_average: bool = False) -> np.ndarray:
    """(N, S, S) squares -> (N, S, S) outline probabilities (as serving computes them)."""
    decoder.eval()
    out = []
    for i in range(0, len(squares), batch_size):
        x = normalize(torch.from_numpy(squares[i : i + batch_size]), spec)
        out.append(outline_probability(model, decoder, x, DEFAULT_TAPS, flip_average)[1])
    return torch.cat(out).numpy()


def validation_dice(prob: np.ndarray, masks: np.ndarray, source: np.ndarray, names: list[str],
                    threshold: float = 0.5) -> dict[str, float]:
    """Mean Dice over the validation images that have a lesion, pooled and per dataset."""
    binary_masks = masks > 0.5
    has = binary_masks.reshape(len(masks), -1).any(1)
    dice = np.array([outline_dice(p >= threshold, m) for p, m in zip(prob, binary_masks, strict=True)])
    out = {"val_dice": float(dice[has].mean())}
    for i, name in enumerate(names):
        chosen = has & (source == i)
        if chosen.any():
            out[f"val_dice_{name}"] = float(dice[chosen].mean())
    return out


def train_outline(cfg: OutlineConfig, command: str = "", install: bool = False, reselect: bool = False) -> Path:
    """Train (unless ``reselect``: keep the run's saved best epoch), choose the outline's settings on validation,
    write ``outline.json``; ``install`` copies both into the base model's folder."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    card, model = load_model(cfg.base_model)
    model.eval().requires_grad_(False)
    spec = card.input  # the outline shares the classifier's input and its encoder pass
    data_cfg = TrainConfig(datasets=cfg.datasets, subset=cfg.subset, lesion_weight=1.0,
                           image_size=spec.size, resize=spec.resize)
    data = load_training_data(data_cfg, spec, progress=True)
    val_masks = load_mask_squares(data.val_records, spec)
    out_dir = Path(cfg.out_dir)
    names = [s.name for s in data.specs]
    if not reselect:
        _fit(cfg, model, data, spec, val_masks)
    elif (out_dir / "outline.json").is_file():  # the command that trained these weights, which a rerun repeats
        command = json.loads((out_dir / "outline.json").read_text()).get("command") or command
    history = list(csv.DictReader((out_dir / "outline_history.csv").open()))
    best_epoch = int(max(history, key=lambda r: float(r["val_dice"]))["epoch"])
    decoder = build_decoder(model, DEFAULT_TAPS, cfg.branch_from)
    decoder.load_state_dict(load_file(str(out_dir / OUTLINE_FILE)), strict=True)
    scores = {}
    for flip in (False, True):
        prob = predict_outline_squares(model, decoder, data.val_x, spec, flip_average=flip)
        for t in THRESHOLD_GRID:
            scores[flip, t] = validation_dice(prob, val_masks, data.val_source, names, t)
    # best pooled Dice; on a tie the single pass (cheaper) and the threshold nearer 0.5
    flip, threshold = max(scores, key=lambda k: (round(scores[k]["val_dice"], 4), not k[0], -abs(k[1] - 0.5)))
    entry = {
        "file": OUTLINE_FILE,
        "sha256": sha256_file(out_dir / OUTLINE_FILE),
        "taps": list(DEFAULT_TAPS),
        "branch_from": cfg.branch_from or None,
        "flip_average": flip,
        "threshold": threshold,
        "threshold_rule": "the probability threshold (0.30-0.70 in 0.05 steps) and mirror averaging (on or off) "
                          "with the best mean Dice on the pooled validation lesions at the model's input size",
        "best_epoch": best_epoch,
        "validation": scores[flip, threshold],
        "validation_single_pass": scores[False, threshold],
        "datasets": names,
        "config": dataclasses.asdict(cfg),
        "command": command,
    }
    (out_dir / "outline.json").write_text(json.dumps(entry, indent=2) + "\n")
    log.info("outline: threshold %.2f, mirror %s, validation %s", threshold, flip, entry["validation"])
    if install:
        install_outline(out_dir, Path(cfg.base_model))
    return out_dir


def _fit(cfg: OutlineConfig, model: torch.nn.Module, data, spec, val_masks: np.ndarray) -> None:
    """The training loop: the epoch with the best pooled validation Dice is saved in ``out_dir``."""
    decoder = build_decoder(model, DEFAULT_TAPS, cfg.branch_from)
    dataset = SquaresDataset(data.train_x, data.train_y, spec, PairedTransform(cfg.augment), masks=data.train_masks)
    sampler = WeightedEpochSampler(data.sample_weights(), cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True)
    deep = set(map(id, decoder.deep_blocks.parameters())) if decoder.deep_blocks is not None else set()
    groups = [{"params": [p for p in decoder.parameters() if id(p) not in deep], "lr": cfg.lr}]
    if deep:
        groups.append({"params": list(decoder.deep_blocks.parameters()), "lr": cfg.branch_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups],
                                                    total_steps=cfg.epochs * len(loader), pct_start=0.1)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in data.specs]
    save_config(cfg, out_dir / "outline_config.yaml")
    history: list[dict[str, float]] = []
    best, best_epoch = -1.0, 0
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        decoder.train()
        t0, losses = time.perf_counter(), []
        for x, _y, mask in tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False):
            loss = lesion_loss(outline_logits(model, decoder, x, DEFAULT_TAPS)[1], mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        prob = predict_outline_squares(model, decoder, data.val_x, spec)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "seconds": time.perf_counter() - t0,
               **validation_dice(prob, val_masks, data.val_source, names)}
        history.append(row)
        if row["val_dice"] > best:
            best, best_epoch = row["val_dice"], epoch + 1
            save_weights(decoder, out_dir / OUTLINE_FILE)
        _write_history(history, out_dir / "outline_history.csv")
        log.info("epoch %d: loss %.4f val_dice %.4f (best %.4f @ %d) %.0fs", epoch + 1, row["train_loss"],
                 row["val_dice"], best, best_epoch, row["seconds"])


def install_outline(run_dir: Path, model_dir: Path) -> ModelCard:
    """Copy the decoder into the model folder and record it in the card (which re-seals the folder)."""
    entry = json.loads((run_dir / "outline.json").read_text())
    card = ModelCard.load(model_dir)
    shutil.copyfile(run_dir / OUTLINE_FILE, model_dir / OUTLINE_FILE)
    card.outline = entry
    card.save(model_dir)
    return card


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[-1]))
        writer.writeheader()
        writer.writerows(history)
