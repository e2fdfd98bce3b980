"""The web app through Streamlit's AppTest: upload, refusal, scope gate, worklist, DICOM, dashboard, model card."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medapp.data.datasets import data_dir
from medapp.errors import MedAppError
from medapp.intake.imaging import load_image
from medapp.markup import plain
from medapp.model.card import ModelCard
from medapp.model.checkpoint import default_model_dir
from medapp.reporting.figures import CHARTS
from medapp.reporting.report import DECISION_SUPPORT
from medapp.settings import reload_settings
from tests.app_fixtures import (  # noqa: F401  (app_model_dir is a fixture)
    PROJECT_ROOT,
    app_model_dir,
    busi_test_image,
    fake_metrics,
    png_bytes,
    shipped_model_dirs,
    write_fake_model_files,
)

PAGE_FILES = [PROJECT_ROOT / "app.py", *sorted((PROJECT_ROOT / "pages").glob("*.py"))]
TIMEOUT = 180


@pytest.fixture
def app(app_model_dir, monkeypatch, tmp_path) -> AppTest:  # noqa: F811
    monkeypatch.setenv("MEDAPP_MODEL_DIR", str(app_model_dir))
    monkeypatch.setenv("MEDAPP_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    reload_settings()
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def _upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="uploads").set_value([(name, data, "application/octet-stream") for name, data in files])
    at.run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "error", "warning", "success", "info") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts) + "\n".join(str(m.value) for m in at.metric)


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.name)
def test_pages_stay_thin(path: Path):
    """No torch, no magic input size, no arrays and no threshold literals in the UI layer (STYLE.md)."""
    tree = ast.parse(path.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"torch", "torchvision", "numpy", "pytorch_grad_cam", "PIL"}, imported
    assert not re.search(r"\b224\b", path.read_text())
    assert len(path.read_text().splitlines()) < 120


def test_medapp_never_imports_streamlit():
    for path in (PROJECT_ROOT / "medapp").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+streamlit", path.read_text(), re.M), path


def test_sidebar_shows_disclaimer_and_model(app):
    warnings = [w.value for w in app.sidebar.get("alert")] if app.sidebar.get("alert") else []
    text = " ".join([*(str(w.value) for w in app.warning), *(str(c.value) for c in app.caption), *warnings])
    assert DECISION_SUPPORT in text
    assert re.search(r"Model \*\*\w+\*\* v[\d.]+", text)


def test_busi_image_shows_probability_category_and_overlay(app):
    path = busi_test_image("malignant")
    _upload(app, (path.name, path.read_bytes()))
    assert not app.error
    (metric,) = app.metric
    assert metric.label.startswith("Probability of malignancy") and re.fullmatch(r"[<>]?\d{1,2}%", metric.value)
    assert any("Model estimate" in m.value for m in app.markdown)
    captions = [c for im in app.get("imgs") for c in im.captions] if app.get("imgs") else []
    images = app.get("image")
    captions += [c for im in images for c in im.captions]
    assert "Image" in captions and any(c.startswith("Where the model looked") for c in captions)
    labels = [b.label for b in app.get("download_button")]
    assert labels == ["Download PDF report", "Download overlay PNG"]
    app.selectbox(key="cam_method").set_value("eigencam").run()
    assert not app.exception
    assert any("(eigencam)" in c for im in app.get("image") for c in im.captions)


def test_corrupt_file_shows_intakes_message_and_others_go_on(app):
    good = busi_test_image("benign")
    corrupt = good.read_bytes()[:200]
    with pytest.raises(MedAppError) as intake:
        load_image(corrupt)
    _upload(app, ("broken.png", corrupt), ("notes.txt", b"patient notes, not an image\n"),
            (good.name, good.read_bytes()))
    errors = [e.value for e in app.error]  # Markdown source: upload-derived text arrives escaped (medapp.markup)
    assert any(plain(intake.value) in e and plain("broken.png") in e for e in errors), errors
    assert any(plain("notes.txt") in e for e in errors)
    assert len(app.metric) == 1 or any("Outside" in w.value for w in app.warning)  # the good file was analysed


def test_out_of_scope_image_shows_scope_warning_and_no_probability(app):
    blank = png_bytes(np.full((300, 400), 128, dtype=np.uint8))
    _upload(app, ("blank.png", blank))
    assert any("Outside the model's intended use" in w.value for w in app.warning)
    assert not app.metric
    text = _texts(app)
    assert "P(malignant)" not in text and "%" not in " ".join(str(m.value) for m in app.markdown)
    assert not app.get("download_button")
    assert all(not c.startswith("Where the model looked") for im in app.get("image") for c in im.captions)


def test_worklist_sorted_most_suspicious_first(app):
    files = [busi_test_image("malignant", 1), busi_test_image("benign", 1), busi_test_image("normal", 1)]
    _upload(app, *((p.name, p.read_bytes()) for p in files))
    (table, *_) = app.dataframe
    worklist = table.value
    assert list(worklist["file"])[0] in {p.name for p in files}
    p = [v for v in worklist["p_malignant"] if v == v and v is not None]
    assert p == sorted(p, reverse=True)
    assert app.subheader[0].value == "Worklist"


def test_dicom_frame_selector_and_window(app):
    path = data_dir() / "dicom" / "OBXXXX1A_2frame.dcm"
    if not path.is_file():
        pytest.skip(f"multi-frame DICOM not found at {path}")
    _upload(app, ("series_without_extension", path.read_bytes()))
    frame = app.number_input(key=next(k for k in (w.key for w in app.number_input) if k.startswith("frame_")))
    frame.set_value(2).run()
    assert not app.exception
    assert any(s.label == "Window width" for s in app.slider)
    details = " ".join(str(j.value) for j in app.json)
    assert "2 of 2" in details and "DICOM".lower() in details.lower()


@pytest.fixture
def dashboard(app_model_dir, monkeypatch, tmp_path):  # noqa: F811
    """A copy of the app's model folder with a fake metrics.json and history.csv."""
    model_dir = tmp_path / "model"
    shutil.copytree(app_model_dir, model_dir)
    for real in model_dir.glob("metrics*.json"):  # only the fake evaluation below
        real.unlink()
    (model_dir / "cross_site.json").unlink(missing_ok=True)
    write_fake_model_files(model_dir)
    return model_dir


