"""Does the scope gate recognise breast ultrasound, or one hospital? Leave-one-site-out on a model's features.

    .venv/bin/python bench/scope_sites.py --model DIR [--json FILE]

For each site the gate is fitted on that site's training images alone against the outlier images, exactly as
the release step fits the shipped gate on all sites, and scored on every site's validation and test split and on
each scanner. A gate that passes its own site's images but refuses the other hospital's has learnt the hospital,
not the modality. The shipped gate (all sites) is scored beside it. Pass rates are of the gate alone (no quality
flags).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.data.datasets import load_records, load_squares  # noqa: E402
from medapp.data.outliers import outlier_squares  # noqa: E402
from medapp.model.checkpoint import load_model  # noqa: E402
from medapp.model.scope import ScopeGate, extract_layer_features, fit_gate  # noqa: E402

SITES = ("busi", "busbra")
SPLITS = ("train", "val", "test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args()
    t0 = time.perf_counter()
    card, model = load_model(args.model)
    records = {(site, split): load_records(site, split) for site in SITES for split in SPLITS}
    squares = {key: load_squares(recs, card.input) for key, recs in records.items()}
    outliers = outlier_squares(card.input)
    gates = {site: fit_gate(model, squares[site, "train"], outliers, card.input) for site in SITES}
    gates["both (as shipped)"] = ScopeGate.load(args.model, card)
    rows = []
    for name, gate in gates.items():
        for site in SITES:
            for split in ("val", "test"):
                passed = gate.passes(gate.score_features(
                    extract_layer_features(model, gate.layers, squares[site, split], card.input)))
                devices = np.array([r.device for r in records[site, split]])
                rows.append({"gate_fitted_on": name, "tested_on": site, "split": split, "n": len(passed),
                             "pass_rate": float(passed.mean()),
                             "per_device": {str(d): {"n": int((devices == d).sum()),
                                                     "pass_rate": float(passed[devices == d].mean())}
                                            for d in sorted(set(devices)) if d}})
    print(f"model {card.name}; scope gate pass rates ({time.perf_counter() - t0:.0f} s)")
    print(f"{'gate fitted on':20s} {'tested on':10s} {'split':6s} {'n':>5s} {'pass rate':>10s}  per scanner")
    for r in rows:
        scanners = ", ".join(f"{d} {v['pass_rate']:.1%} ({v['n']})" for d, v in r["per_device"].items())
        print(f"{r['gate_fitted_on']:20s} {r['tested_on']:10s} {r['split']:6s} {r['n']:5d} {r['pass_rate']:10.1%}  "
              f"{scanners}")
    if args.json:
        args.json.write_text(json.dumps({"model": card.name, "weights_sha256": card.weights_sha256,
                                         "scope_sha256": card.scope_sha256, "n_outliers": len(outliers),
                                         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
