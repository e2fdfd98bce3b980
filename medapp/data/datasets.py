"""Datasets on disk: records from manifests (:mod:`medapp.data.manifest`), lesion masks, the 28 px BreastMNIST, and
the cached model-size squares training and evaluation work on.

The data folder comes from ``MEDAPP_DATA_DIR`` (default ``../shared/data`` beside the project). Data is read-only
and never copied into the project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..choices import Choice
from ..errors import DataNotFoundError
from ..model.card import InputSpec
from ..settings import DEFAULT_DATA_DIR, get_settings
from .manifest import DatasetSpec, Record, check_files, read_manifest

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


def load_records(dataset: str | dict | DatasetSpec, split: str | Iterable[str] | None = None,
                 root: Path | None = None) -> list[Record]:
    """The manifest rows of ``dataset`` (all, one split, or several), checked against the files on disk.

    ``root`` is the data folder (default :func:`data_dir`).
    """
    spec = DatasetSpec.parse(dataset)
    path = spec.manifest_path(Path(root) if root is not None else data_dir())
    wanted = None if split is None else {Split.parse(s) for s in ([split] if isinstance(split, str) else split)}
    records = [r for r in read_manifest(path, spec.name) if wanted is None or r.split in wanted]
    if not records:
        raise DataNotFoundError(f"{path} lists no images for split {split!r}")
    check_files(records, path)
    return records


def load_busi_records(split: str | Iterable[str] | None = None, root: Path | None = None) -> list[Record]:
    """BUSI's records (``busi/splits.csv``: the official MedMNIST BreastMNIST split)."""
    return load_records("busi", split, root)


def load_mask(record: Record) -> np.ndarray:
    """Union of the radiologists' lesion masks: (H, W) bool, all False for an image without one (normal)."""
    from PIL import Image

    union = None
    for path in record.mask_paths:
        with Image.open(path) as im:
            mask = np.asarray(im.convert("L")) > 127
        union = mask if union is None else (union | mask)
    if union is None:
        with Image.open(record.path) as im:
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
    path = (Path(root) if root is not None else data_dir()) / BREASTMNIST_FILE
    if not path.is_file():
        raise DataNotFoundError(f"BreastMNIST file not found at {path}; set MEDAPP_DATA_DIR to the folder that "
                                f"holds medmnist/ (default {DEFAULT_DATA_DIR})")
    with np.load(path) as npz:
        images = npz[f"{split}_images"]
        labels = npz[f"{split}_labels"].reshape(-1)
    return BreastMnistSplit(images=images, malignant=labels == BREASTMNIST_MALIGNANT_LABEL)


def _stack_squares(records: list[Record], spec: InputSpec, read: Callable[[Record], np.ndarray],
                   progress: bool = False) -> np.ndarray:
    """(N, size, size) float32: each record's (H, W) array from ``read``, resized by the card's policy."""
    from tqdm import tqdm

    from ..model.preprocess import resize_to_square

    out = np.empty((len(records), spec.size, spec.size), dtype=np.float32)
    for i, record in enumerate(tqdm(records, desc="decode", disable=not progress, leave=False)):
        out[i] = resize_to_square(read(record), spec)
    return out


def load_squares(records: list[Record], spec: InputSpec, progress: bool = False) -> np.ndarray:
    """Decode each image through intake (as serving does) and resize it by the card's policy.

    Returns (N, size, size) float32 in [0, 1]: the deterministic half of preprocessing, cached once per run so
    that training steps never wait on PNG decoding.
    """
    from ..intake.imaging import load_image

    return _stack_squares(records, spec, lambda r: load_image(r.path).pixels, progress)


def load_mask_squares(records: list[Record], spec: InputSpec) -> np.ndarray:
    """Each record's lesion mask (union), resized like its image: (N, size, size) float32 in [0, 1].

    Images without a mask (normal) give all-zero squares. For training's lesion-attention loss, cached once per run.
    """
    return _stack_squares(records, spec, lambda r: load_mask(r).astype(np.float32))
