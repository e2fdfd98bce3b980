"""Helpers shared by the app, report, performance and browser tests (plain functions; conftest.py is the lead's).

``fake_metrics`` follows the ``metrics.json`` schema that ``python -m medapp evaluate`` writes, built with the same
metric functions on synthetic scores, so the dashboard can be tested before (and besides) a shipped model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medapp.data.datasets import data_dir
from medapp.evaluation.evaluate import ANCHORS, binary_report
from medapp.evaluation.metrics import multiclass_summary

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["normal", "benign", "malignant"]


def fake_metrics(n: int = 156, seed: int = 0, threshold: float = 0.2) -> dict[str, Any]:
    """A metrics dict in the ``evaluate`` schema from synthetic 3-class probabilities (BUSI-like class mix)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[0.17, 0.56, 0.27])
    logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    raw = np.exp(2 * logits) / np.exp(2 * logits).sum(1, keepdims=True)
    is_mal, p_mal, p_raw = labels == 2, probs[:, 2], raw[:, 2]
    return {
        "model": "fake_model", "version": "0.0.1", "weights_sha256": "0" * 64, "dataset": "busi", "split": "test",
        "n": n, **binary_report(threshold, is_mal, p_mal, p_raw, n_boot=200),
        **multiclass_summary(labels, probs, 3),
        "class_names": CLASS_NAMES, "temperature": 1.5, "anchors": ANCHORS,
        "predictions": [{"image": f"x/{i}.png", "label": CLASS_NAMES[y], "p_malignant": float(p)}
                        for i, (y, p) in enumerate(zip(labels, p_mal, strict=True))],
        "localization": {"gradcam": {"pointing_game": 0.84, "energy_in_mask": 0.41, "n": 112},
                         "eigencam": {"pointing_game": 0.71, "energy_in_mask": 0.33, "n": 112},
                         "center_prior": {"pointing_game": 0.55, "energy_in_mask": 0.2, "n": 112},
                         "default": "gradcam"},
        "scope_pass_rate": 0.97,
    }


def write_fake_model_files(model_dir: Path, metrics: dict[str, Any] | None = None, epochs: int = 5) -> Path:
    """Write ``metrics.json`` and ``history.csv`` into ``model_dir`` (for dashboard tests)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "metrics.json").write_text(json.dumps(metrics or fake_metrics(), indent=1))
    with (model_dir / "history.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_loss", "val_loss", "val_auc", "val_accuracy_3class", "lr"])
        for e in range(1, epochs + 1):
            w.writerow([e, 1 / e, 1.1 / e, 0.7 + 0.04 * e, 0.6 + 0.03 * e, 1e-3])
    return model_dir


def shipped_model_dirs() -> list[Path]:
    """Model folders under models/ (the shipped model), possibly none yet."""
    return sorted(p.parent for p in PROJECT_ROOT.glob("models/*/model_card.json"))


def busi_test_image(label: str = "malignant", index: int = 0) -> Path:
    """A BUSI test-split image of ``label``; skips with the reason when the data folder is absent."""
    root = data_dir()
    if not (root / "busi" / "splits.csv").is_file():
        pytest.skip(f"BUSI data not found at {root} (set MEDAPP_DATA_DIR to the folder holding busi/)")
    with (root / "busi" / "splits.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test" and r["label"] == label]
    return root / "busi" / rows[index]["image"]


def make_image(height: int = 120, width: int = 160, seed: int = 0) -> Any:
    """A small synthetic MedicalImage (speckle-like noise), for tests that need no real decoding."""
    from medapp.intake.medical_image import MedicalImage

    pixels = np.random.default_rng(seed).random((height, width), dtype=np.float32)
    gray = np.round(pixels * 255).astype(np.uint8)
    return MedicalImage(pixels=pixels, display=np.repeat(gray[..., None], 3, axis=2), source_kind="png",
                        original_size=(height, width), metadata={"format": "PNG"}, notes=["test image"])


def make_prediction(p_malignant: float = 0.62, *, in_scope: bool = True, shape: tuple[int, int] = (120, 160),
                    threshold: float = 0.3) -> Any:
    """A Prediction with hand-set values (the fields Predictor fills), for report and analysis tests."""
    from medapp.serving.likelihood import categorize_likelihood, decision_sentence
    from medapp.serving.predict import OUTSIDE_INTENDED_USE, Prediction

    rest = (1 - p_malignant) / 2
    category = categorize_likelihood(p_malignant, label="malignant", threshold=threshold, normal_ceiling=0.1)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    heatmap = np.exp(-((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2) / 400.0).astype(np.float32)
    return Prediction(
        probabilities={"normal": rest, "benign": rest, "malignant": p_malignant}, p_malignant=p_malignant,
        threshold=threshold, decision=p_malignant >= threshold,
        decision_text=decision_sentence(p_malignant, threshold, category) if in_scope else OUTSIDE_INTENDED_USE,
        label="malignant" if p_malignant > rest else "benign",
        category=category,
        uncertainty=0.03, low_confidence=False, in_scope=in_scope, scope_score=3.0 if in_scope else 40.0,
        scope_threshold=10.0, quality_flags=[],
        out_of_scope_reasons=[] if in_scope else ["image content does not look like breast ultrasound"],
        heatmap=heatmap, cam_method="gradcam", cam_target="malignant",
        model={"name": "test_model", "version": "9.9.9", "sha256": "ab" * 32}, timing_ms={"total": 1.0},
        notes=[], image_size=shape, tta_views=6,
    )


class StubPredictor:
    """Stands in for Predictor in orchestration tests: P(malignant) from the image's mean, counts calls."""

    default_cam_method = "gradcam"
    model_info = {"name": "test_model", "version": "9.9.9", "sha256": "ab" * 32}

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def predict(self, image: Any, *, cam_method: str | None = None, explain: bool = True, **_: Any) -> Any:
        self.calls.append({"cam_method": cam_method, "explain": explain, "frame": image.frame_index})
        pred = make_prediction(float(np.clip(image.pixels.mean(), 0.0, 1.0)), shape=image.pixels.shape,
                               in_scope=float(image.pixels.std()) > 0.03)
        if not explain:
            pred.heatmap = None
        return pred


