"""The prediction service and ``python -m medapp predict``: contract, determinism, refusal, memory and hooks."""

from __future__ import annotations

import gc
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from model_fixtures import (  # noqa: F401
    build_blob_model_dir,
    medical_image,
    reseal,
    speckle_image,
    tiny_model_dir,
    tiny_predictor,
)
from PIL import Image

from medapp.cli import main
from medapp.errors import ModelLoadError
from medapp.intake.privacy import AuditLog
from medapp.model import checkpoint as checkpoint_module
from medapp.model.checkpoint import default_model_dir
from medapp.serving import predict as predict_module
from medapp.serving.likelihood import LikelihoodCategory
from medapp.serving.predict import Prediction, Predictor
from medapp.serving.signin import cli_user
from medapp.settings import reload_settings

JSON_KEYS = {"file_sha256", "label", "probabilities", "p_malignant", "threshold", "decision", "category",
             "uncertainty", "low_confidence", "in_scope", "scope_score", "quality_flags", "model", "timing_ms"}


def _no_timing(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "timing_ms"}


def test_prediction_contract(tiny_predictor: Predictor) -> None:
    pred = tiny_predictor.predict(medical_image(speckle_image(210, 330)))
    assert isinstance(pred, Prediction) and isinstance(pred.category, LikelihoodCategory)
    assert list(pred.probabilities) == ["normal", "benign", "malignant"]
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)
    assert pred.p_malignant == pred.probabilities["malignant"]
    assert pred.decision == (pred.p_malignant >= pred.threshold) and pred.threshold == 0.3
    assert pred.label == max(pred.probabilities, key=pred.probabilities.get)
    assert pred.heatmap.shape == (210, 330) and pred.heatmap.dtype == np.float32
    assert 0.0 <= pred.heatmap.min() <= pred.heatmap.max() <= 1.0
    assert pred.cam_method == "gradcam" and pred.cam_target == "malignant"  # what raised the malignancy estimate
    assert pred.model == {"name": "tiny_test_model", "version": "0.0.1", "sha256": tiny_predictor.card.weights_sha256}
    assert {"preprocess", "forward", "scope", "cam_and_tta", "total"} <= set(pred.timing_ms)
    assert pred.uncertainty >= 0.0 and pred.tta_views == len(tiny_predictor.views) > 1
    assert json.loads(json.dumps(pred.to_dict()))["category"] == pred.category.code


def test_calibration_uses_card_temperature(tiny_predictor: Predictor) -> None:
    image = medical_image(speckle_image(200, 200, seed=5))
    pred = tiny_predictor.predict(image, explain=False)
    x = predict_module.normalize(
        torch.from_numpy(predict_module.resize_to_square(image.pixels, tiny_predictor.card.input))[None],
        tiny_predictor.card.input)
    with torch.no_grad():
        logits = tiny_predictor.model(x)[0].double()
    expected = torch.softmax(logits / 1.5, 0).numpy()
    np.testing.assert_allclose(list(pred.probabilities.values()), expected, rtol=1e-5)


def test_same_image_twice_same_output(tiny_predictor: Predictor) -> None:
    image = medical_image(speckle_image(240, 320, seed=1))
    a, b = tiny_predictor.predict(image), tiny_predictor.predict(image)
    assert _no_timing(a.to_dict()) == _no_timing(b.to_dict())
    np.testing.assert_array_equal(a.heatmap, b.heatmap)


def test_tta_changes_uncertainty_not_the_headline(tiny_predictor: Predictor) -> None:
    image = medical_image(speckle_image(240, 320, seed=2))
    with_tta, without = tiny_predictor.predict(image), tiny_predictor.predict(image, tta=False, explain=False)
    assert with_tta.probabilities == pytest.approx(without.probabilities)
    assert without.uncertainty == 0.0 and without.heatmap is None and without.tta_views == 1


def test_batch_equals_single(tiny_predictor: Predictor) -> None:
    images = [medical_image(speckle_image(200 + 10 * i, 300 - 20 * i, seed=i)) for i in range(3)]
    batch = tiny_predictor.predict_batch(images)
    for image, pred in zip(images, batch):
        single = tiny_predictor.predict(image)
        assert single.probabilities == pytest.approx(pred.probabilities, abs=1e-6)
        np.testing.assert_allclose(single.heatmap, pred.heatmap, atol=1e-5)


def test_tta_from_the_cam_pass_equals_a_plain_tta_pass(tmp_path: Path) -> None:
    """The heatmap's forward pass doubles as test-time augmentation: same views, same numbers as a no-grad pass."""
    predictor = Predictor.from_dir(build_blob_model_dir(tmp_path))  # malignant logit = mean brightness
    pixels = np.zeros((150, 260), np.float32)
    pixels[:40, 200:] = 1.0  # a blob in the corner, which the shifted views partly push out of the frame
    merged = predictor.predict(medical_image(pixels))
    plain = predictor.predict(medical_image(pixels), explain=False)
    assert merged.tta_views == plain.tta_views == len(predictor.views) > 1
    assert merged.uncertainty > 1e-4
    assert merged.uncertainty == pytest.approx(plain.uncertainty, rel=1e-4)
    assert merged.probabilities == pytest.approx(plain.probabilities, abs=1e-6)


