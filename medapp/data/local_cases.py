"""A hospital's own labelled cases for local validation: a CSV, or a folder of ``benign/``, ``malignant/`` (and
``normal/``) sub-folders.

Unlike a training manifest (:mod:`medapp.data.manifest`), this is what a hospital hands over before trusting the
model: no split column, labels written as people write them ("Malignant", "benign "), and rows that are wrong.
A wrong row does not stop the run and is never dropped silently: it is kept as a :class:`CaseProblem` that the
report lists, so the counts a hospital reads add up to what it gave.

CSV columns: ``image`` (path relative to the CSV's folder, or to the zip's root) and ``label`` (benign | malignant |
normal), optional ``patient`` (absent: each image its own patient) and ``device``.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ..errors import DataNotFoundError, ManifestError
from ..intake.limits import IntakeLimits, check_file_size, read_regular_file
from ..model.card import CLASS_NAMES
from ..settings import get_settings
from .manifest import UNKNOWN_DEVICE

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})
MAX_CASES = 20_000  # a local validation set, not an archive; keeps a mistaken folder from running for hours
MAX_TABLE_BYTES = 8 << 20  # a labels CSV of 20,000 rows is about 1 MB


@dataclass(frozen=True)
class CaseProblem:
    """A row or file that cannot be scored, and why (shown in the report, never dropped)."""

    where: str
    problem: str


@dataclass(frozen=True)
class LocalCase:
    """One labelled image. ``read`` returns its bytes when scored, so a large set is never held in memory at once
    (a file on disk, or a member of an uploaded zip)."""

    image: str
    label: str
    patient: str
    device: str
    read: Callable[[], bytes] = field(compare=False, repr=False)


@dataclass
class LocalCases:
    """The readable labelled cases and the problems found, in the order given."""

    cases: list[LocalCase] = field(default_factory=list)
    problems: list[CaseProblem] = field(default_factory=list)
    source: str = ""


# A resolver turns an image name from the table into a reader of its bytes, or the reason it cannot be read.
Resolver = Callable[[str], "Callable[[], bytes] | str"]


def parse_case_table(text: str, where: str, resolve: Resolver) -> LocalCases:
    """Rows of a labels CSV (image, label[, patient, device]) -> cases and problems, whatever holds the images."""
    cases = LocalCases(source=where)
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in ("image", "label") if c not in header]
        if missing:
            raise ManifestError(f"{where}: the header lacks column(s) {', '.join(missing)} (found: "
                                f"{', '.join(reader.fieldnames or []) or 'no header'}); needed: image, label; "
                                "optional: patient, device")
        for row in reader:
            if len(cases.cases) + len(cases.problems) >= MAX_CASES:
                raise ManifestError(f"{where}: more than {MAX_CASES} rows; validate a sample of the site's cases")
            cells = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
            _add(cases, f"row {reader.line_num}", cells.get("image", ""), cells.get("label", ""),
                 cells.get("patient", ""), cells.get("device", ""), resolve)
    except csv.Error as e:
        raise ManifestError(f"{where} is not a readable CSV: {e}") from e
    return cases


def _add(cases: LocalCases, where: str, image: str, label: str, patient: str, device: str,
         resolve: Resolver) -> None:
    wanted = label.strip().lower()
    if wanted not in CLASS_NAMES:
        problem = f"label {label!r} is not one of {', '.join(CLASS_NAMES)}" if label else "no label"
        cases.problems.append(CaseProblem(f"{where} ({image or 'no image'})", problem))
        return
    if not image:
        cases.problems.append(CaseProblem(where, "image is empty"))
        return
    reader = resolve(image)
    if isinstance(reader, str):
        cases.problems.append(CaseProblem(f"{where} ({image})", reader))
        return
    cases.cases.append(LocalCase(image=image, label=wanted, patient=patient or f"image:{image}",
                                 device=device or UNKNOWN_DEVICE, read=reader))


def _deployment_limits() -> IntakeLimits:
    """The limits intake applies (``MEDAPP_MAX_FILE_MB`` ...), so a case is refused before it is read whole."""
    return IntakeLimits.from_settings(get_settings())


def _inside(image: str) -> bool:
    parts = PurePosixPath(image.replace("\\", "/")).parts
    return bool(parts) and not PurePosixPath(image).is_absolute() and ".." not in parts


def folder_resolver(root: Path, limits: IntakeLimits | None = None) -> Resolver:
    """Images named by paths inside ``root`` that are regular files (a link to one is followed; devices, pipes and
    folders are not), their size checked before reading."""
    limits = limits or _deployment_limits()

    def resolve(image: str) -> Callable[[], bytes] | str:
        if not _inside(image):
            return f"image {image!r} must be a path inside the CSV's folder"
        path = root / image
        if not path.is_file():  # follows links: /dev/zero or a pipe behind one is refused here
            return f"image {image!r} is not a regular file there"

        def read() -> bytes:
            return read_regular_file(path, limits)

        return read

    return resolve


def zip_resolver(archive: zipfile.ZipFile, limits: IntakeLimits | None = None) -> Resolver:
    """Images as members of an uploaded zip, decompressed one at a time and never past the file-size limit."""
    limits = limits or _deployment_limits()
    members = {info.filename: info for info in archive.infolist() if not info.is_dir()}

    def resolve(image: str) -> Callable[[], bytes] | str:
        info = members.get(image) or members.get(image.replace("\\", "/"))
        if info is None or not _inside(info.filename):
            return f"image {image!r} is not in the zip"

        def read() -> bytes:
            check_file_size(info.file_size, limits)
            with archive.open(info) as f:
                data = f.read(limits.max_file_bytes + 1)
            check_file_size(len(data), limits)
            return data

        return read

    return resolve


def read_local_cases(path: str | Path) -> LocalCases:
    """A labels CSV or a labelled folder on disk -> :class:`LocalCases`; raises only when nothing is there."""
    path = Path(path)
    if path.is_dir():
        names = [f"{label}/{p.name}" for label in CLASS_NAMES if (path / label).is_dir()
                 for p in sorted((path / label).iterdir())]
        cases = cases_from_names(names, str(path), folder_resolver(path))
        others = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name not in CLASS_NAMES)
        if others:
            cases.problems.append(CaseProblem(", ".join(others), "sub-folder(s) not named "
                                              f"{', '.join(CLASS_NAMES)}: their images have no label, not used"))
    elif path.is_file():
        check_table_size(path.stat().st_size, str(path))
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise ManifestError(f"{path} is not a UTF-8 text CSV ({e.reason}); export it as CSV UTF-8") from e
        cases = parse_case_table(text, str(path), folder_resolver(path.parent))
    else:
        raise DataNotFoundError(f"{path} is neither a CSV file nor a folder of benign/ and malignant/ images")
    return _nonempty(cases)


def read_zip_cases(archive: zipfile.ZipFile, labels_csv: str | None, where: str) -> LocalCases:
    """An uploaded zip: labelled by ``labels_csv`` (text) when given, else by its benign/, malignant/ and normal/
    folders (at any depth)."""
    resolve = zip_resolver(archive)
    if labels_csv is not None:
        return _nonempty(parse_case_table(labels_csv, where, resolve))
    names = [info.filename for info in archive.infolist() if not info.is_dir()]
    return _nonempty(cases_from_names(names, where, resolve))


def cases_from_names(names: list[str], where: str, resolve: Resolver) -> LocalCases:
    """Images labelled by the name of the folder that holds them (``.../malignant/x.png``); other files skipped."""
    cases = LocalCases(source=where)
    for name in names:
        path = PurePosixPath(name.replace("\\", "/"))
        if path.name.startswith(".") or not (path.suffix.lower() in IMAGE_SUFFIXES or not path.suffix):
            continue
        label = path.parent.name.lower()
        if label not in CLASS_NAMES:
            continue
        if len(cases.cases) + len(cases.problems) >= MAX_CASES:
            raise ManifestError(f"{where}: more than {MAX_CASES} images; validate a sample of the site's cases")
        _add(cases, name, name, label, "", "", resolve)
    return cases


def check_table_size(n_bytes: int, where: str) -> None:
    if n_bytes > MAX_TABLE_BYTES:
        raise ManifestError(f"{where} is {n_bytes >> 20} MB, too large for a labels CSV "
                            f"(at most {MAX_TABLE_BYTES >> 20} MB)")


def _nonempty(cases: LocalCases) -> LocalCases:
    if not cases.cases and not cases.problems:
        raise ManifestError(f"{cases.source} lists no images: give a CSV with image and label columns, or "
                            f"{', '.join(c + '/' for c in CLASS_NAMES)} folders of images")
    return cases


def open_zip_cases(fileobj: BinaryIO, labels_csv: str | None, where: str) -> LocalCases:
    """An uploaded zip (a binary file object, read lazily) -> cases; a damaged zip is a clear error."""
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ManifestError(f"{where} is not a readable zip file ({e}); zip the images again") from e
    if len(archive.infolist()) > 4 * MAX_CASES:
        raise ManifestError(f"{where} holds {len(archive.infolist())} entries; validate a sample of the site's cases")
    return read_zip_cases(archive, labels_csv, where)


def upload_cases(files: Mapping[str, bytes], labels_csv: str | None, labels: Mapping[str, str] | None,
                 where: str = "uploaded files") -> LocalCases:
    """Separately uploaded images, labelled by a CSV (``image`` = the file name) or by a name -> label table.
    (Already in memory; intake checks their size when they are scored.)"""

    def resolve(image: str) -> Callable[[], bytes] | str:
        if image not in files:
            return f"image {image!r} was not uploaded"
        data = files[image]
        return lambda: data

    if labels_csv is not None:
        return _nonempty(parse_case_table(labels_csv, where, resolve))
    cases = LocalCases(source=where)
    for name in files:
        _add(cases, name, name, (labels or {}).get(name, ""), "", "", resolve)
    return _nonempty(cases)
