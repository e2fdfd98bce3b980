"""``python -m medapp evaluate [--model DIR] [--split test] [--dataset busi|breastmnist] [--json FILE]``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="score a model on a held-out split and write metrics.json")
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--dataset", default="busi", choices=["busi", "breastmnist"])
    parser.add_argument("--json", dest="json_path", help="also write the metrics object to this file")
    parser.add_argument("--localization", action="store_true",
                        help="add Grad-CAM pointing game / energy-in-mask per CAM method and the scope pass rate")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the AUC CI")
    parser.add_argument("--no-card", action="store_true", help="do not copy the headline numbers into the card")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..card import ModelCard
    from ..evaluate import evaluate, summarize
    from ..predict import default_model_dir

    model_dir = args.model or default_model_dir()
    result = evaluate(model_dir, split=args.split, dataset=args.dataset, localization=args.localization,
                      json_path=args.json_path, n_boot=args.bootstrap)
    if not args.no_card:
        card = ModelCard.load(model_dir)
        card.metrics[f"{args.dataset}_{args.split}"] = summarize(result)
        card.save(model_dir)
        from ..model_readme import write_model_readme

        write_model_readme(model_dir)
    lo, hi = result["auc_ci"]
    print(f"{result['model']} on {args.dataset} {args.split} (n={result['n']}): AUC {result['auc']:.3f} "
          f"[{lo:.3f}, {hi:.3f}]  ACC@0.5 {result['accuracy']:.3f}  at threshold {result['threshold']:.3f}: "
          f"sensitivity {result['sensitivity']:.3f} specificity {result['specificity']:.3f}  "
          f"ECE {result['ece']:.3f} (uncalibrated {result['ece_uncalibrated']:.3f})")
    return 0
