"""Results as standard DICOM objects, for the same study in the same PACS: a TID 1500 SR and the PDF as Encapsulated
PDF (the lesion outline's SEG: :mod:`medapp.pacs.outline`).

Per analysed image medapp writes:

- a **Comprehensive SR** (PS3.3 A.35.3) holding a **TID 1500 Measurement Report** (PS3.16), built with highdicom:
  one Measurements and Qualitative Evaluations group (TID 1501) that references the source SOP Instance (and its
  frame), names the algorithm (model name, version, weights SHA-256, calibration, threshold; TID 4019), and holds
  P(malignant) as (111047, DCM, "Probability of cancer"), the operating threshold (122411, DCM, "Threshold Value"),
  the scope score and its limit, and as coded evaluations: within intended use, the likelihood band, at or above
  the threshold, low confidence. Concepts the standard has no code for use medapp's local scheme ``99MEDAPP``
  (PS3.16 8.2: a private scheme starts with "99"), declared in the Coding Scheme Identification Sequence. The SR
  is PRELIMINARY and UNVERIFIED unless a radiologist signed the result (below);
- when the model outlined a lesion, a **Segmentation** (PS3.3 A.51) of the outline on the source's pixel grid, and
  in the SR one TID 1410 group per outlined lesion (its measurements and descriptors) that references its segment
  (:mod:`medapp.pacs.outline`);
- an **Encapsulated PDF** (PS3.3 A.45.1) of the same report the app offers for download.

**A radiologist's sign-off** (:class:`~medapp.serving.reading.SignOff`, given on the Diagnose page) makes the SR
VERIFIED and FINAL: who signed and when go into the Verifying Observer Sequence (PS3.3 C.17.2: the signer's
identity as medapp knows it, the sign-off's time), and what they decided into the content, in TID 1500's
Qualitative Evaluations container (row 12): agrees with the model estimate (yes/no), their BI-RADS assessment
(111005, DCM, "Assessment Category"), their comment (121106, DCM, "Comment"). A signed result gets its own UIDs
(derived from the sign-off too): re-sending the same signed result finds it stored, a new sign-off is a new SR,
and an unsigned SR of the same image, when the PACS holds one (``pacs analyze --store`` made it), stays as it was
(UNVERIFIED) and is named in the signed SR's Predecessor Documents Sequence (PS3.3 C.17.2.3). Nothing unsigned is
made for a signed result.

DICOM gives each series one modality, so the SRs go into one new series (modality SR), the PDFs into another
(modality DOC) and the lesion outlines into a third (modality SEG), all in the source's study.

**Only the source's patient and study identifiers are copied** (:data:`IDENTIFYING_KEYWORDS`: name, ID, birth
date, sex, study UID, date, time, ID, accession number, referring physician) so the PACS files the results with
the patient; this is the one place PHI flows, back into the same study. Nothing else from the source header is
copied, and medapp adds no person, place or free text of its own.

**UIDs are derived, not random** (:func:`result_uids`): the series from (study, model weights, site profile), each
object from (source instance, model weights, site profile, and the sign-off when there is one; the SEG never depends
on a sign-off: a signed SR references the same outline). Analysing the same image with the same model and
profile again gives the same UIDs, so a PACS that already holds them is never sent a second copy, and a run that
stopped half way is completed rather than duplicated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from dataclasses import dataclass

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.seg import Segmentation
from highdicom.sr import (
    AlgorithmIdentification,
    CodeContentItem,
    CodedConcept,
    ComprehensiveSR,
    ContainerContentItem,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    RelationshipTypeValues,
    SourceImageForMeasurementGroup,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, EncapsulatedPDFStorage, ExplicitVRLittleEndian

from .. import __version__
from ..serving.predict import Prediction
from ..serving.reading import BIRADS_ASSESSMENTS, CaseDetails, SignOff

# highdicom logs every copied source's SOP Instance UID at INFO; medapp's logs carry no identifiers.
logging.getLogger("highdicom").setLevel(logging.WARNING)

MANUFACTURER = "medapp"
SCHEME = "99MEDAPP"
SR_SERIES_NUMBER = 9901
PDF_SERIES_NUMBER = 9902
SEG_SERIES_NUMBER = 9903
UID_NAMESPACE = "medapp results v1"  # changing it would make every earlier result look absent, and be sent again

# The source attributes copied into the results: the patient's and study's identifiers (PS3.3 C.7.1.1, C.7.2.1).
IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
)  # fmt: skip
# Type 2 in the Patient and General Study modules: present in every result, empty when the source lacks them.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
          "AccessionNumber", "ReferringPhysicianName")

NO_UNITS = CodedConcept("1", "UCUM", "no units")
YES, NO = codes.SCT.Yes, codes.SCT.No
IN_SCOPE = CodedConcept("MA-SCOPE", SCHEME, "Image within the model's intended use")
SCOPE_SCORE = CodedConcept("MA-SCOPE-SCORE", SCHEME, "Scope gate score")
SCOPE_LIMIT = CodedConcept("MA-SCOPE-LIMIT", SCHEME, "Scope gate limit")
LIKELIHOOD = CodedConcept("MA-LIKELIHOOD", SCHEME, "Model likelihood category")
AT_THRESHOLD = CodedConcept("MA-DECISION", SCHEME, "P(malignant) at or above the operating threshold")
LOW_CONFIDENCE = CodedConcept("MA-LOW-CONF", SCHEME, "Low confidence")
UNCERTAINTY = CodedConcept("MA-UNCERTAINTY", SCHEME, "P(malignant) spread over test-time views")
# The likelihood bands (medapp.serving.likelihood) as codes: model estimates on the BI-RADS bands, not BI-RADS
# assessments (which only a radiologist makes), hence a local scheme rather than a BI-RADS code.
CATEGORY_CODES = {
    "normal": CodedConcept("MA-CAT-NORMAL", SCHEME, "Model estimate: normal-appearing tissue"),
    "3": CodedConcept("MA-CAT-3", SCHEME, "Model estimate in the BI-RADS 3 range (<=2%)"),
    "4A": CodedConcept("MA-CAT-4A", SCHEME, "Model estimate in the BI-RADS 4A range (2-10%)"),
    "4B": CodedConcept("MA-CAT-4B", SCHEME, "Model estimate in the BI-RADS 4B range (10-50%)"),
    "4C": CodedConcept("MA-CAT-4C", SCHEME, "Model estimate in the BI-RADS 4C range (50-95%)"),
    "5": CodedConcept("MA-CAT-5", SCHEME, "Model estimate in the BI-RADS 5 range (>=95%)"),
}
# The radiologist's sign-off: TID 1500 row 12 (Qualitative Evaluations), one CODE or TEXT item per fact.
QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
AGREES = CodedConcept("MA-AGREES", SCHEME, "Radiologist agrees with the model estimate")
ASSESSMENT = codes.DCM.AssessmentCategory  # (111005, DCM): the radiologist's own BI-RADS category
# The ACR BI-RADS final assessment categories, as the radiologist chose them (4A/4B/4C have no standard code).
BIRADS_CODES = {c: CodedConcept(f"MA-BIRADS-{c}", SCHEME, f"BI-RADS {c} (radiologist's assessment)")
                for c in BIRADS_ASSESSMENTS}
# Verifying Organization is Type 1 (PS3.3 C.17.2); medapp knows who signed (the sign-in), not their organisation.
VERIFYING_ORGANIZATION = "not recorded by medapp"


@dataclass(frozen=True)
class ResultUids:
    """The UIDs of one image's results: the series (shared by the study's results) and the objects."""

    sr_series: str
    pdf_series: str
    sr: str
    pdf: str
    seg_series: str
    seg: str

    @property
    def objects(self) -> tuple[str, str]:
        """The SR and the PDF: what every in-scope result has (the SEG only when the model outlined a lesion)."""
        return self.sr, self.pdf

    def with_outline(self, outlined: bool) -> tuple[str, ...]:
        """The objects of a result whose prediction has (``outlined``) or has not a lesion outline."""
        return (self.seg, *self.objects) if outlined else self.objects


@dataclass(frozen=True)
class OutlineObjects:
    """The SEG of one image's outlined lesions and the SR measurement groups (TID 1410) that reference it; made by
    :func:`medapp.pacs.outline.build_outline`."""

    seg: Segmentation
    groups: list[PlanarROIMeasurementsAndQualitativeEvaluations]


def _uid(*parts: str) -> str:
    """A ``2.25.`` UID (PS3.5 B.2: a 128-bit integer) from a SHA-512 of ``parts``: the same parts, the same UID.

    (pydicom's ``generate_uid(prefix=None, entropy_srcs=...)`` ignores the entropy and returns a random UUID.)"""
    digest = hashlib.sha512("\x00".join([UID_NAMESPACE, *parts]).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def result_series(study_uid: str, model: dict[str, str]) -> tuple[str, str]:
    """(SR series UID, PDF series UID) of one model and site profile's results in ``study_uid``."""
    key = (model.get("sha256", ""), model.get("site_profile", ""))
    return _uid("sr-series", study_uid, *key), _uid("pdf-series", study_uid, *key)


def seg_series(study_uid: str, model: dict[str, str]) -> str:
    """The SEG series UID of one model and site profile's lesion outlines in ``study_uid``."""
    return _uid("seg-series", study_uid, model.get("sha256", ""), model.get("site_profile", ""))


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def result_uids(study_uid: str, source_sop_uid: str, model: dict[str, str], sign_off: SignOff | None = None,
                case: CaseDetails | None = None) -> ResultUids:
    """The UIDs of the results of ``source_sop_uid`` by one model (``Prediction.model`` or ``Predictor.model_info``)
    and site profile; with ``sign_off``, of that signed result (the PDF's also of the lesion location in ``case``,
    which it prints). The same inputs always give the same UIDs; the series, and the SEG, are shared by signed and
    unsigned."""
    key = (model.get("sha256", ""), model.get("site_profile", ""))
    sr_series, pdf_series = result_series(study_uid, model)
    outline = {"seg_series": seg_series(study_uid, model), "seg": _uid("seg", source_sop_uid, *key)}
    if sign_off is None:
        return ResultUids(sr_series, pdf_series, _uid("sr", source_sop_uid, *key), _uid("pdf", source_sop_uid, *key),
                          **outline)
    signed = _digest(sign_off.to_dict())
    case = case or CaseDetails()
    location = _digest([case.laterality, case.clock, case.distance_cm])
    return ResultUids(sr_series, pdf_series, _uid("signed sr", source_sop_uid, *key, signed),
                      _uid("signed pdf", source_sop_uid, *key, signed, location), **outline)


def source_header(source: Dataset) -> Dataset:
    """What the results keep of the source: its identifiers (:data:`IDENTIFYING_KEYWORDS`), the character set they
    are written in, and where it is (series, SOP class and instance), nothing else."""
    header = Dataset()
    for keyword in ("SpecificCharacterSet", *IDENTIFYING_KEYWORDS, "SeriesInstanceUID", "SOPClassUID",
                    "SOPInstanceUID", "InstanceNumber"):
        if keyword in source:
            setattr(header, keyword, source[keyword].value)
    for keyword in _TYPE2:
        if keyword not in header:
            setattr(header, keyword, None)
    return header


def _series_description(model: dict[str, str], kind: str) -> str:
    profile = f", site profile {model['site_profile']}" if model.get("site_profile") else ""
    return f"medapp {kind}: {model.get('name', '?')} {model.get('version', '')}{profile}"[:64]  # LO: 64 chars


def _device_observer(model: dict[str, str]) -> ObserverContext:
    return ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=_uid("device", model.get("sha256", "")), name="medapp", manufacturer_name=MANUFACTURER,
            model_name=f"{model.get('name', '?')} {model.get('version', '')}"[:64]),
    )


