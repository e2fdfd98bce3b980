"""The worklist's state beside the analyses: which case is open, which images form one lesion, what is signed.

A case is identified by its file's SHA-256, never by its row: rows re-sort when a file is added or scored, and a
selection that followed the row would silently open another patient's image (issue 13, item 1). Lesion groups and
sign-offs are keyed the same way. Nothing here imports streamlit; the page keeps one :class:`ReadingState` per
session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..intake.privacy import AuditLog
from .analysis import Analysis, worklist_rows
from .lesion_estimate import DEFAULT_RULE, combine_views
from .reading import CaseDetails, SignOff


@dataclass
class LesionEstimate:
    """One lesion's views (in scope only) and the combined P(malignant) (:func:`combine_views`, the rule chosen on
    BUS-BRA validation); ``left_out`` names views outside intended use, which never enter the estimate."""

    name: str
    views: list[tuple[str, float]]
    p_malignant: float | None
    left_out: list[str] = field(default_factory=list)
    rule: str = DEFAULT_RULE


@dataclass
class ReadingState:
    """One session's reading: the open case, lesion groups, typed case details and sign-offs, all by SHA-256."""

    selected: str | None = None
    lesions: dict[str, str] = field(default_factory=dict)  # sha -> lesion name
    details: dict[str, CaseDetails] = field(default_factory=dict)
    sign_offs: dict[str, SignOff] = field(default_factory=dict)

    def rows(self, analyses: Sequence[Analysis]) -> list[dict[str, Any]]:
        """:func:`worklist_rows` with each row's ``sha``, its ``lesion`` and whether it is ``signed``."""
        rows = worklist_rows(analyses)
        for row in rows:
            sha = analyses[row["index"]].file_sha256
            row.update(sha=sha, lesion=self.lesions.get(sha, ""), signed="signed" if sha in self.sign_offs else "")
        return rows

    def choose(self, rows: Sequence[dict[str, Any]], clicked: int | None = None) -> dict[str, Any] | None:
        """The open case's row: the clicked row when the user just clicked one, else the case opened before (found
        by identity wherever it sorted to), else the first row; None for an empty list."""
        if not rows:
            self.selected = None
            return None
        if clicked is not None and 0 <= clicked < len(rows):
            self.selected = rows[clicked]["sha"]
        by_sha = {row["sha"]: row for row in rows}
        if self.selected not in by_sha:
            self.selected = rows[0]["sha"]
        return by_sha[self.selected]

    def step(self, rows: Sequence[dict[str, Any]], offset: int) -> None:
        """Open the next (``+1``) or previous (``-1``) case in worklist order, stopping at either end."""
        shas = [row["sha"] for row in rows]
        if not shas:
            return
        here = shas.index(self.selected) if self.selected in shas else 0
        self.selected = shas[min(max(here + offset, 0), len(shas) - 1)]

    def group(self, shas: Sequence[str], name: str) -> None:
        """Put the images ``shas`` into lesion ``name`` (an empty name ungroups them)."""
        for sha in shas:
            if name.strip():
                self.lesions[sha] = name.strip()
            else:
                self.lesions.pop(sha, None)

    def lesion_estimates(self, analyses: Sequence[Analysis]) -> list[LesionEstimate]:
        """Each named lesion with its views and the combined estimate, in the order lesions were first seen."""
        out: dict[str, LesionEstimate] = {}
        for a in analyses:
            name = self.lesions.get(a.file_sha256)
            if not name or not a.ok:
                continue
            lesion = out.setdefault(name, LesionEstimate(name, [], None))
            if a.in_scope:
                lesion.views.append((a.name, a.prediction.p_malignant))
            else:
                lesion.left_out.append(a.name)
        for lesion in out.values():
            lesion.p_malignant = combine_views([p for _, p in lesion.views]) if lesion.views else None
        return list(out.values())

    def sign(self, analysis: Analysis, sign_off: SignOff, audit: AuditLog | None) -> None:
        """Record the radiologist's sign-off of ``analysis`` in the audit log first, then in the session: a
        sign-off the log could not record is not kept (raises :class:`AuditLogError`)."""
        if audit is not None:
            prediction = analysis.prediction
            outputs: dict[str, Any] = {"sign_off": sign_off.to_dict()}
            if prediction is not None:
                outputs.update(p_malignant=prediction.p_malignant, category=prediction.category.code,
                               in_scope=prediction.in_scope, calibration=prediction.calibration)
            audit.record(file_sha256=analysis.file_sha256, model=prediction.model if prediction is not None else {},
                         outputs=outputs)
        self.sign_offs[analysis.file_sha256] = sign_off
