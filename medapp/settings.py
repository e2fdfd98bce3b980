"""Deployment settings: every ``MEDAPP_*`` environment variable, read in this one module, once per process.

A hospital's IT sets these, not a clinician; the README's Configuration table lists the same variables, and a test
per variable proves that each one changes behaviour. Code asks :func:`get_settings` instead of ``os.environ``, so
a setting cannot be read in one place and forgotten in another (the intake limits once were documented but never
read). :func:`reload_settings` re-reads the environment (tests, or a long-lived process after a change).

Variables that belong to other programs (torchrun's ``WORLD_SIZE`` and ``LOCAL_RANK``) stay with the code that
speaks their protocol.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = PROJECT_ROOT / "models"
DEFAULT_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
DEFAULT_AUDIT_LOG = PROJECT_ROOT / "artifacts" / "audit.jsonl"
DEFAULT_DEID_SECRET = PROJECT_ROOT / "artifacts" / "deid_secret"
# A megabyte as Streamlit's uploader counts it (server.maxUploadSize = 128 accepts 128,000,000 bytes; its frontend
# counts 1024s only on Windows), so the browser's limit and intake's are one number, shown on the uploader.
MB = 1_000_000

DATA_DIR_ENV = "MEDAPP_DATA_DIR"
MODEL_DIR_ENV = "MEDAPP_MODEL_DIR"
AUDIT_LOG_ENV = "MEDAPP_AUDIT_LOG"
DEID_SECRET_ENV = "MEDAPP_DEID_SECRET_FILE"
MAX_FILE_MB_ENV = "MEDAPP_MAX_FILE_MB"
MAX_PIXELS_ENV = "MEDAPP_MAX_PIXELS"
MIN_SIDE_ENV = "MEDAPP_MIN_SIDE"
PACS_URL_ENV = "MEDAPP_PACS_URL"
PACS_USER_ENV = "MEDAPP_PACS_USER"
PACS_PASSWORD_FILE_ENV = "MEDAPP_PACS_PASSWORD_FILE"
PACS_CA_BUNDLE_ENV = "MEDAPP_PACS_CA_BUNDLE"
PACS_TIMEOUT_ENV = "MEDAPP_PACS_TIMEOUT"


@dataclass(frozen=True)
class Settings:
    """Resolved settings. ``model_dir`` None means "the single model folder under models/".

    Intake limits: ``max_file_bytes`` bounds what is read into memory at all; ``max_pixels`` bounds one decoded
    frame (40 Mpx is larger than any mammogram or ultrasound and keeps the float32 working copies under ~200 MB
    each); ``min_side`` is the shortest side worth judging.

    PACS (:mod:`medapp.pacs.client`): the DICOMweb base URL, the user, a file holding the password (never the
    password itself: the environment is readable by child processes and shows up in crash reports), a CA bundle
    for TLS (None: the system's), and the seconds one request may take.
    """

    data_dir: Path = DEFAULT_DATA_DIR
    model_dir: Path | None = None
    audit_log: Path = DEFAULT_AUDIT_LOG
    deid_secret_file: Path = DEFAULT_DEID_SECRET
    max_file_bytes: int = 128 * MB
    max_pixels: int = 40_000_000
    min_side: int = 32
    pacs_url: str | None = None
    pacs_user: str | None = None
    pacs_password_file: Path | None = None
    pacs_ca_bundle: Path | None = None
    pacs_timeout: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by the ``MEDAPP_*`` variables that are set (an empty value counts as unset)."""
        env = os.environ if environ is None else environ
        base = cls()

        def path(name: str, default: Path | None) -> Path | None:
            value = env.get(name, "").strip()
            return Path(value).expanduser() if value else default

        def number(name: str, default: float, cast: type) -> float:
            value = env.get(name, "").strip()
            if not value:
                return default
            try:
                parsed = cast(float(value)) if cast is int else cast(value)
            except ValueError as e:
                raise ConfigError(f"{name}={value!r} is not a number; set it to a plain number or unset it") from e
            if parsed <= 0:
                raise ConfigError(f"{name}={value!r} must be positive")
            return parsed

        return cls(
            data_dir=path(DATA_DIR_ENV, base.data_dir),
            model_dir=path(MODEL_DIR_ENV, None),
            audit_log=path(AUDIT_LOG_ENV, base.audit_log),
            deid_secret_file=path(DEID_SECRET_ENV, base.deid_secret_file),
            max_file_bytes=int(number(MAX_FILE_MB_ENV, base.max_file_bytes / MB, float) * MB),
            max_pixels=int(number(MAX_PIXELS_ENV, base.max_pixels, int)),
            min_side=int(number(MIN_SIDE_ENV, base.min_side, int)),
            pacs_url=env.get(PACS_URL_ENV, "").strip() or None,
            pacs_user=env.get(PACS_USER_ENV, "").strip() or None,
            pacs_password_file=path(PACS_PASSWORD_FILE_ENV, None),
            pacs_ca_bundle=path(PACS_CA_BUNDLE_ENV, None),
            pacs_timeout=float(number(PACS_TIMEOUT_ENV, base.pacs_timeout, float)),
        )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()


def reload_settings() -> Settings:
    """Forget the cached settings and read the environment again."""
    get_settings.cache_clear()
    return get_settings()
