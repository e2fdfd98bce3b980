"""The radiologist's own record of a case: what they typed about it and their sign-off (issue 13, items 7 and 8).

medapp never reads a case label from the DICOM header (it would be an accession number, i.e. PHI, in every
download's name): the clinician types it, and it goes only where they take the report. Laterality and the lesion's
clock position and distance from the nipple are typed, or taken from the file when it states laterality and the
clinician chooses it. The sign-off (agree or not, their own BI-RADS category, a comment) is recorded with who and
when, and travels into the PDF and the audit log beside the model and calibration that produced the estimate.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from dataclasses import asdict, dataclass

from ..errors import MedAppError
from ..intake.medical_image import MedicalImage

LATERALITIES = ("left", "right")
# The radiologist's final assessment categories for breast ultrasound (ACR BI-RADS 5th edition).
BIRADS_ASSESSMENTS = ("0", "1", "2", "3", "4A", "4B", "4C", "5", "6")
MAX_LABEL_CHARS = 64
MAX_COMMENT_CHARS = 1000
MAX_DISTANCE_CM = 30.0


class CaseEntryError(MedAppError, ValueError):
    """A typed case detail or sign-off is not valid (too long, out of range, not a category)."""


def _clean_text(value: str, limit: int, what: str) -> str:
    """One line of printable text: control characters (newlines included) become spaces, runs of spaces one."""
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in str(value or ""))
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > limit:
        raise CaseEntryError(f"the {what} is {len(text)} characters long; keep it under {limit + 1}")
    return text


@dataclass(frozen=True)
class CaseDetails:
    """What the clinician typed about the case; every field optional."""

    label: str = ""
    laterality: str | None = None
    clock: int | None = None  # 1-12, as on a clock face seen from the front
    distance_cm: float | None = None  # from the nipple

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", _clean_text(self.label, MAX_LABEL_CHARS, "case label"))
        if self.laterality is not None and self.laterality not in LATERALITIES:
            raise CaseEntryError(f"laterality must be left or right, not {self.laterality!r}")
        if self.clock is not None and not (isinstance(self.clock, int) and 1 <= self.clock <= 12):
            raise CaseEntryError(f"the clock position must be a whole hour from 1 to 12, not {self.clock!r}")
        if self.distance_cm is not None and not (math.isfinite(self.distance_cm)
                                                 and 0 <= self.distance_cm <= MAX_DISTANCE_CM):
            raise CaseEntryError(f"the distance from the nipple must be 0-{MAX_DISTANCE_CM:g} cm")

    @property
    def location(self) -> str:
        """"left breast, 2 o'clock, 3 cm from the nipple" (what is known), or "" when nothing was given."""
        parts = [f"{self.laterality} breast"] if self.laterality else []
        if self.clock is not None:
            parts.append(f"{self.clock} o'clock")
        if self.distance_cm is not None:
            parts.append(f"{self.distance_cm:g} cm from the nipple")
        return ", ".join(parts)


def laterality_from_file(value: str | None) -> str | None:
    """DICOM Image Laterality / Laterality ("L", "R") as left/right; None for anything else (e.g. "B", "U")."""
    return {"L": "left", "R": "right"}.get(str(value or "").strip().upper())


@dataclass(frozen=True)
class SignOff:
    """The radiologist's verdict on the model's estimate, with who and when."""

    agrees: bool
    birads: str
    comment: str
    user: str
    time_utc: str

    @classmethod
    def make(cls, *, agrees: bool, birads: str, comment: str, user: str,
             now: dt.datetime | None = None) -> SignOff:
        if birads not in BIRADS_ASSESSMENTS:
            raise CaseEntryError(f"choose a BI-RADS assessment category ({', '.join(BIRADS_ASSESSMENTS)})")
        when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        return cls(agrees=bool(agrees), birads=birads, comment=_clean_text(comment, MAX_COMMENT_CHARS, "comment"),
                   user=_clean_text(user, 200, "user name") or "unknown",
                   time_utc=when.isoformat(timespec="seconds").replace("+00:00", "Z"))

    @property
    def summary(self) -> str:
        verdict = "agrees with" if self.agrees else "disagrees with"
        return f"{self.user} {verdict} the model estimate; BI-RADS {self.birads} ({self.time_utc})"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def report_filename(label: str, when: dt.datetime | None = None, *, suffix: str = "pdf") -> str:
    """``medapp_<label>_<YYYY-MM-DD>.pdf`` from the typed label (letters, digits, ``-`` and ``_`` only, so no path
    or markup can be built from it); ``medapp_report_<date>.pdf`` without one."""
    day = (when or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%d")
    ascii_label = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", ascii_label).strip("_")[:40]
    return f"medapp_{safe or 'report'}_{day}.{suffix}"


_FACT_NAMES = {"modality": "Modality", "manufacturer": "Manufacturer", "manufacturer_model": "Model",
               "body_part": "Body part", "photometric_interpretation": "Colour", "transfer_syntax": "Encoding",
               "bits_stored": "Bits stored", "burned_in_annotation": "Burned-in annotation (file says)",
               "laterality": "Laterality (file says)", "format": "Format", "mode": "Pixel mode"}


def image_facts(image: MedicalImage) -> list[dict[str, str]]:
    """The image's facts as readable rows (what intake saw; no patient field is ever among them)."""
    height, width = image.original_size
    rows = [("Format", image.source_kind.upper()), ("Size", f"{width} x {height} px"),
            ("Frame", f"{image.frame_index + 1} of {image.frame_count}")]
    if image.pixel_spacing_mm:
        rows.append(("Pixel spacing", f"{image.pixel_spacing_mm[0]:g} x {image.pixel_spacing_mm[1]:g} mm"))
    if image.scan_region:
        top, left, bottom, right = image.scan_region
        rows.append(("Scan region (file says)", f"{right - left} x {bottom - top} px at ({left}, {top})"))
    rows += [(_FACT_NAMES[k], str(v)) for k, v in image.metadata.items() if k in _FACT_NAMES and k != "format"]
    return [{"Item": k, "Value": v} for k, v in rows]
