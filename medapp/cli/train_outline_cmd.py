"""``python -m medapp train-outline --config configs/NAME.yaml [--install] [--reselect] [--key value ...]``."""

from __future__ import annotations

import argparse
import shlex
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train-outline", help="train the lesion-outline decoder on a trained model's frozen "
                                                  "encoder; --install adds it to that model's folder")
    parser.add_argument("--config", help="YAML file overriding the OutlineConfig defaults")
    parser.add_argument("--install", action="store_true",
                        help="write the decoder and its card entry into the base model's folder")
    parser.add_argument("--reselect", action="store_true",
                        help="do not train: choose the threshold and mirror averaging again for the run's saved best "
                             "epoch (its out_dir) and rewrite outline.json")
    parser.set_defaults(run=run, accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from ..training.config import parse_overrides
    from ..training.train_outline import load_outline_config, train_outline

    cfg = load_outline_config(args.config, parse_overrides(args.overrides))
    command = "python -m medapp " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = train_outline(cfg, command=command, install=args.install, reselect=args.reselect)
    print(f"outline decoder written to {out}" + (f" and installed into {cfg.base_model}" if args.install else ""))
    return 0
