"""Patient privacy: safe metadata, DICOM de-identification and a PHI-free audit log.

A DICOM header carries the patient's name, IDs, birth date, the institution and the physicians; file names often
carry the patient's name too. medapp keeps only the fields in :data:`SAFE_METADATA_KEYS` (equipment and pixel
format, never a person, place, date, free text or UID), never logs file names, and de-identifies DICOM per the
DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile before anything leaves the process.
"""

from __future__ import annotations

import copy
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary as _STANDARD_UIDS

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
        "burned_in_annotation",
    }
)  # fmt: skip

PROFILE_NAME = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
METHOD_TEXT = "PS3.15 Annex E Basic Profile, medapp"  # De-identification Method is LO: 64 characters at most
# PS3.16 CID 7050 code for the profile, recorded in De-identification Method Code Sequence (PS3.3 C.7.1.1).
PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

# PS3.15 Table E.1-1 actions for the Basic Profile. Z: keep the element with an empty value (Type 2 in most IODs);
# X: remove it. UIDs (action U) are handled by VR below, any PN by VR too, private tags (action X) wholesale.
_ZERO = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "ReferringPhysicianName",
    "StudyID", "StudyDate", "StudyTime", "ContentDate", "ContentTime", "ContentCreatorName",
)  # fmt: skip
_REMOVE = (
    "PatientAge", "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "OtherPatientIDs",
    "OtherPatientNames", "OtherPatientIDsSequence", "PatientAddress", "PatientTelephoneNumbers", "PatientSize",
    "PatientWeight", "EthnicGroup", "Occupation", "MilitaryRank", "BranchOfService", "MedicalRecordLocator",
    "PatientReligiousPreference", "PatientComments", "AdditionalPatientHistory", "PatientInsurancePlanCodeSequence",
    "CountryOfResidence", "RegionOfResidence", "ResponsiblePerson", "ResponsibleOrganization", "PatientState",
    "PregnancyStatus", "MedicalAlerts", "Allergies", "SmokingStatus", "LastMenstrualDate", "SpecialNeeds",
    "IssuerOfPatientID", "AdmissionID", "AdmittingDiagnosesDescription", "CurrentPatientLocation",
    "PatientInstitutionResidence", "VisitComments", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "InstitutionCodeSequence", "StationName", "DeviceSerialNumber",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PerformingPhysicianName", "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "OperatorsName", "OperatorIdentificationSequence", "RequestingPhysician", "RequestingService",
    "ScheduledPerformingPhysicianName", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
    "AcquisitionDateTime", "InstanceCreationDate", "InstanceCreationTime", "StudyDescription", "SeriesDescription",
    "ProtocolName", "ImageComments", "DerivationDescription", "RequestedProcedureDescription",
    "RequestedProcedureID", "ReasonForStudy", "RequestAttributesSequence", "PerformedProcedureStepDescription",
    "PerformedProcedureStepID", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "ScheduledProcedureStepDescription", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest", "TextComments", "TextString", "ReferencedPatientSequence",
    "ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence", "SourceApplicationEntityTitle",
    "IdentifyingComments", "FrameComments", "InterpretationText", "ContentSequence", "DetectorID", "GantryID",
)  # fmt: skip


class BurnedInTextWarning(UserWarning):
    """The pixels themselves may show patient-identifying text, which header de-identification cannot remove."""


def safe_metadata(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the :data:`SAFE_METADATA_KEYS` with a non-empty value; anything else is dropped."""
    return {k: v for k, v in fields.items() if k in SAFE_METADATA_KEYS and v not in (None, "")}


def hash_uid(uid: str, salt: str = "") -> str:
    """A stable replacement for ``uid``: a ``2.25.`` UID derived from SHA-512 of (salt, uid).

    The same input always gives the same output, so series and studies stay linked after de-identification
    (PS3.15 E.3.9 allows hashed replacements). A secret ``salt`` stops dictionary attacks on known UIDs.
    """
    digest = hashlib.sha512(f"{salt}\x00{uid}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"  # PS3.5 B.2: "2.25." + a 128-bit integer (UUID form)


def _is_standard_uid(value: str) -> bool:
    """SOP classes, transfer syntaxes and coding schemes are defined by the standard and carry no PHI."""
    return value in _STANDARD_UIDS


def _clean(ds: Dataset, salt: str) -> None:
    """Apply the profile to one dataset level, then recurse into sequences (PS3.15 E.1.1: items too)."""
    ds.remove_private_tags()  # PS3.15 Table E.1-1: private attributes X (Retain Safe Private is an option)
    for keyword in _REMOVE:
        if keyword in ds:
            del ds[keyword]
    for keyword in _ZERO:
        if keyword in ds:
            ds[keyword].value = None
    for tag in [t for t in ds.keys() if t.group & 0xFF00 in (0x5000, 0x6000)]:
        del ds[tag]  # curves and overlays may hold drawn text (Table E.1-1: Overlay Data, Curve Data X)
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value or Sequence():
                _clean(item, salt)
        elif elem.VR == "PN" and elem.value:
            elem.value = None  # any remaining person name (observers, verifiers): PS3.15 D/Z actions
        elif elem.VR == "UI" and elem.value:
            values = elem.value if isinstance(elem.value, list) else [elem.value]
            new = [v if _is_standard_uid(str(v)) else hash_uid(str(v), salt) for v in values if v]
            elem.value = new if len(new) != 1 else new[0]


def deidentify(dataset: Dataset, *, salt: str = "") -> Dataset:
    """A de-identified copy of ``dataset``; the input is not changed and the pixel data is byte-identical.

    Follows the Basic Application Level Confidentiality Profile (PS3.15 Annex E, Table E.1-1) for the attributes
    present: identifying attributes removed or emptied, every non-standard UID replaced by :func:`hash_uid`
    (consistently, also in the file meta), private tags dropped, Patient Identity Removed = YES and the method
    recorded (PS3.3 C.7.1.1). Warns with :class:`BurnedInTextWarning` when Burned In Annotation (PS3.3 C.7.6.1.1.3)
    is YES, or is absent on ultrasound, whose images usually carry the name in the pixels.
    """
    ds = copy.deepcopy(dataset)
    burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
    if burned == "YES":
        warnings.warn(
            "Burned In Annotation is YES: text drawn in the pixels may identify the patient and is not removed; "
            "check the image or crop the annotation before sharing",
            BurnedInTextWarning,
            stacklevel=2,
        )
    elif not burned and str(ds.get("Modality", "")) == "US":
        warnings.warn(
            "ultrasound without Burned In Annotation: ultrasound images usually show the patient's name or ID in "
            "the pixels, which de-identification of the header does not remove; check the image before sharing",
            BurnedInTextWarning,
            stacklevel=2,
        )
    _clean(ds, salt)
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
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

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
