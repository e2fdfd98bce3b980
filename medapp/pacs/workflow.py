"""Studies from a PACS through medapp and back: analyse a study's breast-ultrasound images, store the results, watch
for new studies.

For each instance of a study (:class:`StudyAnalyzer`):

- medapp's own results, and objects that are not ultrasound (another modality: SR, PDF, CT, ...), are not fetched;
- an instance whose results by this model and site profile are already in the PACS is not fetched again: result
  UIDs are derived from the source (:func:`medapp.pacs.results.result_uids`), so "already stored" is a lookup;
  nor one whose signed result (a VERIFIED SR naming it as evidence) is there: no unsigned copy is added after it;
- the rest are fetched into memory and go through intake (:func:`medapp.intake.imaging.load_image`) and the
  :class:`~medapp.serving.predict.Predictor`, exactly as an upload in the app; intake's refusal or the scope gate's
  reasons are reported and nothing is stored for them;
- with ``store``, an in-scope image gets its SR and PDF (:mod:`medapp.pacs.results`), and the SEG of the lesion
  outline when the model outlined one (:mod:`medapp.pacs.outline`), in one STOW-RS request. The SEG goes first in
  that request and the PDF last: a PACS stores a request's parts in order, so a stored SR and PDF mean the outline
  (if any) is stored too, and "already stored" stays a lookup that needs no prediction.

The app's "Send to PACS" (:meth:`StudyAnalyzer.store_signed`) stores the signed result of an image the clinician
opened from the PACS, read and signed on the Diagnose page, through the same audit and store steps.

The audit log gets one entry per analysed or refused image (the app's entry, plus the study and instance UIDs hashed
with the site's secret) and, before anything is stored, the hashed UIDs of what is about to be stored; a store that
fails gets its own entry. So nothing reaches the PACS that the log does not name. A PACS that stops answering stops
the run with a :class:`~medapp.errors.PacsError`; run it again: what was stored is found and not sent twice.

:func:`watch` polls for studies, bounded by a number of polls, remembering in a state file (hashed study UIDs and
their instance counts, no identifiers) what it has finished, so a restart resumes without re-fetching.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import pydicom

from ..errors import ConfigError, ExportNotConfirmedError, MedAppError, PacsError
from ..intake.deidentify import hash_uid, site_secret
from ..intake.imaging import load_image
from ..intake.medical_image import MedicalImage
from ..intake.privacy import AuditLog, sha256_bytes
from ..model.explain import overlay_heatmap
from ..reporting.export_region import export_region
from ..reporting.report import build_report_pdf
from ..serving.analysis import VIEWER_OPACITY, audit_outputs
from ..serving.predict import Prediction, Predictor
from ..serving.reading import CaseDetails, SignOff
from .client import InstanceRef, PacsClient
from .outline import build_outline
from .results import (
    ResultUids,
    build_encapsulated_pdf,
    build_sr,
    result_series,
    result_uids,
    seg_series,
    source_header,
)

log = logging.getLogger(__name__)

ANALYSED_MODALITIES = frozenset({"US"})
_KINDS = {"SR": "SR", "DOC": "PDF", "SEG": "SEG"}  # what each stored object is, by its modality
STATE_VERSION = 1


class Status(StrEnum):
    ANALYSED = "analysed"  # scored, nothing stored (no --store)
    STORED = "stored"  # scored, results stored now
    ALREADY_STORED = "already stored"  # results by this model and profile were in the PACS; not fetched
    OUT_OF_SCOPE = "outside intended use"  # scored and refused by the scope gate or the quality checks
    REFUSED = "refused"  # intake refused the object
    SKIPPED = "skipped"  # not ultrasound, or medapp's own result; not fetched


@dataclass
class InstanceOutcome:
    """What happened to one instance. ``stored`` lists the SOP Instance UIDs stored now, ``stored_kinds`` what each
    is ("SR", "PDF", "SEG")."""

    study_uid: str
    sop_uid: str
    status: Status
    prediction: Prediction | None = None
    message: str = ""
    stored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stored_kinds: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for ``pacs analyze --json`` (the UIDs are shown to the PACS user who asked, never logged)."""
        out: dict[str, Any] = {"study_uid": self.study_uid, "sop_instance_uid": self.sop_uid,
                               "status": self.status.value, "message": self.message, "stored": list(self.stored),
                               "stored_kinds": list(self.stored_kinds), "notes": list(self.notes)}
        if self.prediction is not None:
            out["prediction"] = self.prediction.to_dict()
        return out


