"""A model folder's checksums: the card's decision fields cannot be edited quietly.

The weights and the scope gate were already checked against SHA-256s recorded in the card, but the card itself
was not: an edited temperature, threshold, class order or scope threshold was served silently, and a 99% cancer
read "<1%, not flagged" (issue 12). Whenever medapp writes a card it also writes ``SHA256SUMS`` (the format of
``sha256sum``, so ``sha256sum -c SHA256SUMS`` checks a folder by hand) over the card, the weights and the scope
gate; loading refuses a folder whose files do not match it. An edit made on purpose goes through medapp
(``train``, ``calibrate``, ``evaluate --update-model``), which re-seals the folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import ModelLoadError

CHECKSUMS_FILE = "SHA256SUMS"
_LINE = re.compile(r"^([0-9a-f]{64})  ([A-Za-z0-9_.-]+)$")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(model_dir: str | Path, files: tuple[str, ...]) -> Path:
    """Seal ``model_dir``: one ``<sha256>  <name>`` line for each of ``files`` that exists (written atomically)."""
    folder = Path(model_dir)
    lines = [f"{sha256_file(folder / name)}  {name}" for name in files if (folder / name).is_file()]
    path = folder / CHECKSUMS_FILE
    tmp = path.with_name(CHECKSUMS_FILE + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def verify_checksums(model_dir: str | Path, required: tuple[str, ...]) -> None:
    """Refuse the folder unless ``SHA256SUMS`` lists every file in ``required`` and every listed file matches."""
    folder = Path(model_dir)
    path = folder / CHECKSUMS_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{folder} has no {CHECKSUMS_FILE}, so its model card cannot be checked for edits; install the model "
            "folder as released (medapp writes it with the card)"
        )
    listed: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        found = _LINE.match(line.strip())
        if not found:
            raise ModelLoadError(f"{path} line {number} is not '<sha256>  <file>'; the folder was altered")
        listed[found.group(2)] = found.group(1)
    for name in required:
        if name not in listed:
            raise ModelLoadError(f"{CHECKSUMS_FILE} in {folder} does not cover {name}; the folder was altered")
    for name, digest in listed.items():
        if not (folder / name).is_file() or sha256_file(folder / name) != digest:
            raise ModelLoadError(
                f"{name} in {folder} does not match {CHECKSUMS_FILE}: the model card or its files were changed "
                "after medapp wrote them (a changed threshold, temperature, class order or scope gate would change "
                "every result); reinstall the model folder as released"
            )
