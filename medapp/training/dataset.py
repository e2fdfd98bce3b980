"""What the training loop iterates over: cached model-size squares with labels (and masks), augmented per item."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import BusiRecord
from ..model.card import CLASS_NAMES, InputSpec
from ..model.preprocess import normalize


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
