"""Datasets as manifests: every site's images are described by one CSV, read by one code path.

A manifest is a CSV with a header row. Required columns: ``image`` (path relative to the CSV's folder), ``label``
(normal | benign | malignant) and ``split`` (train | val | test). Optional: ``patient`` (rows of one patient share
it; splits must never separate a patient; absent means each image is its own patient), ``mask`` or ``masks``
(lesion mask path(s) relative to the CSV's folder, ``;``-separated), ``site`` (default: the dataset's name) and
``device`` (the scanner; default "unknown"). Other columns are kept in ``Record.extra``.

BUSI's ``busi/splits.csv`` and BUS-BRA's ``busbra/metadata.csv`` are manifests as they ship, so both datasets, and
tomorrow a hospital's own folder, load with no new code: a training config names them (``datasets:``), and
``python -m medapp evaluate --dataset NAME`` scores one. A malformed manifest is refused with the row that is
wrong, never skipped silently.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataNotFoundError, ManifestError
from ..model.card import CLASS_NAMES

SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("image", "label", "split")
# Manifests of the datasets the project knows by name, relative to the data folder (MEDAPP_DATA_DIR).
KNOWN_MANIFESTS = {"busi": "busi/splits.csv", "busbra": "busbra/metadata.csv"}
UNKNOWN_DEVICE = "unknown"


@dataclass(frozen=True)
class Record:
    """One image of a manifest. ``image`` and ``masks`` are as written (relative to ``root``, the CSV's folder)."""

    dataset: str
    image: str
    label: str
    split: str
    patient: str
    masks: tuple[str, ...]
    site: str
    device: str
    root: Path
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label_index(self) -> int:
        return CLASS_NAMES.index(self.label)

    @property
    def path(self) -> Path:
        return self.root / self.image

    @property
    def mask_paths(self) -> list[Path]:
        return [self.root / m for m in self.masks]


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset a training config or a command names: ``name``, its ``manifest`` (a known name's default when
    empty; relative paths are under the data folder), and its sampling ``weight`` in training."""

    name: str
    manifest: str = ""
    weight: float = 1.0

    @classmethod
    def parse(cls, value: str | dict[str, Any] | DatasetSpec) -> DatasetSpec:
        """``"busi"``, ``{"name": "busbra", "weight": 2}`` or a spec."""
        if isinstance(value, DatasetSpec):
            return value
        if isinstance(value, str):
            value = {"name": value}
        unknown = sorted(set(value) - {"name", "manifest", "weight"})
        if unknown or "name" not in value:
            raise ManifestError(f"dataset entry {value!r}: expected keys name, manifest (optional), weight "
                                f"(optional){'; unknown: ' + ', '.join(unknown) if unknown else ''}")
        spec = cls(str(value["name"]), str(value.get("manifest") or ""), float(value.get("weight", 1.0)))
        if not spec.weight > 0:
            raise ManifestError(f"dataset {spec.name!r}: sampling weight must be positive, got {spec.weight}")
        if not spec.manifest and spec.name not in KNOWN_MANIFESTS:
            raise ManifestError(f"dataset {spec.name!r} is not one medapp knows ({', '.join(KNOWN_MANIFESTS)}); "
                                "give its manifest: {name: ..., manifest: path/to/manifest.csv}")
        return spec

    def manifest_path(self, data_dir: Path) -> Path:
        path = Path(self.manifest or KNOWN_MANIFESTS[self.name]).expanduser()
        return path if path.is_absolute() else data_dir / path


def _cell(row: dict[str, str | None], column: str) -> str:
    return (row.get(column) or "").strip()


def _parse_row(row: dict[str, str | None], line: int, name: str, root: Path, where: Path) -> Record:
    def bad(column: str, problem: str) -> ManifestError:
        return ManifestError(f"{where}, row {line}: {column} {problem}")

    image, label, split = (_cell(row, c) for c in REQUIRED_COLUMNS)
    if not image:
        raise bad("image", "is empty")
    if Path(image).is_absolute() or ".." in Path(image).parts:
        raise bad("image", f"{image!r} must be a path inside the manifest's folder")
    if label not in CLASS_NAMES:
        raise bad("label", f"{label!r} is not one of {', '.join(CLASS_NAMES)}")
    if split not in SPLITS:
        raise bad("split", f"{split!r} is not one of {', '.join(SPLITS)}")
    masks = tuple(m for m in (_cell(row, "masks") or _cell(row, "mask")).split(";") if m)
    known = {*REQUIRED_COLUMNS, "patient", "mask", "masks", "site", "device"}
    return Record(
        dataset=name, image=image, label=label, split=split, patient=_cell(row, "patient") or f"{name}:{image}",
        masks=masks, site=_cell(row, "site") or name, device=_cell(row, "device") or UNKNOWN_DEVICE, root=root,
        extra={k: (v or "") for k, v in row.items() if k is not None and k not in known},
    )


def read_manifest(path: Path, name: str) -> list[Record]:
    """Every row of the manifest at ``path`` as a :class:`Record` of dataset ``name``, validated row by row."""
    if not path.is_file():
        raise DataNotFoundError(f"manifest of dataset {name!r} not found at {path}; set MEDAPP_DATA_DIR to the "
                                "folder that holds it, or give the manifest's path in the config")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: the header lacks column(s) {', '.join(missing)} (found: "
                                f"{', '.join(reader.fieldnames or []) or 'no header'}); required: "
                                f"{', '.join(REQUIRED_COLUMNS)}")
        records = [_parse_row(row, reader.line_num, name, path.parent, path) for row in reader]
    if not records:
        raise ManifestError(f"{path}: the manifest lists no images")
    _check_patients_within_one_split(records, path)
    return records


def _check_patients_within_one_split(records: list[Record], where: Path) -> None:
    """Refuse a manifest whose split separates a patient's images (the test score would see the patient)."""
    splits: dict[str, str] = {}
    for r in records:
        if splits.setdefault(r.patient, r.split) != r.split:
            raise ManifestError(f"{where}: patient {r.patient!r} has images in both {splits[r.patient]} and "
                                f"{r.split} (first: {r.image}); split by patient")


def check_files(records: list[Record], where: Path) -> None:
    """Refuse records whose image or mask file is missing, naming the first and how many."""
    missing = [p for r in records for p in (r.path, *r.mask_paths) if not p.is_file()]
    if missing:
        raise DataNotFoundError(f"{len(missing)} file(s) listed in {where} are missing (first: {missing[0]}); "
                                "the data folder is incomplete")
