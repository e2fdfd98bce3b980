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


def test_two_sites_under_torchrun_with_sampling_weights(busi_dir, tmp_path):
    """BUSI + BUS-BRA through the manifests: per-site validation AUC, the sites and scanners in the card."""
    if not (busi_dir / "busbra" / "metadata.csv").is_file():
        pytest.skip(f"BUS-BRA not found at {busi_dir / 'busbra'}")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = run_cli(["--datasets", "[busi, {name: busbra, weight: 2}]", "--out_dir", str(tmp_path / "two")],
                     tmp_path, launcher=torchrun)
    assert result.returncode == 0, result.stderr[-3000:]
    card = check_run_dir(tmp_path / "two")
    with (tmp_path / "two" / "history.csv").open() as f:
        row = next(csv.DictReader(f))
    assert {"val_auc_busi", "val_auc_busbra"} <= set(row)
    sites = {s["dataset"]: s for s in card.training_sites}
    assert set(sites) == {"busi", "busbra"} and sites["busbra"]["train"] == 12 and sites["busi"]["val"] == 12
    assert "BUS-BRA" in card.training_data and "busbra 2" in card.training_data


def test_weighted_sampler_draws_sites_by_weight_and_splits_ranks():
    from medapp.training.dataset import WeightedEpochSampler

    weights = torch.tensor([1.0] * 100 + [3.0] * 100).numpy() / 400  # site B three times as likely per image
    draw = list(WeightedEpochSampler(weights, seed=0))
    assert len(draw) == 200 and 0.65 < sum(i >= 100 for i in draw) / 200 < 0.85
    ranks = [list(WeightedEpochSampler(weights, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    together = [i for pair in zip(*ranks, strict=True) for i in pair]
    assert together == list(WeightedEpochSampler(weights, seed=0))  # the ranks share one draw
    later = WeightedEpochSampler(weights, seed=0)
    later.set_epoch(1)
    assert list(later) != together


def test_sample_weights_share_each_sites_weight_over_its_images():
    import numpy as np

    from medapp.data.manifest import DatasetSpec
    from medapp.training.dataset import TrainingData

    data = TrainingData(specs=[DatasetSpec("busi", weight=1.0), DatasetSpec("busbra", weight=1.0)],
                        train_records=[], val_records=[], train_x=np.zeros((5, 2, 2)), train_y=np.zeros(5),
                        train_source=np.array([0, 0, 0, 0, 1]), val_x=np.zeros((0, 2, 2)), val_y=np.zeros(0),
                        val_source=np.zeros(0, int), train_masks=None)
    np.testing.assert_allclose(data.sample_weights(), [0.25, 0.25, 0.25, 0.25, 1.0])
