"""The app's side of the PACS: pick a recent study, open its ultrasound images on the Diagnose page, send a signed
result back into the study.

- :func:`recent_studies` lists the PACS's recent ultrasound studies **with the patient's name**: the one place
  medapp shows it, because the clinician picks the right study by it. It lives in the PACS page's rows only: never
  logged, never in the audit log, the worklist, a report or a result.
- :func:`open_study` fetches the study's ultrasound instances into memory (WADO-RS) as
  :class:`~medapp.serving.analysis.Upload` objects under neutral names ("PACS image 1 of 3"), in a
  :class:`PacsInbox` that remembers where each came from by the file's SHA-256 (as the worklist identifies a case).
- :func:`send_signed` is the "Send to PACS" button: the signed SR and the PDF (and the lesion outline's SEG, when the
  model outlined one and the PACS does not hold it yet) through the CLI's own store path
  (:meth:`~medapp.pacs.workflow.StudyAnalyzer.store_signed`: the same audit entries, hashed UIDs, no duplicates).
  A PACS that does not answer raises :class:`~medapp.errors.PacsError`; the session keeps the sign-off, so the
  clinician can send again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from pydicom.valuerep import PersonName

from ..errors import UnsupportedImageError
from ..intake.privacy import AuditLog
from ..serving.analysis import MAX_CACHED_ANALYSES, Analysis, Upload
from ..serving.predict import Predictor
from ..serving.reading import CaseDetails, SignOff
from ..settings import Settings
from .client import InstanceRef, PacsClient, PacsConfig
from .workflow import ANALYSED_MODALITIES, InstanceOutcome, Status, StudyAnalyzer

RECENT_DAYS = 30  # the PACS page's default search window
MAX_STUDIES = 100  # rows the page lists, newest first
MAX_IMAGES = MAX_CACHED_ANALYSES  # images opened from one study: as many as the Diagnose page keeps analysed

NOT_CONFIGURED = (
    "No PACS is configured for this app. Your IT sets `MEDAPP_PACS_URL` (the PACS's DICOMweb address, https), "
    "`MEDAPP_PACS_USER` and `MEDAPP_PACS_PASSWORD_FILE` (and `MEDAPP_PACS_CA_BUNDLE` when the PACS's certificate "
    "comes from the hospital's own CA) before starting the app: see the README's PACS section. `make pacs` runs a "
    "local test PACS and prints these settings.")


def connect(settings: Settings | None = None) -> PacsClient:
    """The deployment's PACS (``MEDAPP_PACS_*``); raises :class:`~medapp.errors.ConfigError` when none is set."""
    return PacsClient(PacsConfig.from_settings(settings=settings))


def default_since(today: dt.date | None = None) -> dt.date:
    return (today or dt.date.today()) - dt.timedelta(days=RECENT_DAYS)


def display_name(pn: str) -> str:
    """A DICOM person name as people write it: ``Family^Given^Middle`` -> "Family, Given Middle"."""
    name = PersonName(pn)
    given = " ".join(part for part in (name.given_name, name.middle_name) if part)
    return ", ".join(part for part in (name.family_name, given) if part) or "(no name)"


@dataclass(frozen=True)
class StudyRow:
    """One study as the PACS page lists it. ``patient`` is shown there only (never in repr, so never in a log)."""

    study_uid: str = field(repr=False)
    date: str
    modalities: str
    images: str
    patient: str = field(repr=False)

    @property
    def key(self) -> str:
        """The study's identity for a widget key: its "Open" button keeps opening this study whatever row it is."""
        return hashlib.sha256(self.study_uid.encode()).hexdigest()[:16]


def recent_studies(client: PacsClient, since: dt.date | None = None) -> tuple[list[StudyRow], int]:
    """The ultrasound studies (or studies whose modalities the PACS does not say) on or after ``since`` (default:
    :data:`RECENT_DAYS` ago), newest first, at most :data:`MAX_STUDIES`; and how many there are in all."""
    found = client.search_studies(since=since or default_since(), patient_name=True)
    studies = [s for s in found if not s.modalities or ANALYSED_MODALITIES & set(s.modalities)]
    rows = [StudyRow(s.study_uid, _iso_date(s.study_date), ", ".join(s.modalities) or "?",
                     "?" if s.n_instances is None else str(s.n_instances), display_name(s.patient_name))
            for s in studies[:MAX_STUDIES]]
    return rows, len(studies)


