"""Local validation and site profiles (issue 11): reading a site's cases, the profile's maths and file, using it."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medapp.cli import main
from medapp.data.local_cases import open_zip_cases, read_local_cases, upload_cases
from medapp.errors import ManifestError, SiteProfileError
from medapp.evaluation.local_validation import patient_holdout, validate_site, verdict
from medapp.evaluation.metrics import bootstrap_auc_ci
from medapp.model.calibrate import apply_platt, fit_platt
from medapp.model.card import ModelCard
from medapp.model.site_profile import (
    ADVISED_MALIGNANT,
    MIN_MALIGNANT,
    fit_site_profile,
    list_profiles,
    load_profile,
)
from medapp.serving.analysis import Upload, Workspace
from medapp.serving.predict import Predictor
from tests.model_fixtures import build_blob_model_dir, reseal, speckle_image


def _png(seed: int, lesion: float = 0.0) -> bytes:
    pixels = speckle_image(150 + seed % 7, 180, seed=seed).copy()
    pixels[50:90, 60:110] = np.clip(pixels[50:90, 60:110] + lesion, 0, 1)
    buf = io.BytesIO()
    Image.fromarray((pixels * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _site(folder: Path, n_malignant: int, n_benign: int, *, per_patient: int = 1) -> Path:
    """A labelled site folder with a labels CSV; malignant images carry a bright patch, which the blob model
    (:func:`build_blob_model_dir`) scores higher."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_malignant + n_benign):
        label = "malignant" if i < n_malignant else "benign"
        name = f"img/case_{i:03d}.png"
        (folder / name).write_bytes(_png(i, 0.6 if label == "malignant" else 0.0))
        rows.append({"image": name, "label": label, "patient": f"P{i // per_patient}",
                     "device": "scanner A" if i % 2 else "scanner B"})
    with (folder / "cases.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "label", "patient", "device"])
        writer.writeheader()
        writer.writerows(rows)
    return folder / "cases.csv"


def _card(sha: str = "a" * 64) -> ModelCard:
    return ModelCard(name="m", architecture="small_cnn", weights_sha256=sha, threshold=0.3,
                     config={"min_sensitivity": 0.9})


def _probs(p_mal: np.ndarray) -> np.ndarray:
    return np.stack([(1 - p_mal) * 0.2, (1 - p_mal) * 0.8, p_mal], axis=1)


# --- reading a site's cases ------------------------------------------------------------------------------------

def test_csv_cases_list_every_bad_row_and_keep_the_good(tmp_path):
    manifest = _site(tmp_path, 2, 2)
    with manifest.open("a", newline="") as f:
        f.write("img/missing.png,benign,P9,\n")
        f.write("img/case_000.png,probably bad,P9,\n")
        f.write(",malignant,P9,\n")
        f.write("../outside.png,benign,P9,\n")
        f.write("img/case_001.png,,P9,\n")
    os.mkfifo(tmp_path / "img" / "pipe.png")
    (tmp_path / "img" / "zero.png").symlink_to("/dev/zero")
    with manifest.open("a", newline="") as f:
        f.write("img/pipe.png,benign,P9,\nimg/zero.png,benign,P9,\n")
    cases = read_local_cases(manifest)
    assert [c.label for c in cases.cases] == ["malignant", "malignant", "benign", "benign"]
    assert cases.cases[0].patient == "P0" and cases.cases[1].device == "scanner A"
    problems = {p.where.split(" ")[1]: p.problem for p in cases.problems}
    assert len(cases.problems) == 7
    assert "not a regular file" in problems["6"] and "not one of" in problems["7"] and "empty" in problems["8"]
    assert "inside" in problems["9"] and problems["10"] == "no label"
    assert "not a regular file" in problems["11"] and "not a regular file" in problems["12"]


def test_csv_without_label_column_names_what_is_missing(tmp_path):
    (tmp_path / "c.csv").write_text("file,diagnosis\na.png,benign\n")
    with pytest.raises(ManifestError, match="lacks column.*image, label"):
        read_local_cases(tmp_path / "c.csv")


def test_folder_cases_take_labels_from_folder_names(tmp_path):
    for label, n in (("benign", 2), ("malignant", 1), ("unsure", 1)):
        (tmp_path / label).mkdir()
        for i in range(n):
            (tmp_path / label / f"{i}.png").write_bytes(_png(i))
    (tmp_path / "malignant" / "notes.txt").write_text("not an image")
    cases = read_local_cases(tmp_path)
    assert sorted(c.image for c in cases.cases) == ["benign/0.png", "benign/1.png", "malignant/0.png"]
    assert [p.where for p in cases.problems] == ["unsure"]
    assert cases.cases[0].read() == (tmp_path / "benign" / "0.png").read_bytes()


def test_zip_cases_by_folder_and_by_csv_and_a_bad_zip(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("site/malignant/a.png", _png(1))
        z.writestr("site/benign/b.png", _png(2))
        z.writestr("other/c.png", _png(3))
    by_folder = open_zip_cases(io.BytesIO(buf.getvalue()), None, "cases.zip")
    assert {(c.image, c.label) for c in by_folder.cases} == {("site/malignant/a.png", "malignant"),
                                                            ("site/benign/b.png", "benign")}
    labels = "image,label,patient\nother/c.png,Malignant,P1\nnot/there.png,benign,P2\n"
    by_csv = open_zip_cases(io.BytesIO(buf.getvalue()), labels, "cases.zip")
    assert [(c.image, c.label, c.patient) for c in by_csv.cases] == [("other/c.png", "malignant", "P1")]
    assert by_csv.cases[0].read() == _png(3) and "not in the zip" in by_csv.problems[0].problem
    with pytest.raises(ManifestError, match="not a readable zip"):
        open_zip_cases(io.BytesIO(b"PK\x03\x04 broken"), None, "bad.zip")


def test_uploaded_files_labelled_in_a_table(tmp_path):
    cases = upload_cases({"a.png": _png(1), "b.png": _png(2)}, None, {"a.png": "benign", "b.png": ""})
    assert [c.image for c in cases.cases] == ["a.png"] and cases.problems[0].problem == "no label"


# --- the maths -------------------------------------------------------------------------------------------------

def test_platt_recovers_a_known_shift_and_keeps_rows_summing_to_one():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 4000)
    y = rng.random(4000) < 1 / (1 + np.exp(-(0.5 * z + 1.0)))  # truth: slope 0.5, intercept 1 on the log-odds
    slope, intercept = fit_platt(1 / (1 + np.exp(-z)), y)
    assert slope == pytest.approx(0.5, abs=0.08) and intercept == pytest.approx(1.0, abs=0.15)
    probs = _probs(np.array([0.1, 0.5, 0.9]))
    out = apply_platt(probs, 2, slope, intercept)
    logit = np.log(probs[:, 2] / (1 - probs[:, 2]))
    assert np.allclose(out[:, 2], 1 / (1 + np.exp(-(slope * logit + intercept)))) and np.allclose(out.sum(1), 1)
    assert np.allclose(out[:, 0] / out[:, 1], probs[:, 0] / probs[:, 1])  # the other classes keep their ratio


def test_patient_bootstrap_is_wider_when_images_repeat_a_patient():
    rng = np.random.default_rng(1)
    y = np.repeat(rng.random(40) < 0.4, 5)
    s = y * 0.8 + np.repeat(rng.normal(0, 0.6, 40), 5)
    patients = np.repeat(np.arange(40), 5)
    lo_i, hi_i = bootstrap_auc_ci(y, s, n_boot=400)
    lo_p, hi_p = bootstrap_auc_ci(y, s, n_boot=400, groups=patients)
    assert hi_p - lo_p > 1.5 * (hi_i - lo_i)


def test_holdout_never_splits_a_patient_and_both_sides_have_cancers():
    patients = np.array([f"P{i // 3}" for i in range(90)])
    is_mal = np.array([i // 3 % 3 == 0 for i in range(90)])
    held = patient_holdout(patients, is_mal, 0.5, seed=3)
    for p in set(patients):
        assert len(set(held[patients == p])) == 1
    assert 0.4 < held.mean() < 0.6 and is_mal[held].any() and is_mal[~held].any()
    with pytest.raises(SiteProfileError, match="fraction"):
        patient_holdout(patients, is_mal, 1.5)


# --- the profile file ------------------------------------------------------------------------------------------

def _fitted(n_mal: int = 30, n_other: int = 30, name: str = "site-A") -> tuple[ModelCard, object]:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(n_mal, bool), np.zeros(n_other, bool)]
    p = np.clip(np.where(y, 0.15, 0.05) + rng.normal(0, 0.04, len(y)), 0.01, 0.99)  # systematically low
    card = _card()
    return card, fit_site_profile(name, card, _probs(p), y, n_patients=len(y), created_by="tester",
                                  created_at="2026-12-01T00:00:00+00:00", min_sensitivity=0.9)


def test_profile_round_trip_and_refusal_for_another_model(tmp_path):
    card, profile = _fitted()
    assert 0 < profile.threshold < 1 and profile.slope > 0
    profile.save(tmp_path)
    assert list_profiles(tmp_path) == ["site-A"]
    assert load_profile(tmp_path, "site-A", card) == profile
    saved = json.loads((tmp_path / "profiles" / "site-A.json").read_text())
    assert saved["weights_sha256"] == card.weights_sha256 and saved["n_cases"] == 60
    assert set(saved) >= {"created_at", "created_by", "n_malignant", "threshold_rule"}
    with pytest.raises(SiteProfileError, match="fitted for model weights"):
        load_profile(tmp_path, "site-A", _card(sha="b" * 64))
    with pytest.raises(SiteProfileError, match="no site profile 'other'.*known: site-A"):
        load_profile(tmp_path, "other", card)
    saved["threshold"] = 1.5
    (tmp_path / "profiles" / "site-A.json").write_text(json.dumps(saved))
    with pytest.raises(SiteProfileError, match="invalid values"):
        load_profile(tmp_path, "site-A", card)
    for field, value in (("threshold", "0.2"), ("weights_sha256", 7), ("slope", None)):  # wrong types: typed refusal
        (tmp_path / "profiles" / "site-A.json").write_text(json.dumps({**saved, "threshold": 0.2, field: value}))
        with pytest.raises(SiteProfileError, match="malformed"):
            load_profile(tmp_path, "site-A", card)


def test_too_small_a_set_is_refused_and_a_small_one_warned():
    with pytest.raises(SiteProfileError, match=f"at least {MIN_MALIGNANT}"):
        _fitted(n_mal=MIN_MALIGNANT - 1)
    _, small = _fitted(n_mal=MIN_MALIGNANT)
    assert small.notes and str(ADVISED_MALIGNANT) in small.notes[0]
    _, large = _fitted(n_mal=ADVISED_MALIGNANT)
    assert not large.notes


@pytest.mark.parametrize("name", ["../evil", "", "a/b", "x" * 65, ".hidden"])
def test_profile_names_that_would_be_unsafe_file_names_are_refused(name):
    with pytest.raises(SiteProfileError, match="not allowed"):
        _fitted(name=name)


def test_verdict_says_do_not_use_when_sensitivity_collapses():
    metrics = {"sensitivity": 0.42, "sensitivity_ci": [0.30, 0.55], "specificity": 0.95, "n_malignant": 40,
               "auc": 0.85, "auc_ci": [0.8, 0.9], "ece": 0.2, "mean_p_malignant": 0.15, "malignant_share": 0.33}
    v = verdict(metrics, 0.98, 0.9, with_profile=False)
    assert v["level"] == "do_not_use"
    assert "0.42 [0.30-0.55]" in v["lines"][0] and "do not use without a site profile" in v["lines"][0]
    assert any("ECE" in line for line in v["lines"])


# --- using a profile -------------------------------------------------------------------------------------------

@pytest.fixture
def model_with_site(tmp_path) -> tuple[Path, Path]:
    """The blob model with its scope gate opened (its gate knows only plain speckle), and a 48-image site."""
    model_dir = build_blob_model_dir(tmp_path / "model")
    card = json.loads((model_dir / "model_card.json").read_text())
    card["scope"]["threshold"] = 1e9
    (model_dir / "model_card.json").write_text(json.dumps(card))
    reseal(model_dir)
    return model_dir, _site(tmp_path / "site", 24, 24, per_patient=2)


def test_validate_cli_reports_problems_and_saves_a_profile_for_this_model(model_with_site, tmp_path, capsys):
    model_dir, manifest = model_with_site
    with manifest.open("a") as f:
        f.write("img/missing.png,benign,P99,\n")
    out = tmp_path / "report.json"
    code = main(["validate", str(manifest), "--model", str(model_dir), "--json", str(out), "--profile", "site-A",
                 "--pdf", str(tmp_path / "report.pdf"), "--bootstrap", "100"])
    text = capsys.readouterr().out
    assert code == 0, text
    report = json.loads(out.read_text())
    assert report["rows_given"] == 49 and report["scored"] == 48 and report["counts"]["malignant"] == 24
    assert report["problems"][0]["where"].startswith("row 50") and "missing.png" in text
    assert report["shipped"]["verdict"]["level"] in {"ok", "caution", "do_not_use"}
    assert "optimistic" in report["profile"]["evaluated_on"]
    assert report["profile"]["metrics"]["sensitivity"] >= 0.9  # the rule, on the cases it was fitted on
    assert (tmp_path / "report.pdf").read_bytes().startswith(b"%PDF")
    card = ModelCard.load(model_dir)
    profile = load_profile(model_dir, "site-A", card)
    assert profile.n_cases == report["profile"]["profile"]["n_cases"] and profile.n_patients <= 24

    # predict --profile: the profile's threshold and label on every result; the card is untouched
    code = main(["predict", str(manifest.parent / "img" / "case_000.png"), "--model", str(model_dir), "--profile",
                 "site-A", "--json"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0 and result["threshold"] == pytest.approx(profile.threshold, abs=1e-6)
    assert result["model"]["site_profile"] == "site-A" and any("site site-A on 48" in n for n in result["notes"])
    assert ModelCard.load(model_dir).threshold == card.threshold


def test_holdout_report_judges_the_profile_on_other_patients(model_with_site):
    model_dir, manifest = model_with_site
    report, profile = validate_site(Predictor.from_dir(model_dir), read_local_cases(manifest), holdout=0.5,
                                    n_boot=50)
    assert profile is None and "too few" in report["profile"]["error"]  # 12 cancers left to fit on
    in_scope = round(report["scope"]["pass_rate"] * report["scored"])
    assert report["holdout"]["held_out"] + report["holdout"]["fitted_on"] == in_scope
    assert report["shipped"]["metrics"]["n"] == report["holdout"]["held_out"]


def test_a_predictor_with_a_profile_applies_it_and_the_workspace_forgets_old_results(model_with_site):
    model_dir, manifest = model_with_site
    card, profile = _fitted()
    profile = dataclasses.replace(profile, weights_sha256=ModelCard.load(model_dir).weights_sha256)
    profile.save(model_dir)
    shipped, site = Predictor.from_dir(model_dir), Predictor.from_dir(model_dir, profile="site-A")
    upload = Upload("x.png", (manifest.parent / "img" / "case_000.png").read_bytes())
    workspace = Workspace()
    before = workspace.open(shipped, upload).prediction
    after = workspace.open(site, upload).prediction
    expected = profile.apply(np.array([[before.probabilities[c] for c in card.class_names]]), 2)[0, 2]
    assert after.p_malignant == pytest.approx(expected, abs=1e-6)
    assert after.threshold == pytest.approx(profile.threshold) and before.threshold == pytest.approx(ModelCard.load(model_dir).threshold)
    assert after.model["calibration"] == profile.label
    with pytest.raises(SiteProfileError, match="shipped calibration"):
        validate_site(site, read_local_cases(manifest))


# --- the app page ----------------------------------------------------------------------------------------------

def test_validate_page_runs_saves_a_profile_and_diagnose_then_says_so(model_with_site, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from medapp.settings import reload_settings
    from tests.app_fixtures import PROJECT_ROOT

    model_dir, manifest = model_with_site
    monkeypatch.setenv("MEDAPP_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("MEDAPP_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    reload_settings()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for row in csv.DictReader(manifest.open()):
            z.write(manifest.parent / row["image"], f"cases/{row['label']}/{Path(row['image']).name}")
        z.writestr("cases/readme.txt", "not an image")
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=180)
    at.run()
    at.switch_page("pages/validate_site.py")
    at.run()
    at.file_uploader(key="site_zip").set_value([("cases.zip", archive.getvalue(), "application/zip")])
    at.run()
    at.toggle[0].set_value(False)  # 48 images: too few to hold half out, fit and judge on all
    at.run()
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    texts = "\n".join(str(e.value) for kind in ("markdown", "caption", "error", "warning", "success", "subheader")
                      for e in at.get(kind))
    assert "48 of 48 rows scored" in texts and "24 malignant" in texts and "Sensitivity at the threshold" in texts
    assert "optimistic" in texts  # the profile's figures are on the cases it was fitted on, and say so
    save = next(b for b in at.button if b.label == "Save profile")
    assert save.disabled
    at.text_input(key="profile_name").set_value("clinic-1")
    at.checkbox(key="profile_confirm").set_value(True)
    at.run()
    next(b for b in at.button if b.label == "Save profile").click()
    at.run()
    assert any("Saved site profile 'clinic-1'" in s.value for s in at.success)
    assert list_profiles(model_dir) == ["clinic-1"]

    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=180)  # a new session, on Diagnose
    at.run()
    at.sidebar.selectbox[0].set_value("clinic-1")
    at.run()
    at.file_uploader(key="uploads").set_value([("x.png", _png(1, 0.6), "image/png")])
    at.run()
    assert not at.exception, at.exception
    assert any("calibrated for site clinic-1 on" in c.value for c in at.caption)
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["model"]["site_profile"] == "clinic-1"
    (model_dir / "profiles" / "clinic-1.json").unlink()  # removed while chosen: back to the card, and said so
    at.run()
    assert not at.exception  # (AppTest shows the sidebar on a session's first run only, so not its warning)
    assert any("shipped calibration (model card)" in c.value for c in at.caption)
