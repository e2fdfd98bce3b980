"""Prediction latency per stage and batch throughput, on real BUSI images.

    .venv/bin/python bench/predict_latency.py [--model DIR] [--image PNG] [--repeats 30] [--folder DIR]

Prints p50 and p95 (ms) of each stage of one prediction (decode, preprocess, forward, scope, the CAM pass that
also gives the TTA views' logits, restore to the original size, overlay) and end to end, beside the bare
single-view model forward; then batch
throughput (images/s, decode included) over a folder of BUSI images (default: the first 32 BUSI test images).
Acceptance (issue 4): end-to-end p50 <= 250 ms for a ~500x500 ultrasound PNG on the 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.data.datasets import load_busi_records  # noqa: E402
from medapp.intake.imaging import load_image  # noqa: E402
from medapp.model.explain import overlay_heatmap  # noqa: E402
from medapp.model.preprocess import normalize, resize_to_square  # noqa: E402
from medapp.serving.predict import Predictor  # noqa: E402

TARGET_P50_MS = 250.0


def pick_image() -> Path:
    """The BUSI test image whose size is closest to 500x500."""
    from PIL import Image

    best, best_d = None, float("inf")
    for record in load_busi_records("test"):
        path = record.path
        with Image.open(path) as im:
            d = abs(im.width - 500) + abs(im.height - 500)
        if d < best_d:
            best, best_d = path, d
    assert best is not None
    return best


def pct(values: list[float]) -> str:
    return f"p50 {np.percentile(values, 50):7.1f}   p95 {np.percentile(values, 95):7.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--image", type=Path, help="PNG to time (default: the BUSI test image nearest 500x500)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cam", default=None, help="CAM method (default: the card's)")
    parser.add_argument("--folder", type=Path, help="folder of images for throughput (default: BUSI test images)")
    parser.add_argument("--n-throughput", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    predictor = Predictor.from_dir(args.model)
    image_path = args.image or pick_image()
    data = image_path.read_bytes()
    print(f"model {predictor.card.name} {predictor.card.version} ({predictor.card.architecture}, "
          f"{predictor.card.input.size} px), torch threads {torch.get_num_threads()}")

    stages: dict[str, list[float]] = {}
    bare: list[float] = []
    for i in range(args.warmup + args.repeats):
        t0 = time.perf_counter()
        image = load_image(data)
        t1 = time.perf_counter()
        pred = predictor.predict(image, cam_method=args.cam)
        t2 = time.perf_counter()
        overlay_heatmap(image.display, pred.heatmap)
        t3 = time.perf_counter()
        x = normalize(torch.from_numpy(resize_to_square(image.pixels, predictor.card.input))[None],
                            predictor.card.input)
        with torch.no_grad():
            tb = time.perf_counter()
            predictor.model(x)
            bare_ms = (time.perf_counter() - tb) * 1000
        if i < args.warmup:
            continue
        row = {"decode": (t1 - t0) * 1000, **{k: v for k, v in pred.timing_ms.items() if k != "total"},
               "overlay": (t3 - t2) * 1000, "end_to_end": (t3 - t0) * 1000}
        for k, v in row.items():
            stages.setdefault(k, []).append(v)
        bare.append(bare_ms)

    print(f"\none image: {image_path.name} {image.pixels.shape[1]}x{image.pixels.shape[0]} px, "
          f"{args.repeats} runs, {pred.tta_views} TTA views, CAM {pred.cam_method} (ms)")
    labels = {"forward": "forward (1 view)", "scope": "scope gate",
              "cam_and_tta": f"{pred.cam_method} + TTA ({pred.tta_views} views)",
              "cam_redo": "CAM again (views moved the class)", "restore": "heatmap to original size",
              "outline": "outline: mirror pass, measured"}
    for name, values in stages.items():
        print(f"  {labels.get(name, name):28s} {pct(values)}")
    print(f"  {'bare model forward (1 view)':28s} {pct(bare)}")
    p50 = float(np.percentile(stages["end_to_end"], 50))
    print(f"end-to-end p50 {p50:.1f} ms (target <= {TARGET_P50_MS:.0f} ms): {'PASS' if p50 <= TARGET_P50_MS else 'FAIL'}")
    if predictor.outline_decoder is not None:  # baseline: the same model without its outline
        decoder, predictor.outline_decoder = predictor.outline_decoder, None
        plain = []
        for i in range(args.warmup + args.repeats):
            t0 = time.perf_counter()
            pred = predictor.predict(load_image(data), cam_method=args.cam)
            overlay_heatmap(image.display, pred.heatmap)
            if i >= args.warmup:
                plain.append((time.perf_counter() - t0) * 1000)
        predictor.outline_decoder = decoder
        base = float(np.percentile(plain, 50))
        print(f"  {'without the lesion outline':28s} {pct(plain)}   (with it: x{p50 / base:.2f})")

    if args.folder:
        files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    else:
        files = [r.path for r in load_busi_records("test")]
    files = files[: args.n_throughput]
    for explain in (True, False):
        t0 = time.perf_counter()
        for i in range(0, len(files), args.batch_size):
            images = [load_image(f) for f in files[i : i + args.batch_size]]
            predictor.predict_batch(images, cam_method=args.cam, explain=explain)
        seconds = time.perf_counter() - t0
        what = "with TTA and heatmaps" if explain else "with TTA, no heatmaps"
        print(f"batch throughput ({len(files)} images, batch {args.batch_size}, {what}): "
              f"{len(files) / seconds:.1f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