def _algorithm(prediction: Prediction) -> AlgorithmIdentification:
    model = prediction.model
    return AlgorithmIdentification(
        name=model.get("name", "?"), version=model.get("version", "?"), manufacturer=MANUFACTURER,
        parameters=[f"weights SHA-256 {model.get('sha256', '?')}",
                    f"calibration: {prediction.calibration}",
                    f"site profile: {model.get('site_profile') or 'none'}",
                    f"operating threshold {prediction.threshold:.6g}",
                    f"headline over {prediction.tta_views} test-time view(s)"],
    )


def _yes_no(flag: bool) -> CodedConcept:
    return YES if flag else NO


def measurement_group(prediction: Prediction, header: Dataset, uids: ResultUids, frame_index: int = 0,
                      frame_count: int = 1) -> MeasurementsAndQualitativeEvaluations:
    """TID 1501 for one image: the source reference, the algorithm, the numbers and the coded evaluations.

    An image outside intended use carries only the scope result and score: no probability is recorded for it,
    as none is shown."""
    p = prediction
    measurements = [Measurement(SCOPE_SCORE, round(p.scope_score, 6), NO_UNITS),
                    Measurement(SCOPE_LIMIT, round(p.scope_threshold, 6), NO_UNITS)]
    evaluations = [QualitativeEvaluation(IN_SCOPE, _yes_no(p.in_scope))]
    if p.in_scope:
        measurements = [Measurement(codes.DCM.ProbabilityOfCancer, p.p_malignant, NO_UNITS),
                        Measurement(codes.DCM.ThresholdValue, p.threshold, NO_UNITS),
                        Measurement(UNCERTAINTY, p.uncertainty, NO_UNITS), *measurements]
        evaluations += [QualitativeEvaluation(LIKELIHOOD, CATEGORY_CODES[p.category.code]),
                        QualitativeEvaluation(AT_THRESHOLD, _yes_no(p.decision)),
                        QualitativeEvaluation(LOW_CONFIDENCE, _yes_no(p.low_confidence))]
    frames = [frame_index + 1] if frame_count > 1 else None
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=_uid("tracking", uids.sr), identifier="medapp image estimate"),
        algorithm_id=_algorithm(p),
        finding_sites=[FindingSite(codes.SCT.Breast)],
        source_images=[SourceImageForMeasurementGroup(str(header.SOPClassUID), str(header.SOPInstanceUID),
                                                      referenced_frame_numbers=frames)],
        measurements=measurements,
        qualitative_evaluations=evaluations,
    )


