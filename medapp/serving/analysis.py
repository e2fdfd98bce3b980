"""Analysis orchestration for the app: uploaded bytes -> intake -> prediction -> audit log, one call per action.

A page hands over what the user uploaded and chose, and gets back everything it shows: an :class:`Analysis` per
file (the image and its prediction, or intake's refusal message), the worklist rows, the viewer image with its
window/level, the overlay. Nothing here imports streamlit; the page keeps one :class:`Workspace` per session.

File names are kept only to show them back to the user who uploaded them; they never reach the audit log or a
report (they often contain the patient's name).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import AuditLogError, MedAppError
from ..formatting import MISSING, format_probability
from ..intake.imaging import load_image
from ..intake.medical_image import MedicalImage
from ..intake.privacy import AuditLog, sha256_bytes
from ..model.explain import overlay_heatmap
from ..settings import get_settings
from .outline_overlay import LesionDescription, describe_lesion, draw_outline
from .predict import Prediction, Predictor

log = logging.getLogger(__name__)

# Analyses kept per session (each holds the image and heatmap, ~3 MB for a 500x500 scan).
MAX_CACHED_ANALYSES = 32
# The viewer's heatmap opacity until the clinician moves it (the page, and the PACS report's second picture).
VIEWER_OPACITY = 0.4
# Window level and width (fractions of the display range) that leave the image as intake displays it.
FULL_WINDOW = (0.5, 1.0)


def open_audit_log(user: str | None = None) -> AuditLog:
    """The deployment's audit log: ``$MEDAPP_AUDIT_LOG``, or ``artifacts/audit.jsonl`` in the project (git-ignored),
    writing ``user`` into each entry (:mod:`medapp.serving.signin` says who that is for the app and the CLI)."""
    return AuditLog(get_settings().audit_log, user=user)


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name (shown back to the user only) and its bytes."""

    name: str
    data: bytes

    @cached_property
    def sha256(self) -> str:
        """Hashed once per upload object (a page run asks several times; a DICOM can be 128 MB)."""
        return sha256_bytes(self.data)


@dataclass
class Analysis:
    """One file's result: ``image`` and ``prediction`` when intake accepted it, else intake's ``error`` message."""

    name: str
    file_sha256: str
    image: MedicalImage | None = None
    prediction: Prediction | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.prediction is not None

    @property
    def in_scope(self) -> bool:
        """True only when a probability may be shown: accepted, in the model's scope, no quality flag."""
        return self.ok and bool(self.prediction.in_scope)

    @property
    def has_heatmap(self) -> bool:
        return self.in_scope and self.prediction.heatmap is not None


def audit_outputs(prediction: Prediction, image: MedicalImage) -> dict[str, Any]:
    """What the audit log keeps of one result (the app's and ``predict``'s alike): the prediction without the model
    (recorded beside it) and which frame of what kind of file; never a name or a header value."""
    outputs = {k: v for k, v in prediction.to_dict().items() if k != "model"}
    outputs.update(frame_index=image.frame_index, frame_count=image.frame_count, source_kind=image.source_kind)
    return outputs


def record_refusal(audit: AuditLog | None, file_sha256: str, predictor: Predictor, error: MedAppError) -> str:
    """Record a refused file (the app's and ``predict``'s alike); returns the message to show, which also says so
    when the audit log could not be written."""
    if audit is not None:
        try:
            audit.record(file_sha256=file_sha256, model=predictor.model_info, outputs={"refused": str(error)})
        except AuditLogError as unlogged:
            return f"{error}; and {unlogged}"
    return str(error)


