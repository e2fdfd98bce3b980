"""``python -m medapp predict PATH... [--model DIR] [--cam METHOD] [--overlay-dir DIR [--without-region MODE]]
[--mask-dir DIR] [--json] [--profile NAME]``.

A PATH may be a file or a folder (its images, not recursive), processed in batches. A refused file is reported
as ``error: FILE: message`` on stderr and the others are still processed; the exit status is then 2. With a model
that outlines the lesion, each line names its size and shape, the JSON holds the ``lesion`` object, and
``--mask-dir`` writes the outline as a binary PNG.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..markup import one_line

if TYPE_CHECKING:
    import numpy as np

    from ..intake.medical_image import MedicalImage
    from ..reporting.export_region import ExportRegion
    from ..serving.predict import Prediction

# Files a folder contributes: common raster formats, DICOM, and files with no extension (DICOM from a PACS).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ".gif", ".webp"})
EXIT_ERROR = 2


def register(sub: argparse._SubParsersAction) -> None:
    # no medapp.explain import here: building the parser must not load torch and grad-cam for every command
    parser = sub.add_parser("predict", help="predict images or folders with the shipped (or a given) model")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image file or folder of images")
    parser.add_argument("--model", help="model folder (default: $MEDAPP_MODEL_DIR or the shipped model)")
    parser.add_argument("--profile", metavar="NAME", help="a site profile saved beside the model (its calibration "
                        "and threshold; fitted by `validate --profile`)")
    parser.add_argument("--cam", default=None, metavar="METHOD",
                        help="heatmap method: gradcam, gradcam++, hirescam, layercam, eigencam; scorecam and "
                             "ablationcam with --allow-slow-cam (default: the model card's)")
    parser.add_argument("--allow-slow-cam", action="store_true", help="allow scorecam and ablationcam")
    parser.add_argument("--target", default=None, help="class the heatmap explains (default: malignant, what raised "
                        "the malignancy estimate; \"predicted\" for each image's reported class)")
    parser.add_argument("--overlay-dir", type=Path, help="write <name>_overlay.png heatmap overlays here")
    parser.add_argument("--without-region", choices=["blank-bands", "whole-image"], default=None,
                        help="for images that state no scan region (PNG/JPEG, DICOM without an Ultrasound Region "
                             "Sequence), whose pixels may show names: blank the top and bottom bands of the overlay, "
                             "or write it whole after you checked the images show no patient details; without this "
                             "such overlays are not written")
    parser.add_argument("--mask-dir", type=Path, help="write <name>_lesion.png here: the model's lesion outline, "
                        "binary (0 background, 255 lesion), the original image's size; none for an image without "
                        "an outline")
    parser.add_argument("--opacity", type=float, default=0.5, help="overlay heatmap opacity in [0, 1]")
    parser.add_argument("--no-tta", action="store_true", help="skip the test-time views unless the model's headline "
                        "is their mean (then no uncertainty is reported otherwise)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--json", action="store_true", help="one JSON object per line per image")
    parser.set_defaults(run=run)


def expand_paths(paths: list[str]) -> Iterator[tuple[Path, str | None]]:
    """(file, None) for each input file, or (path, message) for a path that cannot be read."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                           and (p.suffix.lower() in IMAGE_SUFFIXES or not p.suffix))
            if not files:
                yield path, "folder holds no image files (PNG, JPEG, BMP, TIFF or DICOM)"
            yield from ((f, None) for f in files)
        elif path.is_file():
            yield path, None
        elif path.exists():
            yield path, "is not a regular file (a device, pipe or socket); choose an image file"
        else:
            yield path, "no such file or folder"


