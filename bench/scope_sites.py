"""Does the scope gate recognise breast ultrasound, or one hospital? Leave-one-site-out on a model's features.

    .venv/bin/python bench/scope_sites.py --model DIR [--json FILE]

For each site the gate is fitted on that site alone (its train split, threshold on its val split, exactly as the
release step fits the shipped gate on all sites) and scored on every site's test split. A gate that passes its
own site's test images but refuses the other hospital's has learnt the hospital, not the modality. The pooled
gate (all sites, as shipped) is scored beside it. Pass rates are of the gate alone (no quality flags).
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
from medapp.model.checkpoint import load_model  # noqa: E402
from medapp.model.scope import ScopeGate, extract_layer_features, fit_gate  # noqa: E402

SITES = ("busi", "busbra")


def pass_rate(gate: ScopeGate, model, squares: np.ndarray, spec) -> float:  # noqa: ANN001
    return float(gate.passes(gate.score_features(extract_layer_features(model, gate.layers, squares, spec))).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args()
    t0 = time.perf_counter()
    card, model = load_model(args.model)
    squares = {(site, split): load_squares(load_records(site, split), card.input)
               for site in SITES for split in ("train", "val", "test")}
    gates = {site: fit_gate(model, squares[site, "train"], squares[site, "val"], card.input)[0] for site in SITES}
    gates["both (as shipped)"] = ScopeGate.load(args.model, card)
    rows = [{"gate_fitted_on": name, "tested_on": site, "n": len(squares[site, "test"]),
             "pass_rate": pass_rate(gate, model, squares[site, "test"], card.input)}
            for name, gate in gates.items() for site in SITES]
    print(f"model {card.name}; scope gate pass rate on each test split ({time.perf_counter() - t0:.0f} s)")
    print(f"{'gate fitted on':20s} {'tested on':10s} {'n':>5s} {'pass rate':>10s}")
    for r in rows:
        print(f"{r['gate_fitted_on']:20s} {r['tested_on']:10s} {r['n']:5d} {r['pass_rate']:10.1%}")
    if args.json:
        args.json.write_text(json.dumps({"model": card.name, "weights_sha256": card.weights_sha256, "rows": rows},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