def analyze_upload(predictor: Predictor, upload: Upload, *, frame: int | None = None, cam_method: str | None = None,
                   explain: bool = True, audit: AuditLog | None = None) -> Analysis:
    """Intake, prediction and an audit entry for one upload; a refused file gives an Analysis with ``error``.

    Only :class:`MedAppError` is turned into a message (intake's wording, which says what to do); any other
    exception is a bug and propagates.
    """
    sha = upload.sha256
    try:
        image = load_image(upload.data, frame=frame)
        prediction = predictor.predict(image, cam_method=cam_method, explain=explain)
    except MedAppError as e:
        return Analysis(name=upload.name, file_sha256=sha, error=record_refusal(audit, sha, predictor, e))
    if audit is not None:
        try:
            audit.record(file_sha256=sha, model=prediction.model, outputs=audit_outputs(prediction, image))
        except AuditLogError as e:  # never show a result the log did not record
            return Analysis(name=upload.name, file_sha256=sha, error=str(e))
    return Analysis(name=upload.name, file_sha256=sha, image=image, prediction=prediction)


class Workspace:
    """One app session's analyses, cached by (file SHA-256, frame, CAM method) so reruns do not recompute.

    Entries of files no longer uploaded are dropped on each :meth:`analyze`, and at most ``max_entries`` are kept
    (least recently used go first), so memory stays bounded however many files a session goes through.
    """

    def __init__(self, max_entries: int = MAX_CACHED_ANALYSES) -> None:
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, int, str | None], Analysis] = OrderedDict()
        self._served: tuple[str, str] | None = None  # (weights, site profile) the cached results came from

    def _use(self, predictor: Predictor) -> None:
        """Forget every cached result when the model or the site profile changes: a result is never shown with
        another calibration than the one in force."""
        info = predictor.model_info
        served = (info.get("sha256", ""), info.get("site_profile", ""))
        if served != self._served:
            self._cache.clear()
            self._served = served

    def __len__(self) -> int:
        return len(self._cache)

    def _get(self, key: tuple[str, int, str | None]) -> Analysis | None:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        return None

    def _put(self, key: tuple[str, int, str | None], analysis: Analysis) -> Analysis:
        self._cache[key] = analysis
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return analysis

    def analyze(self, predictor: Predictor, uploads: Sequence[Upload], *, cam_method: str | None = None,
                audit: AuditLog | None = None) -> list[Analysis]:
        """One analysis per upload (first frame), in upload order.

        A single upload is analysed with its heatmap at once (the common case: one round trip to the overlay);
        with several, the worklist needs probabilities only and the heatmap is made when an image is opened.
        """
        return [a for a, _ in self.analyze_each(predictor, uploads, cam_method=cam_method, audit=audit)]

    def analyze_each(self, predictor: Predictor, uploads: Sequence[Upload], *, cam_method: str | None = None,
                     audit: AuditLog | None = None) -> Iterator[tuple[Analysis, bool]]:
        """:meth:`analyze` one upload at a time: yields (analysis, computed now) in upload order, so a page can
        show progress and each result as it finishes (``computed now`` False: it came from the cache)."""
        self._use(predictor)
        shas = [u.sha256 for u in uploads]
        current = set(shas)
        for key in [k for k in self._cache if k[0] not in current]:
            del self._cache[key]
        explain = len(uploads) == 1
        for upload, sha in zip(uploads, shas, strict=True):
            found = self._get((sha, 0, cam_method)) or next(
                (a for k, a in reversed(self._cache.items()) if k[:2] == (sha, 0)), None)
            fresh = found is None
            if fresh:
                found = analyze_upload(predictor, upload, cam_method=cam_method, explain=explain, audit=audit)
                self._put((sha, 0, cam_method if explain else None), found)
            yield (found if found.name == upload.name else _renamed(found, upload.name)), fresh

    def open(self, predictor: Predictor, upload: Upload, *, frame: int | None = None, cam_method: str | None = None,
             audit: AuditLog | None = None) -> Analysis:
        """The analysis of one image with its heatmap, for the viewer (``frame`` of a multi-frame file)."""
        self._use(predictor)
        key = (upload.sha256, frame or 0, cam_method)
        found = self._get(key)
        if found is None:
            found = self._put(key, analyze_upload(predictor, upload, frame=frame, cam_method=cam_method, audit=audit))
        return found if found.name == upload.name else _renamed(found, upload.name)


