"""App orchestration: intake + predict + audit per upload, the session cache, worklist order, viewer window."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medapp.intake.imaging import load_image
from medapp.intake.privacy import AuditLog
from medapp.serving.analysis import (
    Upload,
    Workspace,
    analyze_upload,
    apply_window,
    open_audit_log,
    viewer_images,
    worklist_rows,
)
from medapp.settings import reload_settings
from tests.app_fixtures import StubPredictor, png_bytes


def _upload(name: str, mean: float, seed: int = 0, std: float = 0.1) -> Upload:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(mean, std, (80, 100)), 0, 1)
    return Upload(name, png_bytes(np.round(pixels * 255).astype(np.uint8)))


def test_refused_file_gives_intakes_message_and_audit_entry(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    bad = Upload("Jane Doe scan.png", _upload("x", 0.5).data[:60])
    with pytest.raises(Exception) as intake:
        load_image(bad.data)
    analysis = analyze_upload(StubPredictor(), bad, audit=audit)
    assert not analysis.ok and analysis.error == str(intake.value)
    (entry,) = audit.read()
    assert entry["outputs"] == {"refused": str(intake.value)} and entry["file_sha256"] == bad.sha256


def test_audit_entry_has_outputs_but_no_file_name(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    analysis = analyze_upload(StubPredictor(), _upload("Jane Doe 1970-01-01.png", 0.6), audit=audit)
    assert analysis.in_scope and analysis.has_heatmap
    text = (tmp_path / "audit.jsonl").read_text()
    assert "Jane" not in text and "1970" not in text
    entry = json.loads(text)
    assert entry["outputs"]["p_malignant"] == pytest.approx(analysis.prediction.p_malignant, abs=1e-6)
    assert entry["model"]["name"] == "test_model" and entry["outputs"]["frame_index"] == 0


def test_an_unwritable_audit_log_says_so_and_no_unlogged_result_is_shown(tmp_path):
    """Issue 12, item 9: the message names the log and what to do; the analysis carries no prediction."""
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the log's folder should be")
    audit = AuditLog(blocked / "audit.jsonl")
    analysis = analyze_upload(StubPredictor(), _upload("a.png", 0.6), audit=audit)
    assert not analysis.ok and analysis.prediction is None
    assert "audit log" in analysis.error and "cannot be written" in analysis.error and "MEDAPP_AUDIT_LOG" in analysis.error
    refused = analyze_upload(StubPredictor(), Upload("b.png", b"\x89PNG broken"), audit=audit)
    assert not refused.ok and "cannot be written" in refused.error


def test_audit_log_survives_a_torn_line(tmp_path, caplog):
    """A crash mid-write leaves a partial last line: reading skips it (saying which), and the next entry starts on
    a line of its own instead of being glued to it."""
    audit = AuditLog(tmp_path / "audit.jsonl")
    analyze_upload(StubPredictor(), _upload("a.png", 0.6), audit=audit)
    with open(tmp_path / "audit.jsonl", "ab") as f:
        f.write(b'{"time_utc": "2026-')  # torn
    analyze_upload(StubPredictor(), _upload("b.png", 0.4, 1), audit=audit)
    with caplog.at_level("WARNING"):
        entries = audit.read()
    assert len(entries) == 2 and all("file_sha256" in e for e in entries)
    assert "line 2 is not a whole entry" in caplog.text


def test_workspace_caches_and_drops_files_no_longer_uploaded():
    predictor, ws = StubPredictor(), Workspace()
    a, b = _upload("a.png", 0.3, 1), _upload("b.png", 0.7, 2)
    ws.analyze(predictor, [a])
    assert predictor.calls == [{"cam_method": None, "explain": True, "frame": 0}]
    ws.open(predictor, a)  # same key: no new prediction
    assert len(predictor.calls) == 1
    ws.analyze(predictor, [a, b])  # a is cached; b without heatmap (worklist only)
    assert predictor.calls[-1]["explain"] is False and len(predictor.calls) == 2
    ws.open(predictor, b, cam_method="eigencam")
    assert predictor.calls[-1] == {"cam_method": "eigencam", "explain": True, "frame": 0}
    ws.analyze(predictor, [b])
    assert all(key[0] == b.sha256 for key in ws._cache)


def test_workspace_is_bounded():
    predictor, ws = StubPredictor(), Workspace(max_entries=3)
    uploads = [_upload(f"{i}.png", 0.5, i) for i in range(6)]
    ws.analyze(predictor, uploads)
    assert len(ws) == 3


def test_worklist_most_suspicious_first_out_of_scope_last():
    predictor = StubPredictor()
    uploads = [_upload("low.png", 0.2, 1), _upload("flat.png", 0.9, 2, std=0.0), _upload("high.png", 0.8, 3),
               Upload("bad.png", b"not an image at all")]
    analyses = Workspace().analyze(predictor, uploads)
    rows = worklist_rows(analyses)
    assert [r["file"] for r in rows] == ["high.png", "low.png", "flat.png"]
    assert rows[-1]["p_malignant"] is None and "outside intended use" in rows[-1]["flags"]
    assert analyses[rows[0]["index"]].name == "high.png"


@pytest.mark.parametrize(
    ("value", "level", "width", "expected"),
    [(128, 0.5, 1.0, 128), (0, 0.5, 1.0, 0), (255, 0.5, 1.0, 255), (64, 0.25, 0.5, 128), (10, 0.5, 0.5, 0), (128, 0.5, 0.5, 129),
     (200, 0.5, 0.5, 255)],
)
def test_apply_window_hand_checked(value, level, width, expected):
    out = apply_window(np.full((2, 2, 3), value, dtype=np.uint8), level, width)
    assert out.dtype == np.uint8 and abs(int(out[0, 0, 0]) - expected) <= 1


def test_apply_window_refuses_bad_width():
    with pytest.raises(ValueError, match="window width"):
        apply_window(np.zeros((2, 2, 3), np.uint8), 0.5, 0.0)


def test_viewer_images_no_overlay_out_of_scope():
    ws, predictor = Workspace(), StubPredictor()
    flat = ws.analyze(predictor, [_upload("flat.png", 0.5, std=0.0)])[0]
    original, overlay = viewer_images(flat)
    assert overlay is None and original.shape == (80, 100, 3)
    good = ws.analyze(predictor, [_upload("good.png", 0.5)])[0]
    original, overlay = viewer_images(good, opacity=0.5, window=(0.5, 0.5))
    assert overlay.shape == original.shape and not np.array_equal(overlay, original)


def test_results_and_refusals_name_the_user_in_the_audit_log(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDAPP_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    reload_settings()
    audit = open_audit_log("dr.a@hospital.example")
    analyze_upload(StubPredictor(), _upload("a.png", 0.6), audit=audit)
    analyze_upload(StubPredictor(), Upload("b.png", b"\x89PNG broken"), audit=audit)
    entries = AuditLog(tmp_path / "audit.jsonl").read()
    assert [("refused" in e["outputs"], e["user"]) for e in entries] == [(False, "dr.a@hospital.example"),
                                                                        (True, "dr.a@hospital.example")]
