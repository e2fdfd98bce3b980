"""Datasets: BUSI at original resolution with masks and the official MedMNIST split, and the 28 px BreastMNIST.

The data folder comes from ``MEDAPP_DATA_DIR`` (default ``../shared/data`` beside the project). Data is read-only
and never copied into the project.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..choices import Choice
from ..errors import DataNotFoundError
from ..model.card import CLASS_NAMES, InputSpec
from ..settings import DEFAULT_DATA_DIR, get_settings

BUSI_SPLITS = "busi/splits.csv"
BREASTMNIST_FILE = "medmnist/breastmnist.npz"
# BreastMNIST's own labels: 0 = malignant, 1 = normal or benign (Yang et al. 2023).
BREASTMNIST_MALIGNANT_LABEL = 0


class Split(Choice):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


def data_dir() -> Path:
    """The data folder: ``$MEDAPP_DATA_DIR`` or ``../shared/data`` next to the project (:mod:`medapp.settings`)."""
    return get_settings().data_dir


@dataclass(frozen=True)
class BusiRecord:
    """One BUSI image: ``image`` and ``masks`` are paths relative to ``busi/`` exactly as in splits.csv."""

    image: str
    label: str
    split: str
    masks: tuple[str, ...]
    medmnist_index: int

    @property
    def label_index(self) -> int:
        return CLASS_NAMES.index(self.label)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataNotFoundError(
            f"{what} not found at {path}; set MEDAPP_DATA_DIR to the folder that holds busi/ and medmnist/ "
            f"(default {DEFAULT_DATA_DIR})"
        )
    return path


def load_busi_records(split: str | Iterable[str] | None = None, root: Path | None = None) -> list[BusiRecord]:
    """Rows of ``busi/splits.csv`` (all, one split, or several), checked against the files on disk."""
    root = Path(root) if root is not None else data_dir()
    csv_path = _require(root / BUSI_SPLITS, "BUSI split file busi/splits.csv")
    wanted = None if split is None else {Split.parse(s) for s in ([split] if isinstance(split, str) else split)}
    records = []
    with csv_path.open(newline="") as f:
        for row in csv.DictReader(f):
            if wanted is not None and row["split"] not in wanted:
                continue
            records.append(
                BusiRecord(
                    image=row["image"],
                    label=row["label"],
                    split=row["split"],
                    masks=tuple(m for m in row["masks"].split(";") if m),
                    medmnist_index=int(row["medmnist_index"]),
                )
            )
    if not records:
        raise DataNotFoundError(f"{csv_path} lists no images for split {split!r}")
    missing = [r.image for r in records if not (root / "busi" / r.image).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{len(missing)} BUSI images listed in {csv_path} are missing under {root / 'busi'} "
            f"(first: {missing[0]}); the data folder is incomplete"
        )
    return records


def busi_path(record: BusiRecord, root: Path | None = None) -> Path:
    return (Path(root) if root is not None else data_dir()) / "busi" / record.image


def load_busi_mask(record: BusiRecord, root: Path | None = None) -> np.ndarray:
    """Union of the radiologist's lesion masks: (H, W) bool, all False for normal images."""
    from PIL import Image

    base = (Path(root) if root is not None else data_dir()) / "busi"
    union = None
    for name in record.masks:
        with Image.open(base / name) as im:
            mask = np.asarray(im.convert("L")) > 127
        union = mask if union is None else (union | mask)
    if union is None:
        with Image.open(base / record.image) as im:
            return np.zeros((im.height, im.width), dtype=bool)
    return union


@dataclass(frozen=True)
class BreastMnistSplit:
    """28 px BreastMNIST: ``images`` (N, 28, 28) uint8, ``malignant`` (N,) bool."""

    images: np.ndarray
    malignant: np.ndarray


def load_breastmnist(split: str, root: Path | None = None) -> BreastMnistSplit:
    """One split of the official BreastMNIST file, labels mapped to malignant yes/no."""
    split = Split.parse(split)
    path = _require((Path(root) if root is not None else data_dir()) / BREASTMNIST_FILE, "BreastMNIST file")
    with np.load(path) as npz:
        images = npz[f"{split}_images"]
        labels = npz[f"{split}_labels"].reshape(-1)
    return BreastMnistSplit(images=images, malignant=labels == BREASTMNIST_MALIGNANT_LABEL)


def _stack_squares(records: list[BusiRecord], spec: InputSpec, read: Callable[[BusiRecord], np.ndarray],
                   progress: bool = False) -> np.ndarray:
    """(N, size, size) float32: each record's (H, W) array from ``read``, resized by the card's policy."""
    from tqdm import tqdm

    from ..model.preprocess import resize_to_square

    out = np.empty((len(records), spec.size, spec.size), dtype=np.float32)
    for i, record in enumerate(tqdm(records, desc="decode", disable=not progress, leave=False)):
        out[i] = resize_to_square(read(record), spec)
    return out


def load_squares(records: list[BusiRecord], spec: InputSpec, root: Path | None = None,
                 progress: bool = False) -> np.ndarray:
    """Decode each image through intake (as serving does) and resize it by the card's policy.

    Returns (N, size, size) float32 in [0, 1]: the deterministic half of preprocessing, cached once per run so
    that training steps never wait on PNG decoding.
    """
    from ..intake.imaging import load_image

    return _stack_squares(records, spec, lambda r: load_image(busi_path(r, root)).pixels, progress)


def load_mask_squares(records: list[BusiRecord], spec: InputSpec, root: Path | None = None) -> np.ndarray:
    """Each record's lesion mask (union), resized like its image: (N, size, size) float32 in [0, 1].

    Normal images give all-zero squares. For training's lesion-attention loss, cached once per run.
    """
    return _stack_squares(records, spec, lambda r: load_busi_mask(r, root).astype(np.float32))
