"""Near-duplicate images within BUSI, and between BUSI and BUS-BRA (another hospital: none expected, but measured).

    .venv/bin/python bench/near_duplicates.py [--threshold 0.5]

Prints the counts side by side (pairs, groups, groups crossing train/val/test or with conflicting labels, BUSI test
images with a near-copy in train or val, the near-duplicate-free BUSI test subset and its classes), then the BUSI
counts at neighbouring thresholds. Writes ``docs/near_duplicates_busi.csv`` (one row per BUSI pair, the list that
:func:`medapp.data.near_duplicates.busi_near_duplicate_free_test` reads) and ``docs/near_duplicates_example.png``
(BUSI example pairs only: BUS-BRA's licence asks its LICENSE.txt to travel with its images). docs/near_duplicates.md
explains the method and the threshold.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing medapp

from medapp.data.datasets import load_records  # noqa: E402
from medapp.data.near_duplicates import (  # noqa: E402
    DEFAULT_THRESHOLD,
    PAIR_COLUMNS,
    PUBLISHED_PAIRS,
    SimilarPair,
    find_similar_pairs,
    group_pairs,
    load_signatures,
    near_duplicate_free,
)
from medapp.intake.imaging import load_image  # noqa: E402

EXAMPLE_PNG = PUBLISHED_PAIRS.parent / "near_duplicates_example.png"
NEIGHBOUR_THRESHOLDS = (0.45, 0.5, 0.55, 0.6, 0.7)


def summarise(items: list, pairs: list[tuple[int, int]], n_busi: int) -> dict[str, object]:
    """Counts for index pairs among ``items`` (records); the first ``n_busi`` are BUSI, whose test set is judged."""
    groups = group_pairs(len(items), pairs)
    test = [i for i, r in enumerate(items[:n_busi]) if r.split == "test"]
    direct = {t for a, b in pairs for t, o in ((a, b), (b, a)) if t in test and items[o].split != "test"}
    free = set(near_duplicate_free([(i, items[i].split) for i in range(len(items))], pairs)) & set(test)
    classes = Counter(items[i].label for i in free)
    return {
        "pairs": len(pairs),
        "groups (connected components)": len(groups),
        "images in a group": sum(len(g) for g in groups),
        "largest group": max((len(g) for g in groups), default=0),
        "groups crossing train/val/test": sum(len({items[i].split for i in g}) > 1 for g in groups),
        "groups with conflicting labels": sum(len({items[i].label for i in g}) > 1 for g in groups),
        "BUSI test images with a near-copy in train/val": len(direct),
        "BUSI test images whose group reaches train/val": len(test) - len(free),
        "near-duplicate-free BUSI test subset": f"{len(free)} of {len(test)}",
        "  benign / malignant / normal": f"{classes['benign']} / {classes['malignant']} / {classes['normal']}",
    }


def write_pairs(busi: list, pairs: list[SimilarPair], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PAIR_COLUMNS)
        for p in pairs:
            a, b = busi[p.a], busi[p.b]
            writer.writerow([a.image, b.image, a.split, b.split, a.label, b.label, f"{p.similarity:.4f}"])


def example_pairs(busi: list, pairs: list[SimilarPair]) -> list[tuple[str, SimilarPair]]:
    """Captions and pairs: the closest conflicting-label pair, the closest same-label and the least close
    cross-split pairs, and the pair nearest the threshold (each pair once)."""
    crossing = [p for p in pairs if busi[p.a].split != busi[p.b].split]
    conflicting = [p for p in pairs if busi[p.a].label != busi[p.b].label]
    out: list[tuple[str, SimilarPair]] = []
    for p in conflicting[:1] + [p for p in crossing if p not in conflicting][:1] + crossing[-1:] + pairs[-1:]:
        if all(p != q for _, q in out):
            a, b = busi[p.a], busi[p.b]
            tags = (["crosses splits"] if a.split != b.split else []) + (["conflicting labels"] if a.label != b.label
                                                                         else [])
            out.append((", ".join(tags) or "same split, same label", p))
    return out


def tile(record, height: int = 180) -> Image.Image:
    im = Image.fromarray((load_image(record.path).pixels * 255).round().astype(np.uint8))
    return im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.BILINEAR)


def write_contact_sheet(rows: list[tuple[str, object, object, float]], path: Path) -> None:
    """One row per pair: caption above, the two images side by side."""
    strips = []
    for caption, a, b, score in rows:
        left, right = tile(a), tile(b)
        names = f"{a.image} ({a.split}, {a.label})  |  {b.image} ({b.split}, {b.label})"
        width = max(left.width + right.width + 12, int(ImageDraw.Draw(left).textlength(names)) + 6)
        strip = Image.new("L", (width, left.height + 30), 0)
        strip.paste(left, (0, 30))
        strip.paste(right, (left.width + 12, 30))
        draw = ImageDraw.Draw(strip)
        draw.text((2, 2), f"{caption}: similarity {score:.3f}", fill=255)
        draw.text((2, 15), names, fill=200)
        strips.append(strip)
    sheet = Image.new("L", (max(s.width for s in strips), sum(s.height + 8 for s in strips)), 48)
    y = 0
    for s in strips:
        sheet.paste(s, (0, y))
        y += s.height + 8
    sheet.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    args = parser.parse_args()
    busi, busbra = load_records("busi"), load_records("busbra")
    sig_busi, sig_busbra = load_signatures([r.path for r in busi]), load_signatures([r.path for r in busbra])
    within = find_similar_pairs(sig_busi, threshold=args.threshold)
    cross = find_similar_pairs(sig_busi, sig_busbra, threshold=args.threshold)
    both = busi + busbra
    columns = {
        f"BUSI ({len(busi)})": summarise(busi, [(p.a, p.b) for p in within], len(busi)),
        f"BUSI vs BUS-BRA ({len(busi)} x {len(busbra)})":
            summarise(both, [(p.a, len(busi) + p.b) for p in cross], len(busi)),
    }
    print(f"near-duplicates at similarity >= {args.threshold} (band-passed 32 px thumbnail, normalised correlation)")
    print(f"{'':52}" + "".join(f"{name:>30}" for name in columns))
    for key in next(iter(columns.values())):
        print(f"{key:52}" + "".join(f"{c[key]!s:>30}" for c in columns.values()))
    similarity = sig_busi @ sig_busbra.T
    i, j = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
    nearest = float(similarity[i, j])
    print(f"highest BUSI vs BUS-BRA similarity: {nearest:.4f} ({busi[i].image} vs {busbra[j].image})")
    print("BUSI at other thresholds (pairs, groups crossing splits, test images with a copy in train/val):")
    loose = find_similar_pairs(sig_busi, threshold=min(NEIGHBOUR_THRESHOLDS))
    for t in NEIGHBOUR_THRESHOLDS:
        c = summarise(busi, [(p.a, p.b) for p in loose if p.similarity >= t], len(busi))
        print(f"  >= {t:.2f}: {c['pairs']:4}, {c['groups crossing train/val/test']:3}, "
              f"{c['BUSI test images whose group reaches train/val']:3}")
    write_pairs(busi, within, PUBLISHED_PAIRS)
    examples = [(c, busi[p.a], busi[p.b], p.similarity) for c, p in example_pairs(busi, within)]
    write_contact_sheet(examples, EXAMPLE_PNG)
    print(f"wrote {PUBLISHED_PAIRS} ({len(within)} pairs) and {EXAMPLE_PNG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
