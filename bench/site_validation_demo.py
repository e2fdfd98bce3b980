"""Worked example of local validation (issue 11): BUS-BRA treated as a new hospital for a model trained without it.

    .venv/bin/python bench/site_validation_demo.py --model runs/lite0_160_busi_only \
        --out docs/site_validation_busbra.json

Lays BUS-BRA's test split (304 images, 4 scanners) out as a hospital would hand it over (a labels CSV with
patient and device, the images beside it as links into the read-only data folder), then runs exactly what
``python -m medapp validate CASES.csv --holdout 0.5`` runs: the shipped calibration on the held-out half of the
patients, and a site profile fitted on the other half and judged on the held-out half. Prints both reports and
writes the JSON the README quotes. Then, from the same scores, the spread over other patient splits (``--repeats``;
one split can be lucky), the calibration-map comparison behind the profile's Platt scaling, and the time of
validation against ``predict``'s batch path on the same images.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from medapp.cli.validate_cmd import summary_text
from medapp.data.datasets import Split, load_records
from medapp.data.local_cases import read_local_cases
from medapp.evaluation.local_validation import ScoredCases, patient_holdout, score_cases, site_report
from medapp.evaluation.metrics import binary_auc, expected_calibration_error, operating_point
from medapp.intake.imaging import load_image
from medapp.model.calibrate import apply_platt, fit_platt, fit_temperature, softmax
from medapp.model.card import ModelCard
from medapp.model.site_profile import fit_site_profile, min_sensitivity_of
from medapp.serving.predict import Predictor


def lay_out_site(folder: Path) -> Path:
    """BUS-BRA test as a hospital folder: ``cases.csv`` and ``images/`` (links to the data folder's files)."""
    (folder / "images").mkdir(parents=True)
    manifest = folder / "cases.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "label", "patient", "device"])
        for r in load_records("busbra", Split.TEST):
            (folder / "images" / r.path.name).symlink_to(r.path)
            writer.writerow([f"images/{r.path.name}", r.label, r.patient, r.device])
    return manifest


def calibration_map_comparison(card: ModelCard, scored: ScoredCases, holdout: float, seed: int) -> dict[str, dict]:
    """Why the profile uses Platt scaling: temperature alone against Platt, each fitted on the fit half and judged
    (ECE, NLL of P(malignant)) on the held-out half of the same patients."""
    m = card.malignant_index
    y = scored.labels == card.class_names[m]
    held = patient_holdout(scored.patients, y, holdout, seed) & scored.in_scope
    fit = ~held & scored.in_scope
    log_p = np.log(np.clip(scored.probs, 1e-12, 1))  # logits up to a constant per row
    t = fit_temperature(log_p[fit], np.array([card.class_names.index(v) for v in scored.labels[fit]]))
    slope, intercept = fit_platt(scored.probs[fit, m], y[fit])
    maps = {"shipped card": scored.probs[:, m], f"temperature {t:.2f}": softmax(log_p, t)[:, m],
            f"Platt slope {slope:.2f} intercept {intercept:.2f}": apply_platt(scored.probs, m, slope, intercept)[:, m]}
    out = {}
    for name, p in maps.items():
        q = np.clip(p[held], 1e-6, 1 - 1e-6)
        out[name] = {"ece": expected_calibration_error(y[held], q),
                     "nll": float(-np.mean(np.where(y[held], np.log(q), np.log(1 - q))))}
    return out


def repeated_splits(card: ModelCard, scored: ScoredCases, holdout: float, seeds: range) -> dict[str, Any]:
    """How much the worked example owes to one draw of patients: the same fit-then-judge on other patient splits
    (held-out sensitivity and specificity at the card's threshold and at the profile's), each seed one split."""
    m = card.malignant_index
    y = scored.labels == card.class_names[m]
    rows = []
    for seed in seeds:
        held = patient_holdout(scored.patients, y, holdout, seed) & scored.in_scope
        fit = ~held & scored.in_scope
        profile = fit_site_profile("split", card, scored.probs[fit], y[fit], n_patients=len(set(scored.patients[fit])),
                                   created_by="bench", created_at="", min_sensitivity=min_sensitivity_of(card))
        site = profile.apply(scored.probs[held], m)[:, m]
        card_point = operating_point(y[held], scored.probs[held, m], card.threshold)
        site_point = operating_point(y[held], site, profile.threshold)
        rows.append({"seed": seed, "auc_fit": binary_auc(y[fit], scored.probs[fit, m]),
                     "auc_held": binary_auc(y[held], scored.probs[held, m]),
                     "card_sensitivity": card_point.sensitivity, "card_specificity": card_point.specificity,
                     "profile_sensitivity": site_point.sensitivity, "profile_specificity": site_point.specificity})

    def spread(key: str) -> dict[str, float]:
        v = np.array([r[key] for r in rows])
        return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
                "share_at_least_0.85": float((v >= 0.85).mean())}

    return {"splits": rows, **{k: spread(k) for k in ("card_sensitivity", "card_specificity", "profile_sensitivity",
                                                        "profile_specificity", "auc_held")}}


def predict_batch_seconds(predictor: Predictor, manifest: Path, batch_size: int = 16) -> float:
    """``predict``'s path (decode, batched forward with the card's views, no heatmap) over the same images."""
    cases = read_local_cases(manifest).cases
    start = time.perf_counter()
    for i in range(0, len(cases), batch_size):
        predictor.predict_batch([load_image(c.read()) for c in cases[i : i + batch_size]], explain=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder trained without BUS-BRA")
    parser.add_argument("--out", type=Path, required=True, help="JSON report to write")
    parser.add_argument("--holdout", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=50, help="other patient splits to report the spread over")
    args = parser.parse_args()
    predictor = Predictor.from_dir(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = lay_out_site(Path(tmp) / "site")
        start = time.perf_counter()  # what `validate` runs: score every case, then build the report
        scored = score_cases(predictor, read_local_cases(manifest))
        report, _ = site_report(predictor.card, scored, holdout=args.holdout, seed=args.seed)
        validate_s = time.perf_counter() - start
        predict_s = predict_batch_seconds(predictor, manifest)
    comparison = calibration_map_comparison(predictor.card, scored, args.holdout, args.seed)  # the same scores
    repeats = repeated_splits(predictor.card, scored, args.holdout, range(args.repeats))
    report["calibration_map_choice"] = comparison
    report["repeated_splits"] = repeats
    report["source"] = "BUS-BRA test split laid out as a new site (bench/site_validation_demo.py)"
    n = report["scored"]
    report["timing"] = {"images": n, "validate_s": validate_s, "predict_batch_s": predict_s,
                        "ratio": validate_s / predict_s}
    print(summary_text(report))
    for name, c in comparison.items():
        print(f"held-out calibration, {name}: ECE {c['ece']:.3f}, NLL {c['nll']:.3f}")
    for key in ("auc_held", "card_sensitivity", "card_specificity", "profile_sensitivity", "profile_specificity"):
        r = repeats[key]
        print(f"over {args.repeats} patient splits, held-out {key}: median {r['median']:.3f} "
              f"[{r['min']:.3f}-{r['max']:.3f}], >= 0.85 in {r['share_at_least_0.85']:.0%}")
    print(f"timing on {n} images: validate {validate_s:.1f} s ({1000 * validate_s / n:.0f} ms/image), predict's "
          f"batch path {predict_s:.1f} s ({1000 * predict_s / n:.0f} ms/image), ratio {validate_s / predict_s:.2f}")
    args.out.write_text(json.dumps({**report, "command": " ".join(["bench/site_validation_demo.py", *sys.argv[1:]])},
                                   indent=1, allow_nan=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
