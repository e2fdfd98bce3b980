"""``python -m medapp train --config configs/NAME.yaml [--key value ...]`` (also under torchrun)."""

from __future__ import annotations

import argparse
import shlex
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model from a YAML config; extra --key value pairs override it")
    parser.add_argument("--config", help="YAML file overriding the TrainConfig defaults")
    parser.set_defaults(run=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from ..training.config import load_config, parse_overrides
    from ..training.train import train

    cfg = load_config(args.config, parse_overrides(args.overrides))
    command = "python -m medapp " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = train(cfg, command=command)
    print(f"model written to {out}")
    return 0
