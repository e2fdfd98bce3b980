"""The cross-site table: each model on each hospital's test split, labelled by the sites it was trained on.

    .venv/bin/python bench/cross_site.py MODEL_DIR... --out models/NAME/cross_site.json

Reads the metrics files that ``python -m medapp evaluate --dataset {busi,busbra} --split test --update-model``
wrote into each model folder (nothing is re-scored, so each test split is scored once per model), prints the
table, and writes it where the dashboard, the model card and the README read it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.formatting import format_number, format_percent  # noqa: E402
from medapp.reporting.dashboard import cross_site_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="model folders, evaluated on the test splits")
    parser.add_argument("--out", type=Path, required=True, help="cross_site.json to write (in the shipped folder)")
    args = parser.parse_args()
    rows = cross_site_rows(args.models)
    print(f"{'trained on':14s} {'tested on':8s} {'seen':5s} {'n':>4s} {'AUC':>6s} {'95% CI':>13s} {'sens':>6s} "
          f"{'spec':>6s} {'ECE':>6s} {'scope':>6s}")
    for r in rows:
        lo, hi = r["auc_ci"]
        print(f"{r['trained_on']:14s} {r['tested_on']:8s} {'yes' if r['site_seen_in_training'] else 'no':5s} "
              f"{r['n']:4d} {format_number(r['auc']):>6s} {format_number(lo)}-{format_number(hi)} "
              f"{format_percent(r['sensitivity']):>6s} {format_percent(r['specificity']):>6s} "
              f"{format_number(r['ece']):>6s} {format_percent(r['scope_pass_rate']):>6s}")
    args.out.write_text(json.dumps({"rows": rows, "command": "bench/cross_site.py " + " ".join(
        str(m) for m in args.models)}, indent=1, allow_nan=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
