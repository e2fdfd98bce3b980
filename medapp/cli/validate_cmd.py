"""``python -m medapp validate MANIFEST [--model DIR] [--json FILE] [--profile NAME] [--holdout FRACTION]``:
measure the model on a site's own labelled cases, and fit a site profile when asked.

MANIFEST is a CSV (image, label[, patient, device]) or a folder with benign/, malignant/ (and normal/)
sub-folders. Unreadable or unlabelled rows are listed, never dropped silently. The shipped card is never edited: a
profile is saved as ``profiles/NAME.json`` beside the model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..markup import one_line


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("validate", help="measure the model on your site's labelled cases; fit a site profile")
    parser.add_argument("manifest", type=Path, metavar="MANIFEST",
                        help="CSV with image and label columns (optional patient, device), or a folder with "
                             "benign/, malignant/ and normal/ sub-folders")
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--json", dest="json_path", type=Path, help="write the full report to this file")
    parser.add_argument("--pdf", dest="pdf_path", type=Path, help="write the report as a PDF to this file")
    parser.add_argument("--profile", metavar="NAME", help="fit a site profile (calibration and threshold) on the "
                        "cases (the non-held-out ones with --holdout) and save it beside the model as NAME")
    parser.add_argument("--holdout", type=float, metavar="FRACTION",
                        help="fit on 1-FRACTION of the patients and report on the rest (never splitting a patient)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient hold-out draw")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data.local_cases import read_local_cases
    from ..evaluation.local_validation import validate_site
    from ..model.site_profile import check_profile_name
    from ..serving.predict import Predictor

    if args.profile:
        check_profile_name(args.profile)
    cases = read_local_cases(args.manifest)
    predictor = Predictor.from_dir(args.model)
    report, profile = validate_site(predictor, cases, holdout=args.holdout, profile_name=args.profile,
                                    seed=args.seed, n_boot=args.bootstrap)
    if args.profile and profile is not None:
        report["profile"]["saved_to"] = str(profile.save(predictor.model_dir))
    if args.json_path is not None:
        args.json_path.write_text(json.dumps(report, indent=1, allow_nan=True) + "\n")
    if args.pdf_path is not None:
        from ..reporting.validation_report import build_validation_pdf

        args.pdf_path.write_bytes(build_validation_pdf(report))
    print(summary_text(report))
    failed_profile = bool(args.profile) and profile is None
    return 2 if failed_profile else 0


def summary_text(report: dict[str, Any]) -> str:
    """The report in a few lines for the terminal."""
    from ..reporting.validation_report import counts_line, metrics_line

    lines = [f"{report['model']['name']} on {report['source']}: {counts_line(report)}"]
    for p in report["problems"]:
        lines.append(f"  not scored: {one_line(p['where'])}: {one_line(p['problem'])}")
    for r in report["scope"]["refused"][:20]:
        lines.append(f"  refused by the scope gate or quality checks: {one_line(r['image'])}: "
                     + "; ".join(r["reasons"]))
    if report["holdout"]:
        h = report["holdout"]
        lines.append(f"hold-out: {h['held_out']} in-scope images of held-out patients reported, {h['fitted_on']} "
                     "used to fit the profile")
    lines.append("shipped calibration: " + metrics_line(report["shipped"]["metrics"]))
    lines += [f"  {line}" for line in report["shipped"]["verdict"]["lines"]]
    lines.append(f"  verdict: {report['shipped']['verdict']['level']}")
    profile = report.get("profile")
    if profile and "error" in profile:
        lines.append(f"site profile not fitted: {profile['error']}")
    elif profile:
        lines.append(f"site profile {profile['profile']['name']!r} (on {profile['evaluated_on']}): "
                     + metrics_line(profile["metrics"]))
        lines += [f"  {line}" for line in profile["verdict"]["lines"] + profile["profile"]["notes"]]
        lines.append(f"  verdict: {profile['verdict']['level']}")
        if "saved_to" in profile:
            lines.append(f"  saved to {profile['saved_to']}")
    return "\n".join(lines)
