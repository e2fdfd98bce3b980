"""Training, top to bottom (nanoGPT's spirit): data -> model -> loop -> best checkpoint -> calibration -> card.

``python -m medapp train --config configs/NAME.yaml [--key value ...]`` on one process, or
``torchrun --nproc_per_node=N -m medapp train ...`` for data parallelism (DDP: gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from .augment import PairedTransform, build_train_transform
from .calibrate import choose_threshold, fit_temperature, softmax
from .card import CLASS_NAMES, INTENDED_USE, OUT_OF_SCOPE_USE, WEIGHTS_FILE, InputSpec, ModelCard
from .checkpoint import load_weights, save_weights, unwrap
from .config import LossName, OptimizerName, ScheduleName, TrainConfig, save_config
from .data import BusiRecord, load_busi_records, load_mask_squares, load_squares
from .errors import ConfigError
from .lesion_attention import lesion_loss
from .models import create_model, default_input, leading_stages, trained_model_args
from .preprocess import normalize, normalized_black

log = logging.getLogger(__name__)


class SquaresDataset(Dataset):
    """Cached (N, S, S) squares in [0, 1] + labels; ``transform`` (augmentation) runs per item on (1, S, S).

    With ``masks`` (N, S, S) each item also carries its lesion mask, moved by the same random geometry
    (``transform`` is then a :class:`~medapp.augment.PairedTransform`).
    """

    def __init__(self, squares: np.ndarray, labels: np.ndarray, spec: InputSpec, transform: nn.Module | None = None,
                 masks: np.ndarray | None = None):
        self.squares = torch.from_numpy(squares)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.masks = torch.from_numpy(masks) if masks is not None else None
        self.spec = spec
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        x = self.squares[i][None]
        if self.masks is None:
            if self.transform is not None:
                x = self.transform(x)
            return normalize(x[0], self.spec), self.labels[i]
        mask = self.masks[i][None]
        if self.transform is not None:
            x, mask = self.transform(x, mask)
        return normalize(x[0], self.spec), self.labels[i], mask[0]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    use_cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def input_spec_for(cfg: TrainConfig) -> InputSpec:
    mean, std = default_input(cfg.architecture)
    return InputSpec(size=cfg.image_size, channels=1, resize=cfg.resize, mean=mean, std=std)


def take_subset(records: list[BusiRecord], n: int) -> list[BusiRecord]:
    """The first ``n`` records, interleaved across classes so a tiny subset still has every class."""
    if n <= 0:
        return records
    by_class = {c: [r for r in records if r.label == c] for c in CLASS_NAMES}
    out: list[BusiRecord] = []
    while len(out) < min(n, len(records)):
        for c in CLASS_NAMES:
            if by_class[c] and len(out) < n:
                out.append(by_class[c].pop(0))
    return out


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


@torch.no_grad()
def predict_logits(model: nn.Module, squares: np.ndarray, spec: InputSpec, batch_size: int = 64,
                   device: torch.device | None = None,
                   views: list[tuple[bool, int, int]] | None = None) -> np.ndarray:
    """(N, S, S) squares -> (N, C) logits, model in eval mode; with ``views``, the mean of the views' logits."""
    from .explain import view_batch

    model.eval()
    device = device or torch.device("cpu")
    out = []
    for i in range(0, len(squares), batch_size):
        x = normalize(torch.from_numpy(squares[i : i + batch_size]), spec).to(device)
        if views:
            logits = model(view_batch(x, views, normalized_black(spec))).float()
            out.append(logits.reshape(len(views), len(x), -1).mean(0).cpu())
        else:
            out.append(model(x).float().cpu())
    return torch.cat(out).numpy()


def headline_views(tta_headline: bool, explain: dict, spec: InputSpec) -> list[tuple[bool, int, int]] | None:
    """The views whose mean logits are a model's headline (None: the unaugmented image alone)."""
    from .explain import configured_views

    return configured_views(explain, spec.size) if tta_headline else None


def malignant_auc(logits: np.ndarray, labels: np.ndarray) -> float:
    m = CLASS_NAMES.index("malignant")
    is_mal = labels == m
    if is_mal.all() or not is_mal.any():
        return float("nan")
    return float(roc_auc_score(is_mal, softmax(logits)[:, m]))