def _iso_date(value: str) -> str:
    try:
        return dt.datetime.strptime(value, "%Y%m%d").date().isoformat()
    except ValueError:
        return value or "?"


@dataclass
class PacsInbox:
    """The study opened from the PACS in one app session: its images as uploads for the Diagnose page, where each
    came from (by the file's SHA-256), notes on what was not opened, and what "Send to PACS" stored."""

    study_uid: str
    uploads: list[Upload] = field(default_factory=list)
    sources: dict[str, InstanceRef] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sent: dict[str, InstanceOutcome] = field(default_factory=dict)

    def source(self, sha: str) -> InstanceRef | None:
        """Where the image with this SHA-256 came from; None when it did not come from the PACS."""
        return self.sources.get(sha)

    def upload(self, sha: str) -> Upload | None:
        return next((u for u in self.uploads if u.sha256 == sha), None)


def open_study(client: PacsClient, study_uid: str, *, limit: int = MAX_IMAGES) -> PacsInbox:
    """The study's ultrasound instances, fetched into memory (at most ``limit``), as a :class:`PacsInbox`.

    Other objects (reports, medapp's own results, other modalities) are not fetched. Raises
    :class:`~medapp.errors.PacsError` when the PACS fails, :class:`UnsupportedImageError` when the study holds no
    ultrasound image."""
    refs = client.search_instances(study_uid)
    images = [r for r in refs if not r.modality or r.modality in ANALYSED_MODALITIES]
    if not images:
        kinds = ", ".join(sorted({r.modality or "?" for r in refs})) or "none"
        raise UnsupportedImageError(f"the study holds no ultrasound image (modalities: {kinds}); medapp reads "
                                    "breast ultrasound only: open another study")
    inbox = PacsInbox(study_uid)
    opened = images[:limit]
    for n, ref in enumerate(opened, start=1):
        upload = Upload(f"PACS image {n} of {len(opened)}", client.fetch_instance(ref))
        if upload.sha256 not in inbox.sources:  # the same bytes twice in a study: one case
            inbox.uploads.append(upload)
            inbox.sources[upload.sha256] = ref
    if len(refs) > len(images):
        inbox.notes.append(f"{len(refs) - len(images)} object(s) of the study are not ultrasound images (reports, "
                           "other modalities) and were not opened")
    if len(images) > limit:
        inbox.notes.append(f"the study has {len(images)} ultrasound images; the first {limit} were opened")
    return inbox


def send_signed(inbox: PacsInbox, analysis: Analysis, sign_off: SignOff, case: CaseDetails | None,
                predictor: Predictor, audit: AuditLog, export_choice: str | None,
                client: PacsClient | None = None) -> InstanceOutcome:
    """Store the signed result of ``analysis`` (an image of ``inbox``) in its study: the SR with the sign-off, the
    lesion outline's SEG when there is one (and the PACS lacks it), and the PDF (its pixels limited by
    ``export_choice`` as the downloads are). Sending the same signed result again stores nothing new. Raises
    :class:`~medapp.errors.PacsError` (nothing is lost from the session: send again)."""
    ref, upload = inbox.source(analysis.file_sha256), inbox.upload(analysis.file_sha256)
    if ref is None or upload is None or analysis.image is None or analysis.prediction is None:
        raise ValueError("only an analysed image opened from the PACS can be sent back to it")
    analyzer = StudyAnalyzer(client or connect(), predictor, audit=audit, store=True, without_region=export_choice)
    outcome = analyzer.store_signed(ref, upload.data, analysis.image, analysis.prediction, sign_off, case)
    inbox.sent[analysis.file_sha256] = outcome
    return outcome


def describe_send(outcome: InstanceOutcome) -> str:
    """What "Send to PACS" did, in a sentence for the page."""
    if outcome.status == Status.STORED:
        kinds = set(outcome.stored_kinds)
        if {"SR", "PDF"} <= kinds:
            sent = "the signed SR and the PDF report"
        else:
            sent = f"{len(outcome.stored)} new object(s) (the rest of this signed result was stored before)"
        if "SEG" in kinds:
            sent += ", with the lesion outline (DICOM SEG)"
        text = f"Sent to the PACS: {sent}, in this image's study."
    else:
        text = "Already in the PACS: this signed result was stored before; nothing was sent again."
    missing_pdf = [note for note in outcome.notes if note.startswith("no PDF")]
    return text + (f" {missing_pdf[0]}." if missing_pdf else "")
