"""The reading state: selection by identity across re-sorts, next/previous, lesion groups, audited sign-offs."""

from __future__ import annotations

import datetime as dt

import pytest

from medapp.errors import AuditLogError
from medapp.intake.privacy import AuditLog
from medapp.serving.analysis import Analysis
from medapp.serving.lesion_estimate import combine_views
from medapp.serving.reading import SignOff
from medapp.serving.worklist import ReadingState
from tests.app_fixtures import make_image, make_prediction

WHEN = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC)


def case(name: str, p: float, *, in_scope: bool = True) -> Analysis:
    sha = (name.encode().hex() * 64)[:64]
    return Analysis(name=name, file_sha256=sha, image=make_image(), prediction=make_prediction(p, in_scope=in_scope))


def test_selection_follows_the_case_not_the_row():
    state = ReadingState()
    analyses = [case("a", 0.2), case("b", 0.5), case("c", 0.9)]
    rows = state.rows(analyses)
    assert [r["file"] for r in rows] == ["c", "b", "a"]
    assert state.choose(rows, clicked=2)["file"] == "a"  # the radiologist opens "a", third row
    analyses.append(case("d", 0.95))  # a fourth file arrives and sorts first: "a" moves to row 4
    rows = state.rows(analyses)
    assert [r["file"] for r in rows] == ["d", "c", "b", "a"]
    assert state.choose(rows)["file"] == "a"  # still "a", not whatever now sits in row 3
    assert state.choose(rows[:3])["file"] == "d"  # "a" removed: the first row, never a stale case


def test_next_and_previous_stop_at_the_ends():
    state = ReadingState()
    rows = state.rows([case("a", 0.2), case("b", 0.5), case("c", 0.9)])
    state.choose(rows)
    state.step(rows, -1)
    assert state.choose(rows)["file"] == "c"
    state.step(rows, +1)
    state.step(rows, +1)
    state.step(rows, +1)
    assert state.choose(rows)["file"] == "a"


def test_lesion_groups_combine_in_scope_views_only():
    state = ReadingState()
    radial, anti, refused, other = case("radial", 0.3), case("anti", 0.6), case("blank", 0.9, in_scope=False), \
        case("other", 0.1)
    state.group([radial.file_sha256, anti.file_sha256, refused.file_sha256], "Lesion 1")
    (lesion,) = state.lesion_estimates([radial, anti, refused, other])
    assert lesion.views == [("radial", 0.3), ("anti", 0.6)] and lesion.left_out == ["blank"]
    assert lesion.p_malignant == pytest.approx(combine_views([0.3, 0.6]))
    assert {r["file"]: r["lesion"] for r in state.rows([radial, other])} == {"radial": "Lesion 1", "other": ""}
    state.group([anti.file_sha256], " ")
    assert state.lesion_estimates([radial, anti])[0].views == [("radial", 0.3)]


def test_sign_off_goes_to_the_audit_log_with_user_model_and_calibration(tmp_path):
    state = ReadingState()
    analysis = case("a", 0.42)
    log = AuditLog(tmp_path / "audit.jsonl", user="dr.ng")
    sign = SignOff.make(agrees=False, birads="4B", comment="radial view irregular", user="dr.ng", now=WHEN)
    state.sign(analysis, sign, log)
    (entry,) = log.read()
    assert entry["user"] == "dr.ng" and entry["file_sha256"] == analysis.file_sha256
    assert entry["model"]["version"] == "9.9.9" and entry["outputs"]["sign_off"]["birads"] == "4B"
    assert entry["outputs"]["calibration"] and entry["outputs"]["p_malignant"] == pytest.approx(0.42)
    assert state.rows([analysis])[0]["signed"] == "signed"


def test_an_unlogged_sign_off_is_not_kept(tmp_path):
    state = ReadingState()
    analysis = case("a", 0.42)
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "audit.jsonl").mkdir()  # a folder where the log file should be: cannot be written
    with pytest.raises(AuditLogError):
        state.sign(analysis, SignOff.make(agrees=True, birads="2", comment="", user="dr.ng"),
                   AuditLog(tmp_path / "ro" / "audit.jsonl"))
    assert analysis.file_sha256 not in state.sign_offs
