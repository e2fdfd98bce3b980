"""The web app through Streamlit's AppTest: upload, refusal, scope gate, worklist, DICOM, dashboard, model card."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from medapp.data.datasets import data_dir
from medapp.errors import MedAppError
from medapp.intake.imaging import load_image
from medapp.intake.privacy import AuditLog
from medapp.markup import plain
from medapp.model.card import ModelCard
from medapp.model.checkpoint import default_model_dir
from medapp.reporting.export_region import BLANK_BANDS, NO_REGION_WARNING
from medapp.reporting.figures import CHARTS
from medapp.reporting.report import DECISION_SUPPORT, HEATMAP_CAPTION
from medapp.serving.signin import LOCAL_USER
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
    assert "Image" in captions and any(c.startswith(HEATMAP_CAPTION) for c in captions)
    assert not app.get("download_button")  # a PNG states no scan region: nothing leaves before the user chooses
    assert any(NO_REGION_WARNING in w.value for w in app.warning)
    next(r for r in app.radio if str(r.key).startswith("export_")).set_value(BLANK_BANDS).run()
    labels = [b.label for b in app.get("download_button")]
    assert labels == ["Download PDF report", "Download overlay PNG"]
    assert any("are blanked" in c.value for c in app.caption)
    app.radio(key="cam_method").set_value("eigencam").run()
    assert not app.exception
    assert any("(EigenCAM)" in c for im in app.get("image") for c in im.captions)


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
    assert all(not c.startswith(HEATMAP_CAPTION) for im in app.get("image") for c in im.captions)


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
    details = " ".join(str(t.value) for t in app.table)  # image details: a readable table, not a JSON tree
    assert "2 of 2" in details and "DICOM".lower() in details.lower()


@pytest.fixture
def dashboard(app_model_dir, monkeypatch, tmp_path):  # noqa: F811
    """A copy of the app's model folder with a fake metrics.json and history.csv."""
    model_dir = tmp_path / "model"
    shutil.copytree(app_model_dir, model_dir)
    for real in model_dir.glob("metrics*.json"):  # only the fake evaluation below
        real.unlink()
    (model_dir / "cross_site.json").unlink(missing_ok=True)
    (model_dir / "test_scorings.json").unlink(missing_ok=True)
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
    assert len(at.dataframe) == 1  # anchors
    before = [m.value for m in at.metric if m.label == "Sensitivity"][-1]
    at.slider[0].set_value(0.9).run()
    after = [m.value for m in at.metric if m.label == "Sensitivity"][-1]
    assert not at.exception and before != after


def _table(at: AppTest, first_header: str):
    """The st.table whose first column is ``first_header``, as a DataFrame."""
    (table,) = [t.value for t in at.table if list(t.value.columns)[:1] == [first_header]]
    return table


def test_dashboard_localisation_table_is_readable_and_says_what_the_heatmaps_explain(dashboard, monkeypatch):
    metrics = fake_metrics()
    metrics["localization"].update(target="predicted", explain={"target_layer": "x", "method": "gradcam"})
    (dashboard / "metrics.json").write_text(json.dumps(metrics))
    at = _dashboard(dashboard, monkeypatch)
    table = _table(at, "Heatmap method")
    assert list(table.columns) == ["Heatmap method", "Peak inside the lesion", "Heat inside the lesion", "Lesions"]
    assert list(table["Heatmap method"]) == ["Grad-CAM (default)", "EigenCAM", "centre prior (baseline)"]
    assert not table.isna().any().any() and "None" not in table.to_string()
    captions = " ".join(c.value for c in at.caption)
    assert "explain each image's top-scoring class" in captions and "**Peak inside the lesion**" in captions
    assert "separate panels" in captions  # why training and validation loss are drawn apart


def test_dashboard_without_a_scoring_record_says_the_test_figures_may_be_optimistic(dashboard, monkeypatch):
    at = _dashboard(dashboard, monkeypatch)
    assert "optimistic" in at.info[0].value


def test_dashboard_shows_each_hospital_per_scanner_and_across_sites(dashboard, monkeypatch):
    busbra = fake_metrics(n=120, seed=3)
    busbra.update(dataset="busbra", auc_definition="malignant vs benign", anchors=[],
                  per_device={d: {"n": 60, "n_positive": 20, "n_negative": 40, "auc": 0.9, "auc_ci": [0.8, 0.95],
                                  "sensitivity": 0.85, "specificity": 0.7, "ece": 0.05, "scope_pass_rate": 0.97}
                              for d in ("Scanner A", "Scanner B")})
    del busbra["localization"]
    (dashboard / "metrics_busbra_test.json").write_text(json.dumps(busbra))
    rows = [{"trained_on": t, "tested_on": s, "site_seen_in_training": s in t, "n": 10, "auc": 0.8,
             "auc_ci": [0.7, 0.9], "sensitivity": 0.8, "specificity": 0.7, "ece": 0.05, "scope_pass_rate": 0.9}
            for t in ("busi", "busbra", "busi+busbra") for s in ("busi", "busbra")]
    (dashboard / "cross_site.json").write_text(json.dumps({"rows": rows}))
    busi = json.loads((dashboard / "metrics.json").read_text())
    record = {"note": "Chosen on validation.", "scorings": {
        "busi": [{"model": "fake_model", "weights_sha256": busi["weights_sha256"], "auc": busi["auc"]},
                 {"model": "earlier", "weights_sha256": "1" * 64, "auc": 0.9}],
        "busbra": [{"model": "fake_model", "weights_sha256": busi["weights_sha256"], "auc": busbra["auc"]}]}}
    (dashboard / "test_scorings.json").write_text(json.dumps(record))
    at = _dashboard(dashboard, monkeypatch)

    note = at.info[0].value
    assert "Chosen on validation." in note and "scored by 2 models across the project (this model among them)" in note
    side = _table(at, "Measure").set_index("Measure")
    assert list(side.columns) == ["BUSI test (Cairo, Egypt)", "BUS-BRA test (Rio de Janeiro, Brazil)"]
    auc = side.loc["AUC (95% CI)"]  # from the files, not typed in
    assert auc.iloc[0].startswith(f"{busi['auc']:.3f} (") and auc.iloc[1].startswith(f"{busbra['auc']:.3f} (")
    assert side.loc["AUC compares"].iloc[1] == "malignant vs benign"
    n_pos = busbra["n_positive"]
    assert side.loc["Sensitivity at the threshold"].iloc[1].endswith(f" of {n_pos})")
    scanners = _table(at, "Test set")
    assert list(scanners["Scanner"]) == ["Scanner A", "Scanner B"] and set(scanners["Test set"]) == {"BUS-BRA test"}
    assert len(_table(at, "Trained on")) == 6  # across sites

    assert at.selectbox[0].options == ["BUSI test (Cairo, Egypt)", "BUS-BRA test (Rio de Janeiro, Brazil)"]
    at.selectbox[0].select("BUS-BRA test (Rio de Janeiro, Brazil)").run()
    assert not at.exception
    assert "Malignant vs benign" in " ".join(c.value for c in at.caption)


