"""DICOM de-identification: PS3.15 Annex E's Basic Profile table, applied to every level, UIDs salted per site.

The table is not hand-picked: it is PS3.15 Table E.1-1 as generated from the standard's current edition by
KitwareMedical's ``dicom-anonymizer`` (its ``dicomfields_2026c`` database, :data:`TABLE_EDITION`), about 650
attributes with their actions. medapp applies one action per attribute (:func:`action_for`):

- ``X`` (and ``X/D``) remove; ``Z`` and every choice that allows ``Z`` (``Z/D``, ``X/Z``, ``X/Z/D``) keep the element
  with an empty value, which keeps Type 2 attributes present and says no more than removal;
- ``D`` replace with a dummy of the element's VR (a sequence is kept and its items cleaned, binary data removed);
- ``U`` (and ``X/Z/U*`` sequences' UIDs) replace with :func:`hash_uid` under the site's secret.

Then medapp goes further than the Basic Profile, because free text written at the hospital can name anyone and the
profile's options that would catch it (Clean Descriptors, Clean Structured Content) are not in the table:
every remaining non-standard UID is hashed, every person name emptied, every date and time emptied, private
attributes, curves and overlays removed, and every free-text element (VR LO, SH, ST, LT, UT, UC) removed unless it is
one of the technical fields in :data:`TECHNICAL_TEXT`; a code's meaning is kept only for the standard coding
schemes in :data:`STANDARD_SCHEMES` (a local scheme's meaning is free text). All of it recurses into sequences,
bounded by intake's nesting limit.

UIDs are hashed with a per-site secret (:func:`site_secret`): the same site always maps a UID to the same
replacement, so studies and series stay linked, but nobody without the secret can re-link them by hashing the
originals.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import secrets
import warnings
from pathlib import Path

from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as annex_e
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID_dictionary as _STANDARD_UIDS

from ..errors import ConfigError, InvalidImageError
from ..settings import get_settings
from .dicom import MAX_SEQUENCE_DEPTH

log = logging.getLogger(__name__)

TABLE_EDITION = "DICOM PS3.15 Table E.1-1, 2026c edition (dicom-anonymizer 2.1.0, dicomfields_2026c)"
PROFILE_NAME = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
METHOD_TEXT = "PS3.15 Annex E Basic Profile 2026c, medapp"  # De-identification Method is LO: 64 characters at most
# PS3.16 CID 7050 code for the profile, recorded in De-identification Method Code Sequence (PS3.3 C.7.1.1).
PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
MIN_SECRET_CHARS = 32

# Free-text elements that describe equipment or encoding, never a person: kept. Everything else of a text VR goes.
TECHNICAL_TEXT = frozenset(
    {
        "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "TransducerData", "RescaleType",
        "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "ContextIdentifier", "MappingResource",
        "LongCodeValue", "URNCodeValue", "DeidentificationMethod",
    }
)  # fmt: skip
# Coding schemes whose code meanings the standard or the scheme defines (PS3.16 Table 8-1): not free text.
STANDARD_SCHEMES = frozenset({"DCM", "SCT", "SRT", "LN", "UCUM", "FMA", "RADLEX", "NCIt", "UMLS", "ACR"})
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "UR"})
_DUMMY = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000Y", "PN": "Anonymized",
          "CS": "ANONYMIZED", "AE": "ANONYMIZED"}  # fmt: skip
_TEXT_DUMMY = "ANONYMIZED"

# The table's action groups, each mapped to the one action medapp applies (see the module docstring).
_GROUPS = {
    "X_TAGS": "X", "X_D_TAGS": "X",
    "Z_TAGS": "Z", "Z_D_TAGS": "Z", "X_Z_TAGS": "Z", "X_Z_D_TAGS": "Z",
    "D_TAGS": "D",
    "U_TAGS": "U", "X_Z_U_STAR_TAGS": "U",
}  # fmt: skip


def _load_table() -> tuple[dict[int, str], list[tuple[int, int, int, int, str]]]:
    """Exact tags -> action, and masked tags (group 50xx/60xx repeating groups) as (tag, mask, action)."""
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for group_name, action in _GROUPS.items():
        for entry in getattr(annex_e, group_name):
            if len(entry) == 4:
                group, element, group_mask, element_mask = entry
                masked.append((group, element, group_mask, element_mask, action))
            else:
                exact[(entry[0] << 16) | entry[1]] = action
    return exact, masked


_EXACT, _MASKED = _load_table()


def action_for(tag: BaseTag | int) -> str | None:
    """The table's action for ``tag`` as medapp applies it (X, Z, D or U), or None if the table does not name it."""
    tag = Tag(tag)
    if int(tag) in _EXACT:
        return _EXACT[int(tag)]
    for group, element, group_mask, element_mask, action in _MASKED:
        if tag.group & group_mask == group and tag.element & element_mask == element:
            return action
    return None


def table_size() -> int:
    """How many attributes (or repeating-group patterns) the table names: a check that it loaded whole."""
    return len(_EXACT) + len(_MASKED)


class BurnedInTextWarning(UserWarning):
    """The pixels themselves may show patient-identifying text, which header de-identification cannot remove."""


