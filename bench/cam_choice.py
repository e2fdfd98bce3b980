"""Choose how heatmaps are made (layer, CAM method, views) on the VALIDATION lesions, never on test.

    .venv/bin/python bench/cam_choice.py [--model DIR] [--layers L1,L2] [--methods M1,M2] [--views 1,2,10]

For each combination, prints the pointing game and energy in mask on the validation images that have a
radiologist mask (benign and malignant), beside the centre prior, and the CAM pass's time per image. The winner
goes into the model card's ``explain`` entry (``python -m medapp calibrate`` keeps it); test is scored once,
by ``python -m medapp evaluate --split test --localization``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.data.datasets import load_busi_records  # noqa: E402
from medapp.evaluation.localization import CENTER_PRIOR, evaluate_localization  # noqa: E402
from medapp.model.views import DEFAULT_VIEW_SHIFT  # noqa: E402
from medapp.serving.predict import Predictor  # noqa: E402

# views: 1 = the image alone, 2 = and its mirror, 10 = both, each also shifted diagonally by 4% (four ways)
VIEW_SETTINGS = {1: {"flip_average": False, "shift": 0.0}, 2: {"flip_average": True, "shift": 0.0},
                 5: {"flip_average": False, "shift": DEFAULT_VIEW_SHIFT},
                 10: {"flip_average": True, "shift": DEFAULT_VIEW_SHIFT}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--layers", default="", help="comma-separated layer paths (default: the card's)")
    parser.add_argument("--methods", default="gradcam,layercam,hirescam,gradcam++")
    parser.add_argument("--views", default="1,2,10", help=f"comma-separated view counts from {sorted(VIEW_SETTINGS)}")
    parser.add_argument("--split", default="val", choices=["train", "val"], help="never test")
    args = parser.parse_args()

    base = Predictor.from_dir(args.model)
    layers = [s for s in args.layers.split(",") if s] or [base.target_layer_name]
    methods = [s for s in args.methods.split(",") if s]
    records = [r for r in load_busi_records(args.split) if r.masks]
    print(f"model {base.card.name}; {args.split} images with lesion masks: {len(records)}")
    print(f"{'layer':16s} {'method':10s} {'views':>5s} {'pointing':>9s} {'energy':>7s} {'ms/img':>7s}")
    prior = None
    for layer in layers:
        for n_views in (int(v) for v in args.views.split(",")):
            config = {**base.explain_config, "target_layer": layer, **VIEW_SETTINGS[n_views]}
            predictor = Predictor(base.model, base.card, base.gate, explain_config=config)
            t0 = time.perf_counter()
            result = evaluate_localization(predictor, records, methods=methods)
            ms = (time.perf_counter() - t0) * 1000 / max(1, len(records) * len(methods))
            prior = result[CENTER_PRIOR]
            for method in methods:
                r = result[method]
                print(f"{layer:16s} {method:10s} {n_views:5d} {r['pointing_game']:9.3f} {r['energy_in_mask']:7.3f} "
                      f"{ms:7.0f}", flush=True)
    if prior is not None:
        print(f"{'centre prior':16s} {'':10s} {'':5s} {prior['pointing_game']:9.3f} {prior['energy_in_mask']:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