class StudyAnalyzer:
    """Analyses studies of one PACS with one predictor; ``store`` writes results back, ``without_region`` is the
    export choice for images that state no scan region (see :mod:`medapp.reporting.export_region`; None: their PDF
    is not made)."""

    def __init__(self, client: PacsClient, predictor: Predictor, *, audit: AuditLog | None, store: bool = False,
                 without_region: str | None = None, salt: str | None = None) -> None:
        self.client = client
        self.predictor = predictor
        self.audit = audit
        self.store = store
        self.without_region = without_region
        self._salt = salt

    @property
    def salt(self) -> str:
        if self._salt is None:
            self._salt = site_secret()
        return self._salt

    def analyze(self, study_uid: str,
                on_outcome: Callable[[InstanceOutcome], None] | None = None) -> list[InstanceOutcome]:
        """Every instance of ``study_uid``, in the PACS's order; ``on_outcome`` hears each as it is decided."""
        model = self.predictor.model_info
        refs = self.client.search_instances(study_uid)
        sr_series, pdf_series = result_series(study_uid, model)
        ours = {sr_series, pdf_series, seg_series(study_uid, model)}
        existing = {r.sop_uid for r in refs if r.series_uid in ours}
        unsigned = {result_uids(study_uid, r.sop_uid, model).sr for r in refs}
        signed: set[str] = set()  # images whose signed result (the app's "Send to PACS") is stored: done
        if self.store and any(r.series_uid == sr_series and r.sop_uid not in unsigned for r in refs):
            signed = self.client.signed_sources(study_uid, sr_series)
        outcomes = []
        for ref in refs:
            if ref.series_uid in ours:
                continue
            outcome = self._one(ref, model, existing, signed)
            existing.update(outcome.stored)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        return outcomes

    def _one(self, ref: InstanceRef, model: dict[str, str], existing: set[str], signed: set[str]) -> InstanceOutcome:
        outcome = InstanceOutcome(ref.study_uid, ref.sop_uid, Status.SKIPPED)
        if ref.modality and ref.modality not in ANALYSED_MODALITIES:
            outcome.message = f"modality {ref.modality}: medapp judges breast ultrasound (US) only; not fetched"
            return outcome
        uids = result_uids(ref.study_uid, ref.sop_uid, model)
        if self.store and set(uids.objects) <= existing:
            outcome.status, outcome.message = Status.ALREADY_STORED, "results by this model and profile are stored"
            return outcome
        if self.store and ref.sop_uid in signed:
            outcome.status = Status.ALREADY_STORED
            outcome.message = "a radiologist's signed result by this model and profile is stored"
            return outcome
        data = self.client.fetch_instance(ref)
        sha = sha256_bytes(data)
        try:
            image = load_image(data)
            prediction = self.predictor.predict(image, explain=self.store)
        except MedAppError as e:
            self._record(sha, model, {"refused": str(e)}, ref)
            outcome.status, outcome.message = Status.REFUSED, str(e)
            return outcome
        outcome.prediction, outcome.notes = prediction, list(prediction.notes)
        if not prediction.in_scope:
            self._record(sha, prediction.model, audit_outputs(prediction, image), ref)
            outcome.status, outcome.message = Status.OUT_OF_SCOPE, "; ".join(prediction.out_of_scope_reasons)
            return outcome
        if not self.store:
            self._record(sha, prediction.model, audit_outputs(prediction, image), ref)
            outcome.status, outcome.message = Status.ANALYSED, prediction.decision_text
            return outcome
        objects = self._results(data, sha, image, prediction, uids, existing, outcome)
        outcome.message = prediction.decision_text
        return self._store(ref, sha, image, prediction, objects, outcome)

    def store_signed(self, ref: InstanceRef, data: bytes, image: MedicalImage, prediction: Prediction,
                     sign_off: SignOff, case: CaseDetails | None = None) -> InstanceOutcome:
        """The app's "Send to PACS": the signed SR and the PDF (with the sign-off and the lesion location of
        ``case``; the typed case label stays out) of an image the clinician read from ``ref`` (``data``: its bytes,
        as fetched) and signed. What the PACS already holds of this signed result is not sent again; an unsigned SR
        of the image stays and becomes the signed SR's predecessor. Raises :class:`PacsError`."""
        case = replace(case, label="") if case is not None else None
        uids = result_uids(ref.study_uid, ref.sop_uid, prediction.model, sign_off, case)
        unsigned = result_uids(ref.study_uid, ref.sop_uid, prediction.model).sr
        existing = set().union(*(self.client.instance_uids(ref.study_uid, series)
                                 for series in (uids.sr_series, uids.pdf_series, uids.seg_series)))
        outcome = InstanceOutcome(ref.study_uid, ref.sop_uid, Status.SKIPPED, prediction=prediction,
                                  message=prediction.decision_text if prediction.in_scope
                                  else "; ".join(prediction.out_of_scope_reasons))
        sha = sha256_bytes(data)
        objects = self._results(data, sha, image, prediction, uids, existing, outcome, sign_off=sign_off, case=case,
                                predecessor_uid=unsigned if unsigned in existing else None)
        return self._store(ref, sha, image, prediction, objects, outcome, {"sign_off": sign_off.to_dict()})

    def _store(self, ref: InstanceRef, sha: str, image: MedicalImage, prediction: Prediction,
               objects: list[pydicom.Dataset], outcome: InstanceOutcome,
               extra: dict[str, Any] | None = None) -> InstanceOutcome:
        """Audit what is about to be stored, then store it in one request (an audited failure re-raises)."""
        planned = [str(ds.SOPInstanceUID) for ds in objects]
        self._record(sha, prediction.model, {**audit_outputs(prediction, image), **(extra or {}),
                                             "store": "requested" if objects else "nothing new",
                                             "stored_uid_hashes": self._hashes(planned)}, ref)
        if not objects:
            outcome.status = Status.ALREADY_STORED
            return outcome
        try:
            outcome.stored = self.client.store(objects, ref.study_uid)
            outcome.stored_kinds = [_KINDS.get(str(ds.Modality), str(ds.Modality)) for ds in objects]
        except PacsError as e:
            self._record(sha, prediction.model, {"store": "failed", "error": str(e),
                                                 "stored_uid_hashes": self._hashes(planned)}, ref)
            raise
        outcome.status = Status.STORED
        return outcome

    def _results(self, data: bytes, sha: str, image: MedicalImage, prediction: Prediction, uids: ResultUids,
                 existing: set[str], outcome: InstanceOutcome, *, sign_off: SignOff | None = None,
                 case: CaseDetails | None = None, predecessor_uid: str | None = None) -> list[pydicom.Dataset]:
        """The SEG (when the model outlined a lesion), SR and PDF of one image that the PACS does not hold yet (the
        PDF only when its pixels may leave), in the order they are to be stored. The SEG is built whenever the SR is
        (stored or not, the SR references it), not when both are stored already."""
        source = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        header = source_header(source)
        objects: list[pydicom.Dataset] = []
        outline = (build_outline(prediction, source, uids, frame_index=image.frame_index,
                                 frame_count=image.frame_count)
                   if uids.seg not in existing or uids.sr not in existing else None)
        if outline is not None and uids.seg not in existing:
            objects.append(outline.seg)
        if uids.sr not in existing:
            objects.append(build_sr(prediction, header, uids, frame_index=image.frame_index,
                                    frame_count=image.frame_count, sign_off=sign_off,
                                    predecessor_uid=predecessor_uid, outline=outline))
        if uids.pdf not in existing:
            try:
                export = export_region(image, self.without_region)
            except ExportNotConfirmedError as e:
                outcome.notes.append(f"no PDF stored: {e} (--without-region)")
            else:
                overlay = (overlay_heatmap(image.display, prediction.heatmap, opacity=VIEWER_OPACITY)
                           if prediction.heatmap is not None else None)
                pdf = build_report_pdf(image, prediction, self.predictor.card, file_sha256=sha, export=export,
                                       overlay=overlay, case=case, sign_off=sign_off)
                objects.append(build_encapsulated_pdf(pdf, header, uids, prediction.model))
        return objects

    def _hashes(self, uids: list[str]) -> list[str]:
        return [hash_uid(u, self.salt) for u in uids]

    def _record(self, sha: str, model: dict[str, str], outputs: dict[str, Any], ref: InstanceRef) -> None:
        """One audit entry: the outputs, where the object came from (UIDs hashed with the site's secret)."""
        if self.audit is None:
            return
        self.audit.record(file_sha256=sha, model=model, outputs={
            **outputs, "source": "pacs", "study_uid_hash": hash_uid(ref.study_uid, self.salt),
            "instance_uid_hash": hash_uid(ref.sop_uid, self.salt)})