def test_cam_target_and_method_options(tiny_predictor: Predictor) -> None:
    image = medical_image(speckle_image(200, 260))
    pred = tiny_predictor.predict(image, cam_method="layercam", target="normal", tta=False)
    assert pred.cam_method == "layercam" and pred.cam_target == "normal"
    with pytest.raises(ValueError, match="unknown CAM target 'cancer'; choose one of: normal, benign, malignant"):
        tiny_predictor.predict(image, target="cancer")
    with pytest.raises(ValueError, match="enable slow methods"):
        tiny_predictor.predict(image, cam_method="scorecam")


@pytest.mark.parametrize(
    ("pixels", "flag"),
    [(speckle_image(28, 28), "too_small"), (np.zeros((300, 300), np.float32), "nearly_constant")],
)
def test_quality_problem_is_outside_intended_use(tiny_predictor: Predictor, pixels: np.ndarray, flag: str) -> None:
    pred = tiny_predictor.predict(medical_image(pixels))
    assert flag in pred.quality_flags and not pred.in_scope
    assert pred.out_of_scope_reasons and pred.decision_text.startswith("Outside intended use")


def test_thread_safe(tiny_predictor: Predictor) -> None:
    images = [medical_image(speckle_image(200, 240, seed=s)) for s in range(4)]
    expected = [tiny_predictor.predict(im).heatmap for im in images]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = tiny_predictor.predict(images[i]).heatmap

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_allclose(results[i], expected[i], atol=1e-6)


def _hooks_left(model: torch.nn.Module) -> int:
    return sum(len(getattr(m, name)) for m in model.modules()
               for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                            "_state_dict_hooks", "_load_state_dict_pre_hooks"))


def test_200_predictions_memory_flat_and_no_hooks(tiny_predictor: Predictor, request: pytest.FixtureRequest) -> None:
    image = medical_image(speckle_image(300, 400, seed=7))
    process = psutil.Process()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2-core machine shared with training: oversubscribed threads make this 10x slower
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    methods = ["gradcam", "gradcam++", "hirescam", "layercam", "eigencam"]
    for i in range(20):  # warm-up: allocator pools, lazy imports
        tiny_predictor.predict(image, cam_method=methods[i % 5])
    gc.collect()
    before = process.memory_info().rss
    for i in range(200):
        pred = tiny_predictor.predict(image, cam_method=methods[i % 5])
        assert pred.heatmap is not None
    gc.collect()
    growth_mb = (process.memory_info().rss - before) / 2**20
    assert growth_mb < 50, f"RSS grew {growth_mb:.1f} MB over 200 predictions"
    assert _hooks_left(tiny_predictor.model) == 0
    assert all(p.grad is None for p in tiny_predictor.model.parameters())


def test_hooks_released_when_cam_fails(tiny_predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_grad_cam import GradCAM

    def boom(*args: object, **kwargs: object) -> None:
        raise IndexError("simulated failure inside the CAM")

    monkeypatch.setattr(GradCAM, "forward", boom)
    with pytest.raises(IndexError, match="simulated"):
        tiny_predictor.predict(medical_image(speckle_image(200, 200)))
    assert _hooks_left(tiny_predictor.model) == 0


def test_tampered_weights_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_model_dir, tampered)
    weights = tampered / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one bit in the last weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="model.safetensors in .* does not match SHA256SUMS"):
        Predictor.from_dir(tampered)
    reseal(tampered)  # even with the folder's checksums redone, the card's own record of the weights refuses them
    with pytest.raises(ModelLoadError, match="SHA-256 .* but the model card expects"):
        Predictor.from_dir(tampered)


def test_card_without_hash_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "nohash"
    shutil.copytree(tiny_model_dir, folder)
    card = json.loads((folder / "model_card.json").read_text())
    card["weights_sha256"] = ""
    (folder / "model_card.json").write_text(json.dumps(card))
    reseal(folder)  # as if released so: the loader's own check must still refuse it
    with pytest.raises(ModelLoadError, match="records no weights_sha256"):
        Predictor.from_dir(folder)


def test_default_model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    monkeypatch.setenv("MEDAPP_MODEL_DIR", str(tiny_model_dir))
    reload_settings()
    assert default_model_dir() == tiny_model_dir
    monkeypatch.delenv("MEDAPP_MODEL_DIR")
    reload_settings()
    monkeypatch.setattr(checkpoint_module, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelLoadError, match="no shipped model under"):
        default_model_dir()
    for name in ("a", "b"):
        shutil.copytree(tiny_model_dir, tmp_path / name)
    with pytest.raises(ModelLoadError, match=r"several models under .* \(a, b\)"):
        default_model_dir()
    shutil.rmtree(tmp_path / "b")
    assert default_model_dir() == tmp_path / "a"


