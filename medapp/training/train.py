"""Training, top to bottom (nanoGPT's spirit): data -> model -> loop -> weights -> release (calibration + card).

``python -m medapp train --config configs/NAME.yaml [--key value ...]`` on one process, or
``torchrun --nproc_per_node=N -m medapp train ...`` for data parallelism (DDP: gloo on CPU, nccl on GPU).
The loop is :func:`train`; each epoch's steps are :func:`train_one_epoch`; what happens after the last epoch
(temperature, threshold, scope gate, model card) is :mod:`medapp.training.release`.
"""

from __future__ import annotations

import csv
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from ..errors import ConfigError
from ..evaluation.metrics import binary_auc
from ..model.calibrate import softmax
from ..model.card import CLASS_NAMES, WEIGHTS_FILE
from ..model.checkpoint import save_weights
from ..model.inference import predict_logits
from ..model.lesion_attention import lesion_loss
from ..model.registry import create_model, leading_stages, unwrap
from .augment import PairedTransform, build_train_transform
from .config import LossName, OptimizerName, ScheduleName, TrainConfig, save_config
from .dataset import SquaresDataset, TrainingData, WeightedEpochSampler, load_training_data
from .distributed import DistInfo, setup_distributed
from .release import finalize_model, input_spec_for

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def compute_loss(logits: torch.Tensor, target: torch.Tensor, cfg: TrainConfig,
                 class_weights: torch.Tensor | None) -> torch.Tensor:
    if cfg.loss == LossName.CROSS_ENTROPY:
        return F.cross_entropy(logits, target, weight=class_weights, label_smoothing=cfg.label_smoothing)
    # MSE on one-hot targets (optionally smoothed), summed over classes, averaged over the batch
    onehot = F.one_hot(target, logits.shape[1]).float()
    onehot = onehot * (1 - cfg.label_smoothing) + cfg.label_smoothing / logits.shape[1]
    per_sample = ((logits.softmax(1) - onehot) ** 2).sum(1)
    if class_weights is not None:
        w = class_weights[target]
        return (per_sample * w).sum() / w.sum()
    return per_sample.mean()


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == OptimizerName.SGD:
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_at(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 1% (or constant)."""
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == ScheduleName.CONSTANT:
        return cfg.lr
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def malignant_auc(logits: np.ndarray, labels: np.ndarray) -> float:
    """Validation AUC of malignant vs rest on uncalibrated softmax; NaN when a class is absent."""
    m = CLASS_NAMES.index("malignant")
    return binary_auc(labels == m, softmax(logits)[:, m])


def per_dataset_auc(val_logits: np.ndarray, data: TrainingData) -> dict[str, float]:
    """``val_auc_<dataset>`` for each dataset when there are several (the pooled AUC can hide a weak site)."""
    if len(data.specs) == 1:
        return {}
    return {f"val_auc_{s.name}": malignant_auc(val_logits[data.val_source == i], data.val_y[data.val_source == i])
            for i, s in enumerate(data.specs)}


def train_one_epoch(model: nn.Module, frozen: list[nn.Module], loader: DataLoader, optimizer: torch.optim.Optimizer,
                    cfg: TrainConfig, class_weights: torch.Tensor | None, info: DistInfo, *, step: int,
                    total_steps: int, warmup: int, desc: str) -> tuple[int, dict[str, float]]:
    """One pass over the loader; returns the global step after it and the epoch's training statistics."""
    model.train()
    for module in frozen:
        module.eval()  # frozen BatchNorm keeps its pretrained statistics
    t_epoch, t_wait, losses, lesion_losses = time.perf_counter(), 0.0, [], []
    t_ready = time.perf_counter()
    for x, y, *masks in tqdm(loader, desc=desc, disable=not info.is_main, leave=False):
        t_wait += time.perf_counter() - t_ready
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, warmup, cfg)
        x, y = x.to(info.device), y.to(info.device)
        out = model(x)
        logits, lesion_logits = out if isinstance(out, tuple) else (out, None)
        loss = compute_loss(logits, y, cfg, class_weights)
        if masks and lesion_logits is not None:
            extra = lesion_loss(lesion_logits, masks[0].to(info.device))
            lesion_losses.append(extra.item())
            loss = loss + cfg.lesion_weight * extra
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step += 1
        t_ready = time.perf_counter()
    seconds = time.perf_counter() - t_epoch
    stats = {"train_loss": float(np.mean(losses)), "seconds": seconds, "data_wait_share": t_wait / seconds,
             "images_per_second": len(loader) * cfg.batch_size / seconds}
    if lesion_losses:
        stats["train_lesion_loss"] = float(np.mean(lesion_losses))
    return step, stats


