"""The honest record of test scorings: every model whose test metrics are on file, per test split.

    .venv/bin/python bench/scoring_record.py --out models/NAME/test_scorings.json [FOLDER...]

Collects, from the metrics files stored in FOLDER... (default: every folder under docs/ and models/), one entry
per model (by weights SHA-256) and test split, and writes them where the Model performance page reads them. The
record's "note" and its "unfiled" scorings (runs that scored a test split but left no file, each with where it is
documented) are written by hand and kept when the list is rewritten. Nothing is scored here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medapp.formatting import format_number
from medapp.reporting.scoring_record import collect_scorings


def default_folders() -> list[Path]:
    return sorted(p for p in [*(ROOT / "docs").iterdir(), *(ROOT / "models").iterdir()] if p.is_dir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", type=Path,
                        help="folders holding metrics*.json (default: every folder under docs/ and models/)")
    parser.add_argument("--out", type=Path, required=True, help="test_scorings.json to write (in the shipped folder)")
    args = parser.parse_args()
    kept = json.loads(args.out.read_text()) if args.out.is_file() else {}
    scorings = collect_scorings(args.folders or default_folders(), ROOT)
    for dataset, entries in scorings.items():
        unfiled = (kept.get("unfiled") or {}).get(dataset, [])
        print(f"{dataset} test: {len(entries)} models on file, {len(unfiled)} scoring(s) without a file")
        for e in entries:
            print(f"  {e['model']:24s} AUC {format_number(e['auc'])}  {e['file']}")
        for e in unfiled:
            print(f"  (no file) {e['what']}: AUC {format_number(e.get('auc'))}  {e.get('source', '')}")
    record = {"note": kept.get("note", ""), "scorings": scorings, "unfiled": kept.get("unfiled", {}),
              "command": " ".join(["bench/scoring_record.py", *map(str, args.folders)])}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
