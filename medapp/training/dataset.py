"""What the training loop iterates over: the pooled datasets' cached model-size squares with labels (and masks),
augmented per item, drawn by each dataset's sampling weight."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from ..data.datasets import Record, load_mask_squares, load_records, load_squares
from ..data.manifest import DatasetSpec
from ..model.card import CLASS_NAMES, InputSpec
from ..model.preprocess import normalize
from .config import TrainConfig


class SquaresDataset(Dataset):
    """Cached (N, S, S) squares in [0, 1] + labels; ``transform`` (augmentation) runs per item on (1, S, S).

    With ``masks`` (N, S, S) each item also carries its lesion mask, moved by the same random geometry
    (``transform`` is then a :class:`~medapp.training.augment.PairedTransform`).
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


def take_subset(records: list[Record], n: int) -> list[Record]:
    """The first ``n`` records, interleaved across classes so a tiny subset still has every class."""
    if n <= 0:
        return records
    by_class = {c: [r for r in records if r.label == c] for c in CLASS_NAMES}
    out: list[Record] = []
    while len(out) < min(n, len(records)):
        for c in CLASS_NAMES:
            if by_class[c] and len(out) < n:
                out.append(by_class[c].pop(0))
    return out


@dataclass
class TrainingData:
    """The pooled datasets: (N, S, S) squares in [0, 1], labels, and each image's dataset index (``*_source``);
    ``train_masks`` for lesion attention; ``specs`` in config order."""

    specs: list[DatasetSpec]
    train_records: list[Record]
    val_records: list[Record]
    train_x: np.ndarray
    train_y: np.ndarray
    train_source: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    val_source: np.ndarray
    train_masks: np.ndarray | None

    def sample_weights(self) -> np.ndarray:
        """Per training image: its dataset's weight shared out over that dataset's images, so each dataset is
        drawn in proportion to its weight whatever its size."""
        counts = np.bincount(self.train_source, minlength=len(self.specs))
        weights = np.array([s.weight for s in self.specs]) / counts.clip(min=1)
        return weights[self.train_source]


def load_training_data(cfg: TrainConfig, spec: InputSpec, progress: bool = False, masks: bool = True) -> TrainingData:
    """Records of every configured dataset's train and val splits (``cfg.subset`` per dataset), decoded once;
    the lesion masks too when the config trains lesion attention and ``masks``."""
    specs = cfg.dataset_specs
    train, val = [], []
    for spec_ in specs:  # one manifest read per dataset
        records = load_records(spec_, [*cfg.train_splits, cfg.val_split])
        train += take_subset([r for r in records if r.split in cfg.train_splits], cfg.subset)
        val += take_subset([r for r in records if r.split == cfg.val_split], cfg.subset)
    index = {s.name: i for i, s in enumerate(specs)}
    return TrainingData(
        specs=specs, train_records=train, val_records=val,
        train_x=load_squares(train, spec, progress=progress),
        train_y=np.array([r.label_index for r in train]),
        train_source=np.array([index[r.dataset] for r in train]),
        val_x=load_squares(val, spec, progress=progress),
        val_y=np.array([r.label_index for r in val]),
        val_source=np.array([index[r.dataset] for r in val]),
        train_masks=load_mask_squares(train, spec) if cfg.lesion_weight > 0 and masks else None,
    )


class WeightedEpochSampler(Sampler[int]):
    """Each epoch, ``len(weights)`` draws with replacement in proportion to ``weights``; under torchrun every rank
    takes its own share of the same draw (seeded by seed and epoch, so ranks agree without communicating)."""

    def __init__(self, weights: np.ndarray, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights) // self.world_size

    def __iter__(self):  # noqa: ANN204 - Iterator[int]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(self.weights, len(self) * self.world_size, replacement=True, generator=generator)
        return iter(draw[self.rank :: self.world_size].tolist())
