"""Training smoke runs on a tiny subset: single process, DDP with torchrun on 2 CPU processes, and MSE loss."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medapp.model.card import ModelCard
from medapp.training.config import TrainConfig
from medapp.training.train import compute_loss, lr_at

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TINY = ["--architecture", "small_cnn", "--model_args", "{width: 8}", "--image_size", "32", "--epochs", "1",
        "--subset", "12", "--batch_size", "4", "--threads", "1"]


def cli_env() -> dict[str, str]:
    """Run the CLI from a scratch folder (outputs land there) with the project importable."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}


def run_cli(args: list[str], tmp_path: Path, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable]) + ["-m", "medapp", "train", *TINY, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=cli_env(), cwd=tmp_path)


def check_run_dir(out: Path) -> ModelCard:
    for name in ("model.safetensors", "scope.safetensors", "model_card.json", "config.yaml", "history.csv"):
        assert (out / name).is_file(), name
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["train_loss"]) > 0
    card = ModelCard.load(out)
    assert card.architecture == "small_cnn" and card.input.size == 32
    assert card.temperature > 0 and 0 <= card.threshold <= 1 and card.weights_sha256
    assert card.config["epochs"] == 1 and "medapp" in card.command
    return card


def test_one_epoch_single_process(busi_dir, tmp_path):
    result = run_cli(["--out_dir", str(tmp_path / "run")], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    check_run_dir(tmp_path / "run")


def test_one_epoch_torchrun_two_cpu_processes(busi_dir, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = run_cli(["--out_dir", str(tmp_path / "ddp")], tmp_path, launcher=torchrun)
    assert result.returncode == 0, result.stderr[-3000:]
    check_run_dir(tmp_path / "ddp")


def test_mse_loss_option_trains(busi_dir, tmp_path):
    result = run_cli(["--loss", "mse", "--out_dir", str(tmp_path / "mse")], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert check_run_dir(tmp_path / "mse").config["loss"] == "mse"


def test_unknown_config_key_is_a_clean_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "medapp", "train", "--learning_rate", "0.1"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120, env=cli_env())
    assert result.returncode == 2
    assert "unknown config key(s) learning_rate" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_losses_decrease_under_gradient_descent(loss):
    """A linear model fit by plain gradient descent on separable data: both losses go down."""
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    layer = torch.nn.Linear(5, 3)
    cfg = TrainConfig(loss=loss)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    first = compute_loss(layer(x), y, cfg, None).item()
    for _ in range(50):
        opt.zero_grad()
        compute_loss(layer(x), y, cfg, None).backward()
        opt.step()
    assert compute_loss(layer(x), y, cfg, None).item() < 0.7 * first


def test_mse_is_zero_for_a_perfect_one_hot_prediction():
    logits = torch.tensor([[50.0, 0.0, 0.0]])
    assert compute_loss(logits, torch.tensor([0]), TrainConfig(loss="mse"), None).item() == pytest.approx(0, abs=1e-6)


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0)
    assert lr_at(0, 100, 10, cfg) == pytest.approx(0.1)
    assert lr_at(10, 100, 10, cfg) == pytest.approx(1.0)
    assert lr_at(99, 100, 10, cfg) < 0.05