# -- watching ----------------------------------------------------------------------------------------------------


@dataclass
class WatchState:
    """Studies a watch has finished, as (hashed study UID -> instance count when finished), for one model+profile.

    Written after every study (atomically: a temporary file renamed over the old one), so a watch stopped at any
    point resumes where it was; a study whose instance count changed (new images arrived) is looked at again."""

    path: Path | None
    key: str
    studies: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None, key: str) -> WatchState:
        if path is None or not path.exists():
            return cls(path, key)
        try:
            data = json.loads(path.read_text())
            ok = isinstance(data, dict) and data.get("version") == STATE_VERSION
        except (OSError, ValueError) as e:
            raise ConfigError(f"the watch state file {path} cannot be read ({type(e).__name__}); remove it to "
                              "start afresh (nothing will be stored twice)") from e
        if not ok or not isinstance(data.get("studies"), dict):
            raise ConfigError(f"the watch state file {path} is not one medapp wrote; remove it or choose another")
        if data.get("model") != key:
            log.info("watch state %s was written for another model or profile; starting afresh", path)
            return cls(path, key)
        return cls(path, key, {str(k): int(v) for k, v in data["studies"].items()})

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": STATE_VERSION, "model": self.key, "studies": self.studies},
                                  sort_keys=True))
        os.replace(tmp, self.path)


