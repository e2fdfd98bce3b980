"""``python -m medapp calibrate --model DIR``: refit temperature, threshold and scope gate on validation."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("calibrate", help="refit temperature, operating threshold and scope gate of a "
                                              "trained model folder on the validation split, rewrite its card")
    parser.add_argument("--model", required=True, help="trained model folder (with config.yaml)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..training.release import recalibrate

    card = recalibrate(args.model)
    print(f"{card.name}: temperature {card.temperature:.3f}, threshold {card.threshold:.3f} "
          f"({card.threshold_rule}), scope threshold {card.scope['threshold']:.2f}")
    return 0