def hash_uid(uid: str, salt: str) -> str:
    """A stable replacement for ``uid``: a ``2.25.`` UID derived from SHA-512 of (salt, uid).

    The same input and salt always give the same output, so series and studies stay linked after
    de-identification (PS3.15 E.3.9 allows hashed replacements). The salt is the site's secret: without it nobody
    can recompute the mapping from original UIDs they hold.
    """
    if len(salt) < MIN_SECRET_CHARS:
        raise ConfigError(f"the UID salt must be a site secret of at least {MIN_SECRET_CHARS} characters")
    digest = hashlib.sha512(f"{salt}\x00{uid}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"  # PS3.5 B.2: "2.25." + a 128-bit integer (UUID form)


def site_secret(path: Path | None = None) -> str:
    """The site's de-identification secret, created (random, 256 bits, owner-only) on first use.

    Kept in ``MEDAPP_DEID_SECRET_FILE`` (default ``artifacts/deid_secret``, never committed). Every copy made at the
    site uses it, so the same study always gets the same replacement UIDs; back it up like a key, since a new
    secret gives new UIDs that no longer link to earlier copies.
    """
    path = path or get_settings().deid_secret_file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise ConfigError(f"the de-identification secret {path} cannot be created ({e.strerror or e}); set "
                          "MEDAPP_DEID_SECRET_FILE to a writable place") from e
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        log.info("created a new de-identification secret for this site")
    try:
        secret = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"the de-identification secret {path} cannot be read; check MEDAPP_DEID_SECRET_FILE") from e
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"the de-identification secret {path} is shorter than {MIN_SECRET_CHARS} characters; "
                          "remove it to have a new one created")
    return secret


def _is_standard_uid(value: str) -> bool:
    """SOP classes, transfer syntaxes and coding schemes are defined by the standard and carry no PHI."""
    return value in _STANDARD_UIDS


def _hash_uids(value: object, salt: str) -> object:
    values = value if isinstance(value, list) else [value]
    new = [v if _is_standard_uid(str(v)) else hash_uid(str(v), salt) for v in values if v]
    return new if len(new) != 1 else new[0]


def _dummy(elem_vr: str) -> str:
    return _DUMMY.get(elem_vr, _TEXT_DUMMY)


def _clean(ds: Dataset, salt: str, depth: int) -> None:
    """Apply the table and medapp's stricter rules to one dataset level, then to every item of its sequences."""
    if depth > MAX_SEQUENCE_DEPTH:
        raise InvalidImageError(f"DICOM sequences are nested more than {MAX_SEQUENCE_DEPTH} deep; refused")
    ds.remove_private_tags()  # PS3.15 Table E.1-1: private attributes X (Retain Safe Private is an option)
    standard_code = str(ds.get("CodingSchemeDesignator", "") or "") in STANDARD_SCHEMES
    for elem in list(ds):
        action = action_for(elem.tag)
        if action == "X" or (action == "D" and elem.VR in _BINARY_VRS):
            del ds[elem.tag]
            continue
        if elem.VR == "SQ":  # sequences are kept (also for Z/D/U*) with every item cleaned: PS3.15 E.1.1
            if action == "Z":
                elem.value = Sequence()
            for item in elem.value or Sequence():
                _clean(item, salt, depth + 1)
        elif elem.VR == "UI" and elem.value:
            elem.value = _hash_uids(elem.value, salt)
        elif action == "Z" or elem.VR == "PN" or elem.VR in _DATE_VRS:
            if action == "D" and elem.value not in (None, ""):
                elem.value = _dummy(elem.VR)
            else:
                elem.value = None
        elif action == "D":
            elem.value = _dummy(elem.VR)
        elif (elem.VR in _TEXT_VRS and elem.keyword not in TECHNICAL_TEXT
              and not (elem.keyword == "CodeMeaning" and standard_code)):
            del ds[elem.tag]  # free text written at the site (comments, reasons, local code meanings)


def _warn_burned_in(ds: Dataset) -> None:
    burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
    if burned == "YES":
        warnings.warn(
            "Burned In Annotation is YES: text drawn in the pixels may identify the patient and is not removed; "
            "check the image or crop the annotation before sharing",
            BurnedInTextWarning,
            stacklevel=3,
        )
    elif not burned and str(ds.get("Modality", "")) == "US":
        warnings.warn(
            "ultrasound without Burned In Annotation: ultrasound images usually show the patient's name or ID in "
            "the pixels, which de-identification of the header does not remove; check the image before sharing",
            BurnedInTextWarning,
            stacklevel=3,
        )


def deidentify(dataset: Dataset, *, salt: str | None = None) -> Dataset:
    """A de-identified copy of ``dataset``; the input is not changed and the pixel data is byte-identical.

    ``salt`` defaults to the site's secret (:func:`site_secret`). Records Patient Identity Removed = YES and the
    method (PS3.3 C.7.1.1), including the file meta's instance UID. Warns with :class:`BurnedInTextWarning` when
    Burned In Annotation is YES, or is absent on ultrasound, whose images usually carry the name in the pixels.
    """
    salt = site_secret() if salt is None else salt
    hash_uid("", salt)  # refuse a short salt before any work
    ds = copy.deepcopy(dataset)
    _warn_burned_in(ds)
    _clean(ds, salt, depth=0)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        elif meta.get("MediaStorageSOPInstanceUID"):
            meta.MediaStorageSOPInstanceUID = hash_uid(meta.MediaStorageSOPInstanceUID, salt)
        for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                        "ReceivingApplicationEntityTitle", "PrivateInformation"):  # fmt: skip
            if keyword in meta:
                del meta[keyword]
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD_TEXT
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    ds.LongitudinalTemporalInformationModified = "REMOVED"  # dates were emptied or removed (PS3.15 E.3.6)
    log.info("de-identified a DICOM dataset (%s)", PROFILE_NAME)
    return ds