def watch(analyzer: StudyAnalyzer, *, since: dt.date | None = None, interval: float = 60.0, max_polls: int = 1,
          state_path: Path | None = None, on_outcome: Callable[[InstanceOutcome], None] | None = None,
          sleep: Callable[[float], None] = time.sleep) -> list[InstanceOutcome]:
    """Poll the PACS ``max_polls`` times, ``interval`` seconds apart, analysing each ultrasound study (on or after
    ``since``) that is new or has new instances since it was finished; returns every outcome."""
    if max_polls < 1:
        raise ConfigError(f"--max-polls must be at least 1, got {max_polls}")
    client, model = analyzer.client, analyzer.predictor.model_info
    state = WatchState.load(state_path, f"{model.get('sha256', '')}/{model.get('site_profile', '')}")
    outcomes: list[InstanceOutcome] = []
    for poll in range(max_polls):
        if poll:
            sleep(interval)
        for study in client.search_studies(since=since):
            if study.modalities and not ANALYSED_MODALITIES & set(study.modalities):
                continue
            key = hash_uid(study.study_uid, analyzer.salt)
            if study.n_instances is not None and state.studies.get(key) == study.n_instances:
                continue
            outcomes += analyzer.analyze(study.study_uid, on_outcome)
            after = client.search_studies(study_uid=study.study_uid)
            state.studies[key] = after[0].n_instances if after and after[0].n_instances is not None else -1
            state.save()
        log.info("watch: poll %d of %d done", poll + 1, max_polls)
    return outcomes