@pytest.mark.parametrize("model_dir", shipped_model_dirs() or [None])
def test_dashboard_on_shipped_metrics(model_dir, monkeypatch):
    if model_dir is None or not (model_dir / "metrics.json").is_file():
        pytest.skip("no shipped model with metrics.json under models/ yet")
    at = _dashboard(model_dir, monkeypatch)
    captions = [c for im in at.get("image") for c in im.captions]
    assert set(captions) >= {CHARTS[k] for k in ("roc", "pr", "confusion", "reliability")}
    record_file = model_dir / "test_scorings.json"
    if record_file.is_file():  # the honest record, with the counts its file holds
        record = json.loads(record_file.read_text())
        for dataset, entries in record["scorings"].items():
            assert f"scored by {len(entries)} model" in at.info[0].value, dataset


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


def _heading(at: AppTest) -> str:
    return [h.value for h in at.subheader if h.value != "Worklist"][0].replace("\\", "")  # Markdown-escaped


def test_open_case_follows_identity_when_files_are_added(app):
    files = [busi_test_image("benign", 1), busi_test_image("benign", 2), busi_test_image("malignant", 1)]
    _upload(app, *((p.name, p.read_bytes()) for p in files))
    first = _heading(app)
    app.button(key="next_case").click().run()
    opened = _heading(app)
    assert opened != first and opened in {p.name for p in files}
    more = [*files, busi_test_image("malignant", 2)]  # a fourth file re-sorts the list
    _upload(app, *((p.name, p.read_bytes()) for p in more))
    assert _heading(app) == opened
    assert "Keyboard" in _texts(app)


def test_category_and_decision_tell_one_story(app):
    for label, index in (("benign", 3), ("benign", 4), ("malignant", 4), ("normal", 2)):
        path = busi_test_image(label, index)
        _upload(app, (path.name, path.read_bytes()))
        text = _texts(app)
        if app.metric and re.search(r"BI-RADS 4[ABC] range|BI-RADS 5 range", text):
            assert "Not flagged" not in text and "not flagged" not in text, text


def test_case_label_laterality_and_sign_off_are_recorded(app, tmp_path):
    path = busi_test_image("malignant", 2)
    _upload(app, (path.name, path.read_bytes()))
    next(t for t in app.text_input if str(t.key).startswith("label_")).set_value("Clinic 7 lesion A").run()
    next(s for s in app.selectbox if str(s.key).startswith("side_")).set_value("left").run()
    app.radio(key=next(r.key for r in app.radio if str(r.key).startswith("export_"))).set_value(BLANK_BANDS).run()
    assert [b.label for b in app.get("download_button")][0] == "Download PDF report"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    app.selectbox(key=f"birads_{sha}").set_value("4B")
    app.text_area(key=f"comment_{sha}").set_value("irregular margin")
    app.button(key=f"sign_off_{sha}").click().run()  # the form's submit button
    assert not app.exception
    assert any("Signed:" in s.value and "BI-RADS 4B" in s.value.replace("\\", "") for s in app.success)
    entries = AuditLog(tmp_path / "audit.jsonl").read()
    signed = [e for e in entries if "sign_off" in e["outputs"]]
    assert len(signed) == 1 and signed[0]["outputs"]["sign_off"]["birads"] == "4B"
    assert signed[0]["user"] == LOCAL_USER and "Clinic" not in json.dumps(signed)  # the label stays out of the log


def test_two_views_grouped_into_one_lesion(app):
    views = [busi_test_image("malignant", 5), busi_test_image("malignant", 6)]
    _upload(app, *((p.name, p.read_bytes()) for p in views))
    app.multiselect(key="lesion_pick").set_value([hashlib.sha256(p.read_bytes()).hexdigest() for p in views]).run()
    next(b for b in app.button if b.label == "Group as one lesion").click().run()
    assert any("lesion estimate" in m.value and "2 view(s)" in m.value for m in app.markdown)
    (table, *_) = app.dataframe
    assert list(table.value["lesion"]) == ["Lesion 1", "Lesion 1"]