def _now(created: dt.datetime | None) -> dt.datetime:
    return (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)


def sign_off_evaluations(sign_off: SignOff) -> ContainerContentItem:
    """TID 1500 row 12: the radiologist's verdict, BI-RADS assessment and comment (who and when are in the
    Verifying Observer Sequence)."""
    container = ContainerContentItem(QUALITATIVE_EVALUATIONS, relationship_type=RelationshipTypeValues.CONTAINS)
    items = [CodeContentItem(AGREES, _yes_no(sign_off.agrees), RelationshipTypeValues.CONTAINS),
             CodeContentItem(ASSESSMENT, BIRADS_CODES[sign_off.birads], RelationshipTypeValues.CONTAINS)]
    if sign_off.comment:
        items.append(TextContentItem(codes.DCM.Comment, sign_off.comment, RelationshipTypeValues.CONTAINS))
    container.ContentSequence = items
    return container


def person_name(user: str) -> str:
    """The signer as a DICOM PN (PS3.5 6.2): medapp knows an identity (an e-mail, a subject), not a structured
    name, so it is the family-name component; PN's delimiters ``^ = \\`` become spaces, 64 characters at most."""
    text = re.sub(r"[\\^=]+", " ", user).strip()[:63].strip() or "unknown"
    return f"{text}^"