def run(args: argparse.Namespace) -> int:
    from ..errors import AuditLogError, MedAppError
    from ..intake.imaging import load_image
    from ..intake.limits import IntakeLimits, read_regular_file
    from ..intake.privacy import sha256_bytes
    from ..model.explain import check_cam_method
    from ..reporting.export_region import export_region
    from ..serving.analysis import audit_outputs, open_audit_log, record_refusal
    from ..serving.predict import Predictor
    from ..serving.signin import cli_user
    from ..settings import get_settings

    if args.batch_size < 1:
        raise SystemExit("error: --batch-size must be at least 1")
    try:
        if args.cam:
            check_cam_method(args.cam, args.allow_slow_cam)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    predictor = Predictor.from_dir(args.model, profile=args.profile)
    for folder in (args.overlay_dir, args.mask_dir):
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
    failures = 0
    limits = IntakeLimits.from_settings(get_settings())
    audit = open_audit_log(cli_user())  # every result and refusal, as in the app: who ran it, never file names
    batch: list[tuple[Path, str, float, MedicalImage]] = []
    written: set[Path] = set()

    def flush() -> None:
        nonlocal failures
        if not batch:
            return
        preds = predictor.predict_batch([b[3] for b in batch], cam_method=args.cam, target=args.target,
                                        tta=not args.no_tta, explain=args.overlay_dir is not None,
                                        allow_slow_cam=args.allow_slow_cam)
        for (path, digest, decode_ms, image), pred in zip(batch, preds):
            pred.timing_ms = {"decode": decode_ms, **pred.timing_ms, "total": pred.timing_ms["total"] + decode_ms}
            try:
                audit.record(file_sha256=digest, model=pred.model, outputs=audit_outputs(pred, image))
            except AuditLogError as e:  # never print a result the log did not record
                print(f"error: {one_line(path)}: {e}", file=sys.stderr)
                failures += 1
                continue
            if args.overlay_dir is not None and pred.heatmap is not None:
                try:
                    export = export_region(image, args.without_region and args.without_region.replace("-", "_"))
                except MedAppError as e:
                    print(f"warning: {one_line(path)}: no overlay written: {e} (--without-region)", file=sys.stderr)
                else:
                    written.add(_write_overlay(args.overlay_dir, path, image, pred.heatmap, args.opacity, written,
                                               export))
            if args.mask_dir is not None:
                if pred.lesion is None:
                    print(f"note: {one_line(path)}: no lesion mask written: {pred.lesion_note}", file=sys.stderr)
                else:
                    written.add(_write_mask(args.mask_dir, path, pred.lesion.outline_mask, written))
            if args.json:
                print(json.dumps({"file": str(path), "file_sha256": digest, **pred.to_dict()}), flush=True)
            else:
                print(_human_line(path, pred), flush=True)
        batch.clear()

    for path, problem in expand_paths(args.paths):
        if problem:
            print(f"error: {one_line(path)}: {problem}", file=sys.stderr)
            failures += 1
            continue
        t0 = time.perf_counter()
        try:
            data = read_regular_file(path, limits)  # size checked before reading; no devices or pipes
        except MedAppError as e:
            print(f"error: {one_line(path)}: {one_line(e)}", file=sys.stderr)
            failures += 1
            continue
        try:
            image = load_image(data)
        except MedAppError as e:
            print(f"error: {one_line(path)}: {one_line(record_refusal(audit, sha256_bytes(data), predictor, e))}",
                  file=sys.stderr)
            failures += 1
            continue
        batch.append((path, sha256_bytes(data), (time.perf_counter() - t0) * 1000.0, image))
        if len(batch) >= args.batch_size:
            flush()
    flush()
    return EXIT_ERROR if failures else 0


def _unique(folder: Path, path: Path, kind: str, written: set[Path]) -> Path:
    """``<stem>_<kind>.png`` in ``folder``; two inputs with the same stem in one run get ``_2``, ``_3`` ..."""
    out = folder / f"{path.stem}_{kind}.png"
    n = 1
    while out in written:
        n += 1
        out = folder / f"{path.stem}_{kind}_{n}.png"
    return out


def _write_overlay(folder: Path, path: Path, image: MedicalImage, heatmap: np.ndarray, opacity: float,
                   written: set[Path], export: ExportRegion) -> Path:
    """Save the overlay PNG, limited to ``export``'s pixels."""
    from ..model.explain import overlay_heatmap
    from ..reporting.report import overlay_png

    out = _unique(folder, path, "overlay", written)
    out.write_bytes(overlay_png(overlay_heatmap(image.display, heatmap, opacity=opacity), export))
    return out


def _write_mask(folder: Path, path: Path, mask: np.ndarray, written: set[Path]) -> Path:
    """Save the (H, W) bool outline as an 8-bit PNG, 0 and 255, no text chunks, at the original image's size.

    Not cropped to an export region (medapp.reporting.export_region): the region rule exists because text burned
    into an image's pixels is PHI, and a binary mask carries no image pixels, only the lesion's shape; kept whole,
    it stays aligned pixel for pixel with the image it was made from.
    """
    import numpy as np
    from PIL import Image

    out = _unique(folder, path, "lesion", written)
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(out, format="PNG")
    return out


def _human_line(path: Path, pred: Prediction) -> str:
    if not pred.in_scope:
        return f"{one_line(path)}: OUTSIDE INTENDED USE — {'; '.join(pred.out_of_scope_reasons)}"
    from ..formatting import format_percent
    from ..serving.lesion_finding import NO_LESION_OUTLINED
    from ..serving.outline_overlay import lesion_summary

    flag = "  [low confidence]" if pred.low_confidence else ""
    lesion = (f"; {lesion_summary(pred.lesion)}" if pred.lesion is not None
              else "; no lesion outlined" if pred.lesion_note == NO_LESION_OUTLINED else "")
    return (f"{one_line(path)}: {pred.decision_text}; {pred.category.label}; top class {pred.label}{lesion}; "
            f"uncertainty ±{format_percent(pred.uncertainty)}{flag}")