# --- CLI ---

def _png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray((pixels * 255).astype(np.uint8)).save(path)
    return path


def test_cli_predict_json_folder_overlays_and_refusals(tiny_model_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    _png(folder / "a.png", speckle_image(200, 260, seed=1))
    _png(folder / "b.png", speckle_image(220, 240, seed=2))
    (folder / "notes.txt").write_text("not an image")  # ignored: not an image suffix
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    single = _png(tmp_path / "c.png", speckle_image(230, 250, seed=3))
    overlays = tmp_path / "overlays"
    monkeypatch.setenv("MEDAPP_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    reload_settings()
    code = main(["predict", str(folder), str(single), str(tmp_path / "missing.png"), "--model", str(tiny_model_dir),
                 "--json", "--overlay-dir", str(overlays), "--without-region", "whole-image", "--batch-size", "2"])
    out, err = capsys.readouterr()
    assert code == 2
    rows = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["file"]).name for r in rows] == ["a.png", "b.png", "c.png"]
    for row in rows:
        assert JSON_KEYS <= set(row)
        assert set(row["model"]) == {"name", "version", "sha256"} and "decode" in row["timing_ms"]
    import hashlib

    assert rows[2]["file_sha256"] == hashlib.sha256(single.read_bytes()).hexdigest()
    errors = err.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"error: {folder / 'broken.png'}: ")
    assert errors[1] == f"error: {tmp_path / 'missing.png'}: no such file or folder"
    assert sorted(p.name for p in overlays.iterdir()) == ["a_overlay.png", "b_overlay.png", "c_overlay.png"]
    with Image.open(overlays / "a_overlay.png") as im:
        assert im.size == (260, 200) and im.mode == "RGB"
    # every result and the refusal are in the audit log, as in the app: hashes, no file names
    audit = AuditLog(tmp_path / "audit.jsonl").read()
    assert [e["file_sha256"] for e in audit if "p_malignant" in e["outputs"]] == [r["file_sha256"] for r in rows]
    assert sum("refused" in e["outputs"] for e in audit) == 1
    assert {e["user"] for e in audit} == {cli_user()}  # who ran it: the OS account
    assert "a.png" not in (tmp_path / "audit.jsonl").read_text()


def test_cli_predict_human_output(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _png(tmp_path / "scan.png", speckle_image(200, 260))
    assert main(["predict", str(path), "--model", str(tiny_model_dir), "--no-tta"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: ") and ("P(malignant)" in out or "OUTSIDE INTENDED USE" in out)


def test_cli_bad_cam_and_bad_model(tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _png(tmp_path / "scan.png", speckle_image(200, 260))
    assert main(["predict", str(path), "--model", str(tiny_model_dir), "--cam", "gradkam"]) == 2
    assert "error: unknown CAM method 'gradkam'" in capsys.readouterr().err
    assert main(["predict", str(path), "--model", str(tmp_path)]) == 2
    assert "error: no model_card.json in" in capsys.readouterr().err


def test_tta_headline_equals_what_calibration_and_evaluation_compute(tmp_path: Path) -> None:
    """With ``tta_headline`` the probabilities are the views' mean logits, the same in serving and in evaluate."""
    from medapp.model.calibrate import softmax
    from medapp.model.card import ModelCard
    from medapp.model.inference import headline_views, predict_logits

    model_dir = build_blob_model_dir(tmp_path)
    card = ModelCard.load(model_dir)
    card.tta_headline, card.temperature = True, 0.05  # sharp: small logit shifts show
    card.explain = {**card.explain, "flip_average": False, "shift": 0.1}
    card.save(model_dir)
    predictor = Predictor.from_dir(model_dir)
    pixels = np.zeros((150, 260), np.float32)
    pixels[:50, 190:] = 1.0  # near the corner: the shifted views see different amounts of it
    square = predict_module.resize_to_square(pixels, card.input)[None]
    views = headline_views(True, card.explain, card.input)
    assert len(views) == 5
    expected = softmax(predict_logits(predictor.model, square, card.input, views=views), 0.05)[0]
    single = softmax(predict_logits(predictor.model, square, card.input), 0.05)[0]
    assert np.abs(expected - single).max() > 1e-3  # the views do change the headline
    for kwargs in ({}, {"explain": False}, {"explain": False, "tta": False}):
        pred = predictor.predict(medical_image(pixels), **kwargs)
        np.testing.assert_allclose(list(pred.probabilities.values()), expected, rtol=1e-5, atol=1e-7)
        assert pred.tta_views == 5 and pred.uncertainty > 0
    assert pred.label == max(pred.probabilities, key=pred.probabilities.get)
