"""Does combining a lesion's two views beat one view? Per-lesion AUC on BUS-BRA validation (issue 13, item 9).

    .venv/bin/python bench/lesion_views.py                      # the shipped model's stored validation scores
    .venv/bin/python bench/lesion_views.py --metrics models/lite0_160_2site/metrics_busbra_test.json

Reads the per-image predictions that ``python -m medapp evaluate --dataset busbra --split val`` stored in the
model folder (the shipped model, scored as the app scores), joins BUS-BRA's metadata for the patient (one lesion per
patient, mostly two views) and prints the per-lesion AUC of one view against each combination rule, with lesion
bootstrap CIs. The rule is chosen on validation; the test line, if asked for, is a report, never a tuning step.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.data.datasets import data_dir
from medapp.evaluation.lesion_views import group_lesions, view_table
from medapp.settings import MODELS_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=Path, default=MODELS_DIR / "lite0_160_2site" / "metrics_busbra_val.json")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args()
    metrics = json.loads(args.metrics.read_text())
    with (data_dir() / "busbra" / "metadata.csv").open(newline="") as f:
        patient_of = {row["image"]: row["patient"] for row in csv.DictReader(f)}
    rows = [{**p, "patient": patient_of[p["image"]]} for p in metrics["predictions"]]
    lesions = group_lesions(rows)
    table = view_table(lesions)
    print(f"{metrics['model']} {metrics['version']} on BUS-BRA {metrics['split']}: {len(rows)} images, "
          f"{len(lesions)} lesions, {table['lesions']} with two views ({table['malignant']} malignant)")
    print(f"{'score per lesion':<16} {'AUC':>6} {'95% CI':>15} {'vs one view':>12} {'95% CI':>17}")
    one = table["one view"]
    print(f"{'one view':<16} {one['auc']:6.3f} ({one['ci'][0]:.3f}-{one['ci'][1]:.3f})")
    for name in ("first view", "second view", "mean", "max", "logit_mean"):
        row = table[name]
        print(f"{name:<16} {row['auc']:6.3f} ({row['ci'][0]:.3f}-{row['ci'][1]:.3f}) {row['gain_vs_one_view']:+12.3f} "
              f"({row['gain_ci'][0]:+.3f} to {row['gain_ci'][1]:+.3f})")
    if args.out:
        args.out.write_text(json.dumps({"metrics": str(args.metrics), "split": metrics["split"], **table}, indent=1))


if __name__ == "__main__":
    main()