def _dicom_datetime(iso_utc: str) -> str:
    """``2025-01-02T03:04:05Z`` as a DICOM DT in UTC (``20250102030405+0000``)."""
    return dt.datetime.fromisoformat(iso_utc).astimezone(dt.UTC).strftime("%Y%m%d%H%M%S+0000")


def build_sr(prediction: Prediction, header: Dataset, uids: ResultUids, *, frame_index: int = 0,
             frame_count: int = 1, created: dt.datetime | None = None, sign_off: SignOff | None = None,
             predecessor_uid: str | None = None, outline: OutlineObjects | None = None) -> ComprehensiveSR:
    """The Comprehensive SR of one image's result (``header``: :func:`source_header` of the source).

    With ``outline`` (:func:`medapp.pacs.outline.build_outline` of the same prediction) the report also holds the
    lesion measurement groups, which reference the outline's SEG (named in the evidence too). With ``sign_off``
    (``uids`` then from :func:`result_uids` with the same sign-off) the SR is VERIFIED and FINAL and holds the
    sign-off; ``predecessor_uid`` names an unsigned SR of the same image in ``uids.sr_series`` whose content this one
    repeats (PS3.3 C.17.2.3)."""
    created = _now(created)
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=_device_observer(prediction.model)),
        procedure_reported=codes.SCT.UltrasonographyOfBreast,
        imaging_measurements=[measurement_group(prediction, header, uids, frame_index, frame_count),
                              *(outline.groups if outline is not None else [])],
    )
    previous = None
    if sign_off is not None:
        report[0].ContentSequence.append(sign_off_evaluations(sign_off))
        if predecessor_uid is not None:
            earlier = Dataset()
            earlier.SOPClassUID, earlier.SOPInstanceUID = ComprehensiveSRStorage, predecessor_uid
            earlier.StudyInstanceUID, earlier.SeriesInstanceUID = header.StudyInstanceUID, uids.sr_series
            previous = [earlier]
    signed = sign_off is not None
    sr = ComprehensiveSR(
        evidence=[header, *([outline.seg] if outline is not None else [])], content=report,
        series_instance_uid=uids.sr_series, series_number=SR_SERIES_NUMBER,
        sop_instance_uid=uids.sr, instance_number=int(header.get("InstanceNumber") or 1),
        manufacturer=MANUFACTURER, is_complete=True, is_final=signed, is_verified=signed,
        verifying_observer_name=person_name(sign_off.user) if signed else None,
        verifying_organization=VERIFYING_ORGANIZATION if signed else None, previous_versions=previous,
        series_description=_series_description(prediction.model, "estimates (SR)"),
        manufacturer_model_name=f"{prediction.model.get('name', '?')} {prediction.model.get('version', '')}"[:64],
        software_versions=f"medapp {__version__}",
        content_date=created.date(), content_time=created.time().replace(tzinfo=None),
        coding_schemes=[CodingSchemeIdentificationItem(SCHEME, name="medapp local codes",
                                                       responsible_organization=MANUFACTURER)],
    )
    sr.TimezoneOffsetFromUTC = "+0000"
    if signed:  # highdicom stamps the build time; the verification happened when the radiologist signed
        sr.VerifyingObserverSequence[0].VerificationDateTime = _dicom_datetime(sign_off.time_utc)
    return sr


