"""``python -m medapp evaluate [--model DIR] [--split test] [--dataset busi|breastmnist] [--json FILE]
[--update-model] [--profile NAME]``: score a model; write into its folder only when asked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.manifest import KNOWN_MANIFESTS
from ..errors import SiteProfileError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="score a model on a held-out split (writes nothing unless asked)")
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--dataset", default="busi", choices=[*KNOWN_MANIFESTS, "breastmnist"],
                        help="busi and busbra: their manifests (per scanner when several); breastmnist: the 28 px file")
    parser.add_argument("--json", dest="json_path", type=Path, help="write the metrics object to this file")
    parser.add_argument("--update-model", action="store_true",
                        help="write the metrics file, plots, the card's summary and README into the model folder "
                             "(records this run did not compute, such as localisation, are kept)")
    parser.add_argument("--localization", action="store_true",
                        help="add Grad-CAM pointing game / energy-in-mask per CAM method on the lesion masks")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the AUC CI")
    parser.add_argument("--profile", metavar="NAME", help="score with this site profile's calibration and threshold "
                        "(fitted by `validate --profile`) instead of the card's")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import evaluate
    from ..model.checkpoint import default_model_dir

    if args.update_model and args.profile:
        raise SiteProfileError("--update-model writes the shipped card's figures; it cannot be combined with "
                               "--profile (write a site's figures with --json)")
    model_dir = args.model or default_model_dir()
    result = evaluate(model_dir, split=args.split, dataset=args.dataset, localization=args.localization,
                      n_boot=args.bootstrap, profile=args.profile)
    if args.json_path is not None:
        args.json_path.write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    if args.update_model:
        from ..reporting.model_folder import publish_evaluation

        print(f"wrote {publish_evaluation(model_dir, result)}")
    lo, hi = result["auc_ci"]
    print(f"{result['model']} on {args.dataset} {args.split} (n={result['n']}): AUC {result['auc']:.3f} "
          f"[{lo:.3f}, {hi:.3f}]  ACC@0.5 {result['accuracy']:.3f}  at threshold {result['threshold']:.3f}: "
          f"sensitivity {result['sensitivity']:.3f} specificity {result['specificity']:.3f}  "
          f"ECE {result['ece']:.3f} (uncalibrated {result['ece_uncalibrated']:.3f})")
    if "outline" in result:
        print(outline_line(result["outline"]))
    return 0


def outline_line(outline: dict) -> str:
    """One line of the outline section: Dice (all lesion images and in scope), HD95, misses, agreement."""
    everything, in_scope, agree = outline["all_lesion_images"], outline["in_scope"], outline["agreement"]
    return (f"outline on {outline['n_lesion_images']} lesion images: Dice mean {everything['dice_mean']:.3f} "
            f"(in scope {in_scope['dice_mean']:.3f}, median {in_scope['dice_median']:.3f})  IoU mean "
            f"{in_scope['iou_mean']:.3f}  HD95 mean {in_scope['hd95_mean_px']:.1f} px  missed {in_scope['missed']}  "
            f"out of scope {outline['outline_skipped_out_of_scope']}  agreement with the radiologists' mask: "
            f"orientation {agree['orientation']['agreement']:.3f}, shape {agree['shape']['agreement']:.3f}")
