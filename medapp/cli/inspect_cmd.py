"""``python -m medapp inspect FILE... [--frame N] [--json] [--deidentify-to DIR]``.

Shows what intake saw in each file: kind, size, frames, pixel spacing, the safe metadata and the notes, never a
patient field. Each refused file gets one ``error: FILE: <message>`` line on stderr and the others are still
processed; the exit status is 0 when every file loaded, 2 otherwise. With ``--deidentify-to`` each DICOM is
written de-identified (PS3.15 Annex E Basic Profile) under a name made from its new UID, never its old name; a raster
image is re-encoded as PNG without its metadata (EXIF and text chunks can carry names).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import MedAppError
from ..intake.imaging import load_image
from ..intake.limits import IntakeLimits, read_regular_file
from ..intake.medical_image import MedicalImage
from ..markup import one_line
from ..settings import get_settings

EXIT_REFUSED = 2


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "inspect",
        help="show what intake sees in image files (safe fields only)",
        description="Decode each FILE as medapp would and print its size, frames, safe metadata and intake notes.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="PNG, JPEG, BMP, TIFF or DICOM files")
    parser.add_argument("--frame", type=int, default=None, metavar="N",
                        help="0-based frame of a multi-frame file (default: the first frame, 0)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--deidentify-to", type=Path, default=None, metavar="DIR",
                        help="write a de-identified copy of each loaded file into DIR")  # fmt: skip
    parser.set_defaults(run=run)


def describe(image: MedicalImage) -> dict[str, Any]:
    """The JSON-able summary of an image that ``inspect`` prints (safe fields only)."""
    height, width = image.original_size
    return {
        "source_kind": image.source_kind,
        "width": width,
        "height": height,
        "frame_index": image.frame_index,
        "frame_count": image.frame_count,
        "pixel_spacing_mm": list(image.pixel_spacing_mm) if image.pixel_spacing_mm else None,
        "metadata": dict(image.metadata),
        "notes": list(image.notes),
    }


def _write_deidentified(data: bytes, image: MedicalImage, out_dir: Path) -> tuple[Path, list[str]]:
    """Write the clean copy; returns its path and any privacy warnings raised on the way."""
    from ..intake.privacy import sha256_bytes  # pydicom loads only when a copy is asked for: other commands start fast

    out_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if image.source_kind == "dicom":
            from ..intake.dicom import read_dataset
            from ..intake.deidentify import deidentify

            clean = deidentify(read_dataset(data))
            name = str(clean.get("SOPInstanceUID") or sha256_bytes(data)[:32])
            target = out_dir / f"{name}.dcm"
            clean.save_as(target, enforce_file_format=False)
        else:
            target = out_dir / f"{sha256_bytes(data)[:32]}.png"
            Image.fromarray(image.display).save(target, format="PNG")
    return target, [str(w.message) for w in caught]


def _print_text(name: str, info: dict[str, Any], out: Any) -> None:
    print(one_line(name), file=out)
    print(f"  kind: {info['source_kind']}", file=out)
    print(f"  size: {info['width']} x {info['height']} px (width x height)", file=out)
    print(f"  frame: {info['frame_index'] + 1} of {info['frame_count']}", file=out)
    if info["pixel_spacing_mm"]:
        row, col = info["pixel_spacing_mm"]
        print(f"  pixel spacing: {row:g} x {col:g} mm (row x column)", file=out)
    for key, value in sorted(info["metadata"].items()):
        print(f"  {key.replace('_', ' ')}: {one_line(value)}", file=out)
    for note in info["notes"]:
        print(f"  note: {one_line(note)}", file=out)
    if info.get("deidentified_to"):
        print(f"  de-identified copy: {info['deidentified_to']}", file=out)


def run(args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    refused = 0
    limits = IntakeLimits.from_settings(get_settings())
    for name in args.files:
        try:
            data = read_regular_file(name, limits)  # read once: decoded here, copied de-identified below
            image = load_image(data, frame=args.frame, limits=limits)
            info = describe(image)
            if args.deidentify_to:
                target, privacy_warnings = _write_deidentified(data, image, args.deidentify_to)
                info["deidentified_to"] = str(target)
                info["privacy_warnings"] = privacy_warnings
                for message in privacy_warnings:
                    print(f"warning: {one_line(name)}: {message}", file=sys.stderr)
        except (MedAppError, OSError) as e:
            refused += 1
            reason = str(e) if isinstance(e, MedAppError) else f"cannot read or write the file ({type(e).__name__})"
            print(f"error: {one_line(name)}: {one_line(reason)}", file=sys.stderr)
            results.append({"file": name, "ok": False, "error": type(e).__name__, "message": reason})
            continue
        results.append({"file": name, "ok": True, **info})
        if not args.json:
            _print_text(name, info, sys.stdout)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    return EXIT_REFUSED if refused else 0
