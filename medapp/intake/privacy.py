"""Patient privacy: safe metadata and a PHI-free audit log.

A DICOM header carries the patient's name, IDs, birth date, the institution and the physicians; file names often
carry the patient's name too. medapp keeps only the fields in :data:`SAFE_METADATA_KEYS` (equipment and pixel
format, never a person, place, date, free text or UID) and never logs file names. De-identified DICOM copies are
:mod:`medapp.intake.deidentify`'s job.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydicom import config as pydicom_config

from ..errors import AuditLogError

log = logging.getLogger(__name__)

# pydicom's read validation warns with the offending value ("Invalid value for VR DA: '19610203x'"), which would put
# a birth date or name into medapp's logs. medapp never trusts header values it does not use, so it turns this
# process-wide check off; values medapp does use are converted and checked where they are read.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE

# Equipment and pixel-format fields: none identifies a person (PS3.15 Table E.1-1 keeps all of them).
SAFE_METADATA_KEYS = frozenset(
    {
        "format", "mode", "bit_depth",  # raster
        "modality", "body_part", "manufacturer", "manufacturer_model", "sop_class", "photometric_interpretation",
        "transfer_syntax", "bits_allocated", "bits_stored", "pixel_representation", "samples_per_pixel",
        "burned_in_annotation", "laterality",
    }
)  # fmt: skip


def safe_metadata(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the :data:`SAFE_METADATA_KEYS` with a non-empty value; anything else is dropped."""
    return {k: v for k, v in fields.items() if k in SAFE_METADATA_KEYS and v not in (None, "")}


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of the uploaded bytes: identifies the file in the audit log without naming it."""
    return hashlib.sha256(data).hexdigest()


_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Keys that would put identity or a file name into the log; refused wherever they appear.
_FORBIDDEN_KEYS = frozenset(
    {"patient", "patient_name", "patientname", "patient_id", "patientid", "birth_date", "birthdate", "accession",
     "accession_number", "filename", "file_name", "path", "filepath", "file_path", "institution", "physician"}
)  # fmt: skip


def _check_keys(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for key, sub in value.items():
            if str(key).lower() in _FORBIDDEN_KEYS:
                raise ValueError(f"audit {where} has a field {key!r} that could identify a patient; leave it out")
            _check_keys(sub, where)
    elif isinstance(value, (list, tuple)):
        for sub in value:
            _check_keys(sub, where)


class AuditLog:
    """Append-only JSON-lines record of each analysis: UTC time, SHA-256 of the bytes, model, outputs.

    No file names and no patient fields: the SHA-256 lets an auditor match an entry to a file they hold, without
    the log revealing whose it was. Each entry is one ``write`` under an exclusive ``fcntl.flock``, so concurrent
    writers (Streamlit sessions, CLI runs) never interleave lines.

    ``user`` names who asked (the signed-in clinician, or a stated stand-in such as "local (sign-in off)"), written
    as each entry's ``user`` field: a clinician's identity is not the patient's, so it is allowed here.
    """

    def __init__(self, path: str | Path, user: str | None = None) -> None:
        if user is not None and (not isinstance(user, str) or not user.strip()):
            raise ValueError(f"audit user must be a non-empty string or None, got {user!r}")
        self.path = Path(path)
        self.user = user

    def record(self, *, file_sha256: str, model: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
        """Append one entry and return it. ``model`` holds e.g. name, version and weights sha256."""
        if not _SHA256.match(file_sha256):
            raise ValueError(f"file_sha256 must be 64 lowercase hex digits, got {len(file_sha256)} characters")
        _check_keys(model, "model")
        _check_keys(outputs, "outputs")
        entry = {
            "time_utc": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "file_sha256": file_sha256,
            "model": dict(model),
            "outputs": dict(outputs),
        }
        if self.user is not None:
            entry["user"] = self.user
        line = (json.dumps(entry, sort_keys=True, allow_nan=False, default=_jsonable) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line (a crash mid-write):
                        line = b"\n" + line                          # end it, so this entry stays whole
                    _write_all(fd, line)
                    os.fsync(fd)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        except OSError as e:
            raise AuditLogError(
                f"the audit log {self.path} cannot be written ({type(e).__name__}: {e.strerror or e}); no result is "
                "shown until it can be. Ask the administrator to check MEDAPP_AUDIT_LOG and the folder's permissions"
            ) from e
        return entry

    def read(self) -> list[dict[str, Any]]:
        """All whole entries, oldest first (empty if the log does not exist yet). A line torn by a crash is
        skipped with a warning naming its line number, so one bad line never hides the rest of the record."""
        if not self.path.exists():
            return []
        entries = []
        with self.path.open(encoding="utf-8", errors="replace") as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("audit log %s: line %d is not a whole entry (torn by a crash?); skipped",
                                self.path, number)
        return entries


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (one call may write fewer, e.g. on a full disk or a signal)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError("the audit log accepted no bytes")
        view = view[written:]


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays in outputs become plain JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"audit outputs must be JSON-serialisable, got {type(value).__name__}")
