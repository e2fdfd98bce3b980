"""Training throughput of the shipped config on this machine, against a naive data pipeline.

Prints images per second, the share of step time spent waiting on data, and the estimated wall time of a full
training run, for (a) medapp's pipeline (images decoded and resized once, augmentation on cached squares) and
(b) a plain baseline: same model and augmentation, but each image decoded from PNG and resized in every step.
Also prints the wall time recorded in the shipped model's history.csv.

    .venv/bin/python bench/train_speed.py [--model DIR] [--steps 6]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.data.datasets import load_busi_records, load_squares  # noqa: E402
from medapp.intake.imaging import load_image  # noqa: E402
from medapp.model.card import CLASS_NAMES, ModelCard  # noqa: E402
from medapp.model.checkpoint import default_model_dir  # noqa: E402
from medapp.model.preprocess import normalize, resize_to_square  # noqa: E402
from medapp.model.registry import create_model, leading_stages  # noqa: E402
from medapp.training.augment import build_train_transform  # noqa: E402
from medapp.training.config import load_config  # noqa: E402
from medapp.training.dataset import SquaresDataset  # noqa: E402
from medapp.training.train import build_optimizer, compute_loss  # noqa: E402


class NaiveDataset(Dataset):
    """Baseline: decode the PNG and resize it on every access, as a first-draft pipeline would."""

    def __init__(self, records, spec, transform):
        self.records, self.spec, self.transform = records, spec, transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        square = resize_to_square(load_image(self.records[i].path).pixels, self.spec)
        x = self.transform(torch.from_numpy(square)[None])
        return normalize(x[0], self.spec), CLASS_NAMES.index(self.records[i].label)


def time_steps(loader: DataLoader, cfg, steps: int) -> tuple[float, float, int]:
    """(seconds, seconds waiting for data, images) over ``steps`` training steps after one warm-up step."""
    torch.manual_seed(0)
    model = create_model(cfg.architecture, num_classes=len(CLASS_NAMES), in_chans=1, **cfg.model_args)
    for module in leading_stages(model)[: cfg.freeze_blocks]:
        module.requires_grad_(False)
    model.train()
    optimizer = build_optimizer(model, cfg)
    it = iter(loader)
    total = wait = 0.0
    images = 0
    for step in range(steps + 1):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        loss = compute_loss(model(x), y, cfg, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        t2 = time.perf_counter()
        if step:  # the first step warms up allocators and kernels
            total += t2 - t0
            wait += t1 - t0
            images += len(y)
    return total, wait, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    model_dir = Path(args.model or default_model_dir())
    card = ModelCard.load(model_dir)
    cfg = load_config(None, {k: v for k, v in card.config.items()})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    records = load_busi_records(cfg.train_splits)
    transform = build_train_transform(cfg.augment)
    steps_per_epoch = len(records) // cfg.batch_size

    t0 = time.perf_counter()
    squares = load_squares(records, card.input)
    decode_s = time.perf_counter() - t0
    labels = np.array([r.label_index for r in records])
    cached = DataLoader(SquaresDataset(squares, labels, card.input, transform), batch_size=cfg.batch_size,
                        shuffle=True)
    naive = DataLoader(NaiveDataset(records, card.input, transform), batch_size=cfg.batch_size, shuffle=True)

    print(f"model {card.name}: {cfg.architecture} at {card.input.size} px, batch {cfg.batch_size}, "
          f"{torch.get_num_threads()} threads, {len(records)} training images, {cfg.epochs} epochs max")
    rows = []
    for label, loader, setup_s in (("medapp (cached squares)", cached, decode_s), ("baseline (decode per step)",
                                                                                     naive, 0.0)):
        total, wait, images = time_steps(loader, cfg, args.steps)
        ips = images / total
        full_min = (setup_s + cfg.epochs * steps_per_epoch * total / args.steps) / 60
        rows.append((label, ips, wait / total, full_min))
    print(f"{'pipeline':28s} {'images/s':>9s} {'data wait':>10s} {'full run (est.)':>16s}")
    for label, ips, share, full_min in rows:
        print(f"{label:28s} {ips:9.1f} {share:9.1%} {full_min:13.1f} min")
    print(f"speed-up of medapp over baseline: {rows[0][1] / rows[1][1]:.2f}x images/s")
    history = model_dir / "history.csv"
    if history.is_file():
        with history.open() as f:
            hist = list(csv.DictReader(f))
        recorded = sum(float(r["seconds"]) for r in hist) / 60
        print(f"recorded in {history.name}: {len(hist)} epochs, {recorded:.1f} min of training steps "
              f"(mean data wait {np.mean([float(r['data_wait_share']) for r in hist]):.1%})")


if __name__ == "__main__":
    main()