def _renamed(analysis: Analysis, name: str) -> Analysis:
    """The same result shown under another upload's name (identical bytes uploaded twice)."""
    return Analysis(name=name, file_sha256=analysis.file_sha256, image=analysis.image,
                    prediction=analysis.prediction, error=analysis.error)


def worklist_rows(analyses: Sequence[Analysis]) -> list[dict[str, Any]]:
    """Table rows for accepted files, most suspicious first; out-of-scope images last, with no probability.

    Each row: ``index`` (position in ``analyses``), ``file``, ``p_malignant`` (None when out of scope) and
    ``p_text`` (as the page writes probabilities everywhere),
    ``category`` and ``flags`` (plain words).
    """
    rows = []
    for i, a in enumerate(analyses):
        if not a.ok:
            continue
        p = a.prediction
        flags = [*([] if p.in_scope else ["outside intended use"]), *p.quality_flags,
                 *(["low confidence"] if p.in_scope and p.low_confidence else [])]
        rows.append({"index": i, "file": a.name, "p_malignant": p.p_malignant if p.in_scope else None,
                     "p_text": format_probability(p.p_malignant) if p.in_scope else MISSING,
                     "category": p.category.code if p.in_scope else "n/a", "flags": ", ".join(dict.fromkeys(flags))})
    return sorted(rows, key=lambda r: (r["p_malignant"] is None, -(r["p_malignant"] or 0.0)))


def apply_window(display: np.ndarray, level: float, width: float) -> np.ndarray:
    """Viewer window/level on an (H, W, 3) uint8 image: ``level`` and ``width`` as fractions of the 0-255 range.

    Linear VOI function as in DICOM PS3.3 C.11.2.1.2, applied to what intake displays; for viewing only, the model
    always sees intake's default window so its input matches training.
    """
    if not 0.0 < width <= 2.0:
        raise ValueError(f"window width must be in (0, 2] of the display range, got {width}")
    x = display.astype(np.float32) / 255.0
    out = np.clip((x - (level - width / 2.0)) / width, 0.0, 1.0)
    return (out * 255.0 + 0.5).astype(np.uint8)


def is_windowed(window: tuple[float, float] | None) -> bool:
    """True when ``window`` changes what the image looks like (the report then says it shows the screen's window)."""
    return window is not None and tuple(window) != FULL_WINDOW


def viewer_images(analysis: Analysis, *, opacity: float = VIEWER_OPACITY, window: tuple[float, float] | None = None,
                  colormap: str = "jet") -> tuple[np.ndarray, np.ndarray | None]:
    """(original, overlay) as (H, W, 3) uint8 for display; overlay is None when out of scope or no heatmap."""
    if analysis.image is None:
        raise ValueError("the file was refused by intake; there is no image to show")
    base = apply_window(analysis.image.display, *window) if is_windowed(window) else analysis.image.display
    if not analysis.has_heatmap:
        return base, None
    return base, overlay_heatmap(base, analysis.prediction.heatmap, opacity=opacity, colormap=colormap)


def outlined(analysis: Analysis, rgb: np.ndarray) -> np.ndarray:
    """The viewer's (H, W, 3) uint8 image with the model's lesion outline and calipers drawn on it
    (:mod:`medapp.serving.outline_overlay`); ``rgb`` itself when there is no outline (none found, no outline decoder,
    or the image is outside intended use)."""
    if not analysis.in_scope or analysis.prediction.lesion is None:
        return rgb
    return draw_outline(rgb, analysis.prediction.lesion)


def lesion_text(analysis: Analysis) -> LesionDescription | str | None:
    """What the viewer says about the outlined lesion: its description, else why there is none (the prediction's
    ``lesion_note``), or None for an image outside intended use (nothing is reported about it)."""
    if not analysis.in_scope:
        return None
    lesion = analysis.prediction.lesion
    return describe_lesion(lesion) if lesion is not None else analysis.prediction.lesion_note or None