def build_encapsulated_pdf(pdf: bytes, header: Dataset, uids: ResultUids, model: dict[str, str], *,
                           created: dt.datetime | None = None) -> Dataset:
    """Encapsulated PDF Storage (PS3.3 A.45.1) of ``pdf``, in the study of ``header`` (:func:`source_header`).

    Burned In Annotation is NO: the report names no patient (:mod:`medapp.reporting.report`) and its picture is
    limited to the export region (:mod:`medapp.reporting.export_region`)."""
    if not pdf.startswith(b"%PDF-"):
        raise ValueError("the report is not a PDF (no %PDF- header)")
    created = _now(created)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EncapsulatedPDFStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uids.pdf
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for elem in header:
        if elem.keyword in ("SpecificCharacterSet", *IDENTIFYING_KEYWORDS):
            ds.add(elem)
    ds.SOPClassUID, ds.SOPInstanceUID = EncapsulatedPDFStorage, uids.pdf
    ds.InstanceCreationDate, ds.InstanceCreationTime = created.strftime("%Y%m%d"), created.strftime("%H%M%S")
    ds.TimezoneOffsetFromUTC = "+0000"
    # Encapsulated Document Series (C.24.1) and General/SC Equipment (C.7.5.1, C.8.6.1)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID, ds.SeriesNumber = uids.pdf_series, PDF_SERIES_NUMBER
    ds.SeriesDescription = _series_description(model, "report (PDF)")
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = f"{model.get('name', '?')} {model.get('version', '')}"[:64]
    ds.SoftwareVersions = f"medapp {__version__}"
    ds.ConversionType = "SYN"  # synthetic: made by software, not scanned
    # Encapsulated Document (C.24.2)
    ds.InstanceNumber = int(header.get("InstanceNumber") or 1)
    ds.ContentDate, ds.ContentTime = created.strftime("%Y%m%d"), created.strftime("%H%M%S")
    ds.AcquisitionDateTime = created.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "NO"
    ds.ConceptNameCodeSequence = Sequence()
    ds.DocumentTitle = "medapp decision-support report (model estimate)"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    source = Dataset()
    source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID = header.SOPClassUID, header.SOPInstanceUID
    ds.SourceInstanceSequence = Sequence([source])
    ds.EncapsulatedDocumentLength = len(pdf)  # before the pad byte an odd length needs (PS3.5 7.1)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    return ds