def _dashboard(model_dir: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("MEDAPP_MODEL_DIR", str(model_dir))
    reload_settings()
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/performance.py").run()
    assert not at.exception, at.exception
    return at


def test_dashboard_renders_every_chart(dashboard, monkeypatch):
    at = _dashboard(dashboard, monkeypatch)
    captions = [c for im in at.get("image") for c in im.captions]
    assert sorted(captions) == sorted(CHARTS.values())
    assert {m.label for m in at.metric} >= {"AUC", "Sensitivity", "Specificity", "PPV", "NPV"}
    assert len(at.dataframe) == 2  # localisation and anchors
    before = [m.value for m in at.metric if m.label == "Sensitivity"][-1]
    at.slider[0].set_value(0.9).run()
    after = [m.value for m in at.metric if m.label == "Sensitivity"][-1]
    assert not at.exception and before != after


def test_dashboard_shows_each_hospital_per_scanner_and_across_sites(dashboard, monkeypatch):
    import json

    busbra = fake_metrics(n=120, seed=3)
    busbra.update(dataset="busbra", auc_definition="malignant vs benign", anchors=[],
                  per_device={d: {"n": 60, "n_positive": 20, "auc": 0.9, "sensitivity": 0.85, "specificity": 0.7,
                                  "ece": 0.05, "scope_pass_rate": 0.97} for d in ("Scanner A", "Scanner B")})
    del busbra["localization"]
    (dashboard / "metrics_busbra_test.json").write_text(json.dumps(busbra))
    rows = [{"trained_on": t, "tested_on": s, "site_seen_in_training": s in t, "n": 10, "auc": 0.8,
             "sensitivity": 0.8, "specificity": 0.7, "ece": 0.05, "scope_pass_rate": 0.9}
            for t in ("busi", "busbra", "busi+busbra") for s in ("busi", "busbra")]
    (dashboard / "cross_site.json").write_text(json.dumps({"rows": rows}))
    at = _dashboard(dashboard, monkeypatch)
    assert at.selectbox[0].options == ["BUSI test (Cairo, Egypt)", "BUS-BRA test (Rio de Janeiro, Brazil)"]
    assert len(at.dataframe) == 3  # across sites, localisation, anchors
    at.selectbox[0].select("BUS-BRA test (Rio de Janeiro, Brazil)").run()
    assert not at.exception
    assert "Malignant vs benign" in " ".join(c.value for c in at.caption)
    tables = [d.value for d in at.dataframe]
    assert len(tables) == 2 and list(tables[0]["scanner"]) == ["Scanner A", "Scanner B"]  # per scanner, sites
    assert len(tables[1]) == 6


@pytest.mark.parametrize("model_dir", shipped_model_dirs() or [None])
def test_dashboard_on_shipped_metrics(model_dir, monkeypatch):
    if model_dir is None or not (model_dir / "metrics.json").is_file():
        pytest.skip("no shipped model with metrics.json under models/ yet")
    at = _dashboard(model_dir, monkeypatch)
    captions = [c for im in at.get("image") for c in im.captions]
    assert set(captions) >= {CHARTS[k] for k in ("roc", "pr", "confusion", "reliability")}


def test_model_card_page(app):
    app.switch_page("pages/model_card.py").run()
    assert not app.exception
    titles = [s.value for s in app.subheader]
    sites = ["Sites and scanners seen in training"] if ModelCard.load(default_model_dir()).training_sites else []
    assert titles == ["Model", "Intended use", "Not intended for", "Training data and its known flaws", *sites,
                      "Evaluation", "Limits and how the app guards them"]
    if sites:
        text = " ".join(m.value for m in app.markdown)
        assert "may not carry to them" in text and "busbra" in text
        assert "On the BUSI test (Cairo, Egypt)" in text and "On the BUS-BRA test (Rio de Janeiro, Brazil)" in text
