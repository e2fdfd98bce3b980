"""Config resolution: defaults <- YAML <- command-line overrides, and clear errors."""

from __future__ import annotations

import pytest

from medapp.errors import ConfigError
from medapp.training.config import load_config, parse_overrides, save_config


def test_yaml_then_flags_override_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.01\nepochs: 7\naugment: {blur: 0.3}\n")
    cfg = load_config(path, parse_overrides(["--epochs", "3", "--augment.speckle=0.2", "--loss", "mse"]))
    assert (cfg.lr, cfg.epochs, cfg.loss) == (0.01, 3, "mse")
    assert (cfg.augment.blur, cfg.augment.speckle) == (0.3, 0.2)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, {"name": "x", "model_args": {"width": 8}})
    save_config(cfg, tmp_path / "r.yaml")
    assert load_config(tmp_path / "r.yaml") == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss": "hinge"}, "loss='hinge' is not valid; choose one of: cross_entropy, mse"),
        ({"optimizer": "adam"}, "choose one of: adamw, sgd"),
        ({"augment": {"rotate": 3}}, "unknown config key.*augment.rotate"),
    ],
)
def test_bad_values_name_the_valid_ones(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_override_needs_a_value():
    with pytest.raises(ConfigError, match="--lr needs a value"):
        parse_overrides(["--lr"])


@pytest.mark.parametrize(
    ("datasets", "message"),
    [([], "at least one dataset"), (["busi", "busi"], "each once"), (["hospital_x"], "not one medapp knows"),
     ([{"name": "busbra", "weight": -1}], "weight must be positive")],
)
def test_datasets_are_checked_when_the_config_loads(datasets, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, {"datasets": datasets})


def test_default_config_trains_on_busi_alone():
    cfg = load_config(None)
    assert [s.name for s in cfg.dataset_specs] == ["busi"]