def train(cfg: TrainConfig, command: str = "") -> Path:
    """Train, keep the best epoch by validation AUC, calibrate on validation, write weights + card to out_dir."""
    info = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    out_dir = Path(cfg.out_dir)
    spec = input_spec_for(cfg)

    train_records = take_subset(load_busi_records(cfg.train_splits), cfg.subset)
    val_records = take_subset(load_busi_records(cfg.val_split), cfg.subset)
    train_x = load_squares(train_records, spec, progress=info.is_main)
    val_x = load_squares(val_records, spec, progress=info.is_main)
    train_y = np.array([r.label_index for r in train_records])
    val_y = np.array([r.label_index for r in val_records])

    model = create_model(cfg.architecture, num_classes=len(CLASS_NAMES), in_chans=spec.channels, **cfg.model_args)
    frozen = leading_stages(cfg.architecture, model)[: cfg.freeze_blocks]
    for module in frozen:
        module.requires_grad_(False)
    model.to(info.device)
    if info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model)

    if cfg.lesion_weight > 0:
        if not hasattr(unwrap(model), "features_and_lesion"):
            raise ConfigError("lesion_weight > 0 needs a model with lesion attention: set model_args.lesion_block")
        dataset = SquaresDataset(train_x, train_y, spec, PairedTransform(cfg.augment),
                                 masks=load_mask_squares(train_records, spec))
    else:
        dataset = SquaresDataset(train_x, train_y, spec, build_train_transform(cfg.augment))
    sampler = DistributedSampler(dataset, seed=cfg.seed, shuffle=True) if info.world_size > 1 else None
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        drop_last=len(dataset) > cfg.batch_size * info.world_size, generator=generator)
    class_weights = None
    if cfg.class_weights:
        counts = np.bincount(train_y, minlength=len(CLASS_NAMES)).clip(min=1)
        class_weights = torch.tensor(len(train_y) / (len(CLASS_NAMES) * counts), dtype=torch.float32,
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
        model.train()
        for module in frozen:
            module.eval()  # frozen BatchNorm keeps its pretrained statistics
        t_epoch, t_wait, losses, lesion_losses = time.perf_counter(), 0.0, [], []
        t_ready = time.perf_counter()
        for x, y, *masks in tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not info.is_main,
                                 leave=False):
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

        val_logits = predict_logits(unwrap(model), val_x, spec, device=info.device)
        val_loss = float(F.cross_entropy(torch.from_numpy(val_logits), torch.from_numpy(val_y)))
        val_auc = malignant_auc(val_logits, val_y)
        val_acc = float((val_logits.argmax(1) == val_y).mean())
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss, "val_auc": val_auc,
               "val_accuracy_3class": val_acc, "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
               "data_wait_share": t_wait / seconds, "images_per_second": len(loader) * cfg.batch_size / seconds}
        if lesion_losses:
            row["train_lesion_loss"] = float(np.mean(lesion_losses))
        history.append(row)
        improved = val_auc > best_auc + 1e-6 or (abs(val_auc - best_auc) <= 1e-6 and val_loss < best_loss)
        if improved:
            best_auc, best_loss, best_epoch = val_auc, val_loss, epoch + 1
            if info.is_main:
                save_weights(model, weights_path)
        if info.is_main:
            _write_history(history, out_dir / "history.csv")
            log.info("epoch %d: train_loss %.4f val_loss %.4f val_auc %.4f (best %.4f @ %d) %.0fs",
                     epoch + 1, row["train_loss"], val_loss, val_auc, best_auc, best_epoch, seconds)
        if averaged is not None and epoch + 1 > cfg.epochs - cfg.swa_epochs:
            averaged.update_parameters(unwrap(model))
        if averaged is None and epoch + 1 - best_epoch >= cfg.patience:
            log.info("early stop: validation AUC has not improved for %d epochs", cfg.patience)
            break

    if averaged is not None:
        val_logits = predict_logits(averaged.module, val_x, spec, device=info.device)
        best_auc, best_epoch = malignant_auc(val_logits, val_y), cfg.epochs
        if info.is_main:
            save_weights(averaged.module, weights_path)
            log.info("weights: average of epochs %d-%d, val_auc %.4f", cfg.epochs - cfg.swa_epochs + 1, cfg.epochs,
                     best_auc)

    if info.world_size > 1:
        dist.barrier()
    if info.is_main:
        finalize_model(cfg, spec, weights_path, val_x, val_y, train_x, command=command,
                       best_epoch=best_epoch, best_val_auc=best_auc)
    if info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out_dir


