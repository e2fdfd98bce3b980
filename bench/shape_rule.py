"""Which shape rule reads the model's outline as a radiologist's mask reads? Chosen on validation lesions only.

    .venv/bin/python bench/shape_rule.py --model DIR [--split val] [--json FILE]

Issue 14 asks that orientation and shape from the model's outline agree with the same rule applied to the
radiologist's mask. Hand-drawn masks are polygons with corners and wobble a smooth network outline does not have,
so a rule that reads boundary detail as "irregular shape" disagrees with itself between the two (the shape
confusion tables of the first test scoring: most radiologist "irregular" lesions were model "oval"). In the BI-RADS
lexicon shape is the lesion's gross form and boundary detail is the margin, so the candidates measure solidity and
the ellipse residual on the outline smoothed at a fraction of the lesion's size (``medapp.lesion.geometry``,
``shape_measures``), with the thresholds on a grid. The shipped rule is the unsmoothed one; the table says what a
change would buy and cost.

Each validation lesion image is run through the Predictor once (its principal outline, exactly what the app
measures); the radiologist lesion it is compared with is ``outline_metrics.truth_lesion``. Printed per candidate
rule: agreement and Cohen's kappa per dataset, and how often each side reads "irregular". The choice rule: the
highest worst-dataset agreement among rules whose kappa is at least 0.2 on both datasets and that read at least a
tenth of the radiologists' lesions as irregular on each (a rule that never says "irregular" agrees by base rate and
drops the descriptor that matters most), ties to the smaller smoothing. The irregular floor was added after the
first run: kappa alone let through rules that call no lesion irregular (their kappa came from round vs oval).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.data.datasets import load_mask, load_records  # noqa: E402
from medapp.evaluation.outline_metrics import cohen_kappa, truth_lesion  # noqa: E402
from medapp.intake.imaging import load_image  # noqa: E402
from medapp.lesion import geometry  # noqa: E402
from medapp.serving.predict import Predictor  # noqa: E402

DATASETS = ("busi", "busbra")
SMOOTHING = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10)
SOLIDITY = (0.80, 0.83, 0.85, 0.87, 0.90)
RESIDUAL = (0.15, 0.20, 0.25, 0.30, 0.35)
ROUND = (0.80, 0.85, 0.90)
MIN_KAPPA = 0.2
MIN_IRREGULAR = 0.10


def lesion_pairs(model_dir: Path, dataset: str, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(model outline, radiologist lesion) bool masks of every in-scope, outlined lesion image of the split."""
    predictor = Predictor.from_dir(model_dir)
    pairs = []
    for record in tqdm([r for r in load_records(dataset, split) if r.masks], desc=f"{dataset} {split}"):
        truth = load_mask(record)
        if not truth.any():
            continue
        prediction = predictor.predict_batch([load_image(record.path)], tta=False, explain=False)[0]
        if not prediction.in_scope or prediction.lesion is None:
            continue
        principal = prediction.lesion.principal.mask
        pairs.append((principal, truth_lesion(truth, principal)))
    return pairs


def numbers(mask: np.ndarray) -> dict[float, tuple[float, float, float]]:
    """Per smoothing: (solidity, ellipse residual, short/long axis) of one lesion (the axes are not smoothed)."""
    axis_ratio = geometry.measure(mask).axis_ratio
    return {s: (*geometry.shape_measures(mask, s), axis_ratio) for s in SMOOTHING}


def read_shape(n: np.ndarray, solidity: float, residual: float, round_ratio: float) -> np.ndarray:
    irregular = (n[:, 0] < solidity) | (n[:, 1] > residual)
    return np.where(irregular, "irregular", np.where(n[:, 2] >= round_ratio, "round", "oval"))


def score(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    table = {t: {p: int(((truth == t) & (pred == p)).sum()) for p in ("oval", "round", "irregular")}
             for t in ("oval", "round", "irregular")}
    return {"agreement": float((pred == truth).mean()), "kappa": cohen_kappa(table, ["oval", "round", "irregular"]),
            "irregular_model": float((pred == "irregular").mean()),
            "irregular_truth": float((truth == "irregular").mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--json", type=Path, help="also write every rule's scores as JSON")
    args = parser.parse_args()
    t0 = time.perf_counter()
    measured = {}
    for dataset in DATASETS:
        pairs = lesion_pairs(args.model, dataset, args.split)
        pred_numbers, truth_numbers = [numbers(p) for p, _ in pairs], [numbers(t) for _, t in pairs]
        measured[dataset] = {s: (np.array([n[s] for n in pred_numbers]), np.array([n[s] for n in truth_numbers]))
                             for s in SMOOTHING}
        print(f"{dataset} {args.split}: {len(pairs)} outlined lesions")
    rows = []
    for s, sol, res, rnd in itertools.product(SMOOTHING, SOLIDITY, RESIDUAL, ROUND):
        row = {"smoothing": s, "solidity": sol, "residual": res, "round": rnd}
        for dataset in DATASETS:
            pred_n, truth_n = measured[dataset][s]
            row[dataset] = score(read_shape(pred_n, sol, res, rnd), read_shape(truth_n, sol, res, rnd))
        rows.append(row)
    shipped = next(r for r in rows if (r["smoothing"], r["solidity"], r["residual"], r["round"]) ==
                   (0.0, geometry.SOLIDITY_IRREGULAR, geometry.RESIDUAL_IRREGULAR, geometry.ROUND_RATIO))
    eligible = [r for r in rows if min(r[d]["kappa"] for d in DATASETS) >= MIN_KAPPA
                and min(r[d]["irregular_truth"] for d in DATASETS) >= MIN_IRREGULAR]
    ranked = sorted(eligible, key=lambda r: (-min(r[d]["agreement"] for d in DATASETS), r["smoothing"]))

    def line(r: dict) -> str:
        cells = "  ".join(f"{d} {r[d]['agreement']:.3f} k {r[d]['kappa']:.2f} irr {r[d]['irregular_model']:.2f}/"
                          f"{r[d]['irregular_truth']:.2f}" for d in DATASETS)
        return f"smooth {r['smoothing']:.2f} sol {r['solidity']:.2f} res {r['residual']:.2f} round {r['round']:.2f}  {cells}"

    print(f"shipped rule:\n  {line(shipped)}")
    print(f"best {min(10, len(ranked))} of {len(eligible)} rules with kappa >= {MIN_KAPPA} and radiologist "
          f"lesions irregular >= {MIN_IRREGULAR} on both (agreement, kappa, share irregular model/radiologist):")
    for r in ranked[:10]:
        print("  " + line(r))
    degenerate = max(rows, key=lambda r: min(r[d]["agreement"] for d in DATASETS))
    print(f"for comparison, the highest worst-dataset agreement of any rule:\n  {line(degenerate)}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "shipped": shipped, "chosen": ranked[0] if ranked else None,
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