def png_bytes(array: np.ndarray) -> bytes:
    """Encode an (H, W) or (H, W, 3) uint8 array as PNG."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def app_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model if there is one, else a tiny model trained in seconds on 24 BUSI images."""
    import subprocess
    import sys

    shipped = shipped_model_dirs()
    if len(shipped) == 1 and (shipped[0] / "model.safetensors").is_file():
        return shipped[0]
    busi_test_image()  # skips with the reason when the data is absent
    out = tmp_path_factory.mktemp("app_model") / "tiny"
    subprocess.run([sys.executable, "-m", "medapp", "train", "--architecture", "small_cnn", "--image_size", "64",
                    "--epochs", "1", "--subset", "24", "--out_dir", str(out)], check=True, cwd=PROJECT_ROOT,
                   capture_output=True)
    return out


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``streamlit run app.py`` headless on a free localhost port, in its own process group; a context manager.

    ``secrets``: the one secrets.toml Streamlit reads (its ``secrets.files`` option), instead of the project's and
    the user's ``.streamlit/secrets.toml``; a path that does not exist means no secrets at all.
    """

    def __init__(self, env: dict[str, str] | None = None, port: int | None = None, log_path: Path | None = None,
                 secrets: Path | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.log_path = log_path
        self.secrets = secrets
        self.proc: Any = None

    def __enter__(self) -> AppServer:
        import os
        import subprocess
        import sys
        import time
        import urllib.request

        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none",
             *(["--secrets.files", str(self.secrets)] if self.secrets is not None else [])],
            cwd=PROJECT_ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {self.proc.returncode} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.__exit__(None, None, None)
        raise TimeoutError(f"streamlit did not answer on {self.url} within 60 s")

    def __exit__(self, *exc: object) -> None:
        import os
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    @property
    def pid(self) -> int:
        return self.proc.pid


@pytest.fixture
def app_server(app_model_dir: Path, tmp_path: Path):
    """The app on the shipped (or tiny) model, its audit log in the test's folder (``tmp_path / "audit.jsonl"``)."""
    env = {"MEDAPP_MODEL_DIR": str(app_model_dir), "MEDAPP_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    with AppServer(env, log_path=tmp_path / "streamlit.log") as srv:
        yield srv
