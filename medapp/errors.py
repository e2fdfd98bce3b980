"""Typed errors that a clinician can read.

Every error medapp raises on purpose is a :class:`MedAppError`. Concrete errors also subclass the matching
builtin so callers that only know Python's exceptions still catch them (MONAI's pattern). Pages catch
``MedAppError`` alone and show its message; anything else is a bug.

A message names what was found, what was expected, and what to do.
"""

from __future__ import annotations


class MedAppError(Exception):
    """Base class of every error medapp raises deliberately."""


class InvalidImageError(MedAppError, ValueError):
    """The bytes are not a readable image (empty, truncated, corrupt, not an image at all)."""


class UnsupportedImageError(MedAppError, ValueError):
    """A readable file that medapp will not judge (no pixels, wrong pixel format, too small, too large)."""


class DataNotFoundError(MedAppError, FileNotFoundError):
    """The training/evaluation data folder is missing or incomplete."""


class ModelLoadError(MedAppError, RuntimeError):
    """A model folder is missing, incomplete, or its weights do not match the card's checksum."""


class ConfigError(MedAppError, ValueError):
    """A training or evaluation configuration names an unknown key or an invalid value."""


class ManifestError(MedAppError, ValueError):
    """A dataset manifest (CSV) is malformed: a missing column, or a row with an invalid value."""


class SiteProfileError(MedAppError, ValueError):
    """A site profile cannot be fitted (too few local cases) or applied (another model, a malformed file)."""


class AuditLogError(MedAppError, OSError):
    """The audit log cannot be written or read; no result is shown that the log did not record."""


class ExportNotConfirmedError(MedAppError, ValueError):
    """An image without a known scan region would leave medapp whole: the user must choose how (blank the text bands,
    or confirm the whole image shows no patient details) before any export is made."""


class PacsError(MedAppError, OSError):
    """The PACS cannot be reached, is too slow, refuses the credentials or answers an error; or a DICOMweb
    answer is not what the standard says. Nothing is stored twice and nothing is reported as stored that was not."""