def finalize_model(cfg: TrainConfig, spec: InputSpec, weights_path: Path, val_x: np.ndarray, val_y: np.ndarray,
                   train_x: np.ndarray, *, command: str, best_epoch: int, best_val_auc: float) -> ModelCard:
    """Reload the best weights, fit temperature and threshold on validation, fit the scope gate, write the card."""
    from .scope import fit_scope_gate

    model = create_model(cfg.architecture, num_classes=len(CLASS_NAMES), in_chans=spec.channels,
                         **trained_model_args(cfg.architecture, cfg.model_args))
    load_weights(model, weights_path).eval()
    val_logits = predict_logits(model, val_x, spec, views=headline_views(cfg.tta_headline, cfg.explain, spec))
    temperature = fit_temperature(val_logits, val_y)
    m = CLASS_NAMES.index("malignant")
    threshold = choose_threshold(softmax(val_logits, temperature)[:, m], val_y == m, cfg.min_sensitivity)
    card = ModelCard(
        name=cfg.name,
        architecture=cfg.architecture,
        model_args=trained_model_args(cfg.architecture, cfg.model_args),
        input=spec,
        temperature=temperature,
        threshold=threshold,
        threshold_rule=f"highest threshold on calibrated P(malignant) with validation sensitivity >= "
                       f"{cfg.min_sensitivity:.2f}",
        intended_use=INTENDED_USE,
        out_of_scope_use=OUT_OF_SCOPE_USE,
        training_data=(f"BUSI (Al-Dhabyani et al. 2020, CC0; 600 women aged 25-75, Baheya Hospital, Cairo), "
                       f"official MedMNIST BreastMNIST split: trained on {'+'.join(cfg.train_splits)} "
                       f"({len(train_x)} images), selected, calibrated and scope-fitted on {cfg.val_split} "
                       f"({len(val_x)} images), test split held out"),
        config=cfg.to_dict(),
        command=command,
        explain=dict(cfg.explain),
        tta_headline=cfg.tta_headline,
        weights_sha256="",
        metrics={"best_epoch": best_epoch, "val_auc": best_val_auc,
                 **({"weights": f"average of epochs {cfg.epochs - cfg.swa_epochs + 1}-{cfg.epochs}"}
                    if cfg.swa_epochs else {})},
    )
    fit_scope_gate(model, card, train_x, val_x, weights_path.parent)
    from .checkpoint import sha256_file

    card.weights_sha256 = sha256_file(weights_path)
    card.save(weights_path.parent)
    return card


def recalibrate(model_dir: str | Path, command: str = "") -> ModelCard:
    """Re-run the post-training stage (temperature, threshold, scope gate, card) on a trained model folder.

    Uses the folder's resolved ``config.yaml``; the weights are untouched, so the result equals what ``train``
    wrote at the end of its run.
    """
    from .config import load_config

    model_dir = Path(model_dir)
    cfg = load_config(model_dir / "config.yaml")
    old = ModelCard.load(model_dir) if (model_dir / "model_card.json").is_file() else None
    spec = input_spec_for(cfg)
    train_records = take_subset(load_busi_records(cfg.train_splits), cfg.subset)
    val_records = take_subset(load_busi_records(cfg.val_split), cfg.subset)
    val_y = np.array([r.label_index for r in val_records])
    return finalize_model(cfg, spec, model_dir / WEIGHTS_FILE, load_squares(val_records, spec), val_y,
                          load_squares(train_records, spec), command=old.command if old else command,
                          best_epoch=old.metrics.get("best_epoch", -1) if old else -1,
                          best_val_auc=old.metrics.get("val_auc", float("nan")) if old else float("nan"))


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