def train(cfg: TrainConfig, command: str = "") -> Path:
    """Train, keep the best epoch by validation AUC (or the average of the last epochs), then release: calibrate
    on validation, fit the scope gate, write weights + card to ``out_dir``."""
    info = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    out_dir = Path(cfg.out_dir)
    spec = input_spec_for(cfg)
    data = load_training_data(cfg, spec, progress=info.is_main)

    model = create_model(cfg.architecture, num_classes=len(CLASS_NAMES), in_chans=spec.channels, **cfg.model_args)
    frozen = leading_stages(model)[: cfg.freeze_blocks]
    for module in frozen:
        module.requires_grad_(False)
    model.to(info.device)
    if info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model)

    if data.train_masks is not None:
        if not hasattr(unwrap(model), "features_and_lesion"):
            raise ConfigError("lesion_weight > 0 needs a model with lesion attention: set model_args.lesion_block")
        dataset = SquaresDataset(data.train_x, data.train_y, spec, PairedTransform(cfg.augment),
                                 masks=data.train_masks)
    else:
        dataset = SquaresDataset(data.train_x, data.train_y, spec, build_train_transform(cfg.augment))
    if len(data.specs) > 1:  # several sites: each drawn by its weight, not by its size
        sampler = WeightedEpochSampler(data.sample_weights(), cfg.seed, info.rank, info.world_size)
    else:
        sampler = DistributedSampler(dataset, seed=cfg.seed, shuffle=True) if info.world_size > 1 else None
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        drop_last=len(dataset) > cfg.batch_size * info.world_size, generator=generator)
    class_weights = None
    if cfg.class_weights:
        counts = np.bincount(data.train_y, minlength=len(CLASS_NAMES)).clip(min=1)
        class_weights = torch.tensor(len(data.train_y) / (len(CLASS_NAMES) * counts), dtype=torch.float32,
                                     device=info.device)
    optimizer = build_optimizer(model, cfg)
    total_steps = cfg.epochs * len(loader)
    warmup = cfg.warmup_epochs * len(loader)

    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    history: list[dict[str, float]] = []
    best_auc, best_loss, best_epoch, step = -1.0, float("inf"), -1, 0
    # buffers too: BatchNorm running statistics are averaged like the weights (no extra pass over the data)
    averaged = AveragedModel(unwrap(model), use_buffers=True) if cfg.swa_epochs else None
    weights_path = out_dir / WEIGHTS_FILE
    for epoch in range(cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        step, stats = train_one_epoch(model, frozen, loader, optimizer, cfg, class_weights, info, step=step,
                                      total_steps=total_steps, warmup=warmup, desc=f"epoch {epoch + 1}/{cfg.epochs}")

        val_logits = predict_logits(unwrap(model), data.val_x, spec, device=info.device)
        val_loss = float(F.cross_entropy(torch.from_numpy(val_logits), torch.from_numpy(data.val_y)))
        val_auc = malignant_auc(val_logits, data.val_y)
        row = {"epoch": epoch + 1, "train_loss": stats.pop("train_loss"), "val_loss": val_loss, "val_auc": val_auc,
               "val_accuracy_3class": float((val_logits.argmax(1) == data.val_y).mean()),
               "lr": optimizer.param_groups[0]["lr"], **stats, **per_dataset_auc(val_logits, data)}
        history.append(row)
        improved = val_auc > best_auc + 1e-6 or (abs(val_auc - best_auc) <= 1e-6 and val_loss < best_loss)
        if improved:
            best_auc, best_loss, best_epoch = val_auc, val_loss, epoch + 1
            if info.is_main:
                save_weights(model, weights_path)
        if info.is_main:
            _write_history(history, out_dir / "history.csv")
            log.info("epoch %d: train_loss %.4f val_loss %.4f val_auc %.4f (best %.4f @ %d) %.0fs",
                     epoch + 1, row["train_loss"], val_loss, val_auc, best_auc, best_epoch, row["seconds"])
        if averaged is not None and epoch + 1 > cfg.epochs - cfg.swa_epochs:
            averaged.update_parameters(unwrap(model))
        if averaged is None and epoch + 1 - best_epoch >= cfg.patience:
            log.info("early stop: validation AUC has not improved for %d epochs", cfg.patience)
            break

    if averaged is not None:
        val_logits = predict_logits(averaged.module, data.val_x, spec, device=info.device)
        best_auc, best_epoch = malignant_auc(val_logits, data.val_y), cfg.epochs
        if info.is_main:
            save_weights(averaged.module, weights_path)
            log.info("weights: average of epochs %d-%d, val_auc %.4f", cfg.epochs - cfg.swa_epochs + 1, cfg.epochs,
                     best_auc)

    if info.world_size > 1:
        dist.barrier()
    if info.is_main:
        finalize_model(cfg, spec, weights_path, data, command=command,
                       best_epoch=best_epoch, best_val_auc=best_auc)
    if info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out_dir


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
