"""The inputs of issue 12's hostile-input battery (run by tests/hostile_battery.py): what each is, which item of the
issue it covers, the command it goes through, and what must come out.

Every input is generated at run time from the builders in tests/intake_fixtures.py (no committed binaries). A
case's ``make`` writes its input into the case's empty folder and returns the paths to pass; ``entry`` is the
command without those paths, where ``DIR`` stands for the case folder's ``out/`` (a de-identification target, or
the model folder a case builds there). ``message`` is a regex the case's one-line message must match; ``check``
looks further (no PHI written anywhere, no forged line, no result served by a refused model).
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ISSUE_ITEMS = ("1", "2", "3", "4", "5", "6", "7", "9")  # issue 12's items about inputs (8 is deployment)
BOMB = r"declares .*over the limit.*possible decompression bomb"
NOT_MATCHING = r"model_card\.json in .* does not match SHA256SUMS"

Make = Callable[[Path], list[Path]]  # writes an input into an empty folder; returns the paths to pass
Check = Callable[[Path, str, str], list[str]]  # (case folder, stdout, stderr) -> problems found


@dataclass(frozen=True)
class Case:
    """One hostile input through one command; ``expect`` is "refused" (exit 2, an ``error:`` line) or "handled"
    (exit 0)."""

    name: str
    item: str
    entry: str
    make: Make
    expect: str
    message: str
    check: Check | None = None

    @property
    def id(self) -> str:
        return f"{self.name} | {self.entry}"


# --- builders on top of tests/intake_fixtures.py ------------------------------------------------------------------


def write(name: str, data: Callable[[], bytes]) -> Make:
    def make(folder: Path) -> list[Path]:
        path = folder / name
        path.write_bytes(data())
        return [path]

    return make


def speckle_png() -> bytes:
    """A 300 x 400 px speckle image (about 100 kB): valid, decodes, and the model scores it."""
    from tests.intake_fixtures import encode
    from tests.model_fixtures import speckle_image

    return encode((speckle_image(300, 400) * 255).astype("uint8"), "PNG")


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _special(kind: str) -> Make:
    """Paths that are not regular image files: a link to /dev/zero, a FIFO with no writer, a 20 GB sparse file
    (its size over the limit, no disk used), an empty folder, a missing file."""

    def make(folder: Path) -> list[Path]:
        path = folder / ("scans" if kind == "folder" else f"{kind}.png")
        if kind == "zero":
            path.symlink_to("/dev/zero")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "sparse":
            with open(path, "wb") as f:
                f.truncate(20 * 1024**3)
        elif kind == "folder":
            path.mkdir()
        return [path]

    return make


def _model_copy(edit: tuple[tuple[str, ...], object] | None) -> Make:
    """A copy of the shipped model folder's sealed files in ``out/``, with one card field edited by hand as a
    careless or hostile edit would (not re-sealed), and a valid scan to predict with it."""

    def make(folder: Path) -> list[Path]:
        from medapp.model.checkpoint import default_model_dir
        from medapp.model.integrity import CHECKSUMS_FILE
        from tests.model_fixtures import edit_card

        shipped, out = default_model_dir(), folder / "out"
        out.mkdir()
        sealed = [line.split("  ", 1)[1] for line in (shipped / CHECKSUMS_FILE).read_text().splitlines() if line]
        for name in (*sealed, CHECKSUMS_FILE):
            shutil.copyfile(shipped / name, out / name)
        if edit is not None:
            edit_card(out, *edit)
        return write("scan.png", speckle_png)(folder)

    return make


def _busi_scan(folder: Path) -> list[Path]:
    """The first benign BUSI scan of the shared data; skipped when the data is absent."""
    import pytest

    from medapp.data.datasets import data_dir

    scans = [p for p in sorted((data_dir() / "busi" / "benign").glob("*.png")) if "mask" not in p.name]
    if not scans:
        pytest.skip(f"no BUSI scans under {data_dir() / 'busi'} (set MEDAPP_DATA_DIR)")
    target = folder / "busi.png"
    shutil.copyfile(scans[0], target)
    return [target]


def _dicom_with_hostile_value() -> bytes:
    import numpy as np

    from tests.intake_fixtures import dicom_bytes, make_dataset

    pixels = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    return dicom_bytes(make_dataset(pixels, modality="US", BurnedInAnnotation="NO",
                                    Manufacturer="ACME\nerror: forged [Open](http:host) \x1b[2J"))


# --- checks beyond outcome and message ----------------------------------------------------------------------------


def no_phi(folder: Path, out: str, err: str) -> list[str]:
    """Nothing the run printed or wrote (its de-identified copy, its audit log) holds a PHI string of the fixtures.
    Matched with their case: "Doe" must not match the word "does"."""
    from tests.intake_fixtures import PHI_STRINGS

    texts = {"stdout": out.encode(), "stderr": err.encode()}
    texts |= {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
              if p.is_file() and p.parent != folder}  # what the run wrote (out/, log/), not the input itself
    return [f"{value!r} in {where}" for value in PHI_STRINGS for where, data in texts.items()
            if value.encode() in data]


def _written(folder: Path) -> list[Path]:
    return sorted((folder / "out").glob("*")) if (folder / "out").is_dir() else []


def wrote_one_copy(folder: Path, out: str, err: str) -> list[str]:
    found = len(_written(folder))
    return [] if found == 1 else [f"expected one de-identified copy in out/, found {found}"]


def wrote_nothing(folder: Path, out: str, err: str) -> list[str]:
    found = len(_written(folder))
    return [f"wrote {found} file(s) for a refused input"] if found else []


def no_result(folder: Path, out: str, err: str) -> list[str]:
    """A refused model folder serves no result at all."""
    return [f"printed a result: {out.strip()[:120]!r}"] if out.strip() else []


def one_line(expected: str) -> Check:
    """The run printed exactly one line in all, holding ``expected`` (a name with its control characters
    escaped): a newline in a file name forged no line."""

    def check(folder: Path, out: str, err: str) -> list[str]:
        lines = [line for line in (out + err).splitlines() if line.strip()]
        if len(lines) != 1:
            return [f"{len(lines)} lines printed for one input"]
        return [] if expected in lines[0] else [f"{expected!r} not in {lines[0]!r}"]

    return check


def no_forged_field(folder: Path, out: str, err: str) -> list[str]:
    """inspect's text output is the file's name, then indented fields: a header value cannot start a line."""
    return [f"forged line {line!r}" for line in out.splitlines()[1:] if line.strip() and not line.startswith("  ")]


def every(*checks: Check) -> Check:
    return lambda folder, out, err: [problem for check in checks for problem in check(folder, out, err)]


# --- the cases ----------------------------------------------------------------------------------------------------


def cases() -> list[Case]:
    """Every hostile input, by issue 12's item (nothing is written until a case's ``make`` runs)."""
    from tests import intake_fixtures as fx

    def dicom(build: Callable[[], object]) -> Callable[[], bytes]:
        return lambda: fx.dicom_bytes(build())

    def rows_columns_bomb() -> object:
        import numpy as np

        ds = fx.make_dataset(np.zeros((8, 8), np.uint8))
        ds.Rows = ds.Columns = 30000
        return ds

    def nan_tiff() -> bytes:
        import numpy as np

        return fx.encode(np.full((64, 64), np.nan, np.float32), "TIFF")

    forged = "scan\nerror: forged\x1b[2J.png"
    escaped = "scan\\nerror: forged\\x1b[2J.png: "
    link = "[Open the full report](http:host) ![t](http:host).png"  # a file name cannot hold a "/"
    out: list[Case] = []
    # 1: a compressed DICOM whose codestream declares more than its Rows/Columns; a codestream cut short
    for codec, label in (("jpeg", "JPEG"), ("j2k", "JPEG 2000")):
        for side, commands in ((60000, ("predict", "inspect")), (12000, ("predict",))):
            out += [Case(f"DICOM 256x256, {label} codestream {side}x{side}", "1", command,
                         write("bomb.dcm", lambda c=codec, s=side: fx.compressed_dicom_declaring(c, s)), "refused",
                         BOMB) for command in commands]
    out.append(Case("DICOM 64x64, JPEG-LS codestream 60000x60000 (10 frames)", "1", "predict",
                    write("bomb.dcm", lambda: fx.jpeg_ls_dicom_declaring(60000)), "refused", BOMB))
    out += [Case("DICOM, JPEG 2000 codestream cut to a third", "1, 9", command,
                 write("cut.dcm", lambda: fx.compressed_dicom_declaring("j2k", 256, truncate=True)), "refused",
                 r"could not decode|damaged|truncated|cut short") for command in ("predict", "inspect")]
    # 2: other decompression bombs, a later TIFF page among them
    tiff = write("pages.tif", lambda: fx.tiff_with_page_declaring(20000, 20000))
    out += [
        Case("TIFF, page 1 64x64, page 2 declaring 20000x20000", "2", "inspect --frame 1", tiff, "refused",
             r"TIFF page 2 declares 20000x20000 px.*possible decompression bomb"),
        Case("TIFF, page 1 64x64, page 2 declaring 20000x20000", "2", "predict", tiff, "handled",
             r"^pages\.tif: "),  # predict reads page 1 only
        Case("PNG declaring 30000x30000 (100 bytes)", "2", "predict",
             write("bomb.png", lambda: fx.png_declaring(30000, 30000)), "refused", BOMB),
        Case("PNG declaring 12000x12000 (100 bytes)", "2", "inspect",
             write("bomb.png", lambda: fx.png_declaring(12000, 12000)), "refused", BOMB),
        Case("JPEG declaring 60000x60000 (1 kB)", "2", "predict",
             write("bomb.jpg", lambda: fx.jpeg_declaring(60000, 60000)), "refused", BOMB),
        Case("DICOM, uncompressed, Rows/Columns 30000x30000", "2", "predict",
             write("bomb.dcm", dicom(rows_columns_bomb)), "refused", BOMB),
    ]
    # 3: paths that are not regular files; sequences nested 3,000 deep
    for kind, label, message in (("zero", "symlink to /dev/zero", "not a regular file"),
                                 ("fifo", "FIFO with no writer", "not a regular file"),
                                 ("sparse", "sparse file of 20 GB", "over the 128 MB limit"),
                                 ("folder", "empty folder", "folder"), ("missing", "missing file", "no such file")):
        out += [Case(label, "3", command, _special(kind), "refused", message) for command in ("predict", "inspect")]
    out += [Case("DICOM, sequences nested 3,000 deep", "3", command, write("nested.dcm", lambda: fx.dicom_nested(3000)),
                 "refused", r"nested more than \d+ deep", wrote_nothing if "DIR" in command else None)
            for command in ("predict", "inspect", "inspect --deidentify-to DIR")]
    # 4 and 5: PHI in the header, in free text and in nested sequences; text burned into the pixels
    phi = write("study.dcm", dicom(fx.phi_dataset))
    out += [
        Case("DICOM with PHI in header, free text and nested sequences", "5", "inspect --deidentify-to DIR", phi,
             "handled", r"de-identified copy: ", every(no_phi, wrote_one_copy)),
        Case("DICOM with PHI in header, free text and nested sequences", "5", "predict", phi, "handled",
             r"^study\.dcm: ", no_phi),
        Case("DICOM with BurnedInAnnotation YES", "4", "inspect --deidentify-to DIR",
             write("burned.dcm", dicom(lambda: fx.phi_dataset(burned_in="YES"))), "handled",
             r"^warning: .*Burned In Annotation is YES", every(no_phi, wrote_one_copy)),
    ]
    # 6: the shipped model folder with its card edited by hand
    out.append(Case("shipped model folder copied, card untouched (control)", "6", "predict --model DIR",
                    _model_copy(None), "handled", r"^scan\.png: "))
    for label, path, value in (("temperature -1", ("temperature",), -1.0), ("temperature 0", ("temperature",), 0.0),
                               ("temperature NaN", ("temperature",), math.nan), ("threshold 1.5", ("threshold",), 1.5),
                               ("class names swapped", ("class_names",), ["malignant", "benign", "normal"]),
                               ("scope threshold 1e9", ("scope", "threshold"), 1e9),
                               ("scope_sha256 blank", ("scope_sha256",), "")):
        out.append(Case(f"model card edited: {label}", "6", "predict --model DIR", _model_copy((path, value)),
                        "refused", NOT_MATCHING, no_result))
    # 7 (and 9's forged line): markdown and control characters in file names and header values
    out += [
        Case(f"name '{link}', valid scan", "7", "predict", write(link, speckle_png), "handled",
             "^" + re.escape(link) + ": ", one_line(link + ": ")),
        Case("name with a newline and an escape sequence, valid scan", "7, 9", "predict", write(forged, speckle_png),
             "handled", "^" + re.escape(escaped), one_line(escaped)),
        Case("name with a newline and an escape sequence, not an image", "7, 9", "predict",
             write(forged, lambda: b"not an image\n"), "refused", "^error: " + re.escape(escaped), one_line(escaped)),
        Case("DICOM Manufacturer with a newline, a link and an escape", "7", "inspect",
             write("value.dcm", _dicom_with_hostile_value), "handled", r"^  manufacturer: ACME\\nerror: forged",
             no_forged_field),
    ]
    # 9: files that are not an image medapp can read
    report = write("report.dcm", dicom(fx.structured_report))
    out += [
        Case("PDF named .png", "9", "predict", write("report.png", fx.pdf_bytes), "refused", "PDF document"),
        Case("DICOM structured report (no pixel data)", "9", "predict", report, "refused",
             "no pixel data .*structured report"),
        Case("DICOM structured report (no pixel data)", "9", "inspect", report, "refused",
             "no pixel data .*structured report"),
        Case("TIFF of NaN floats", "9", "predict", write("nan.tif", nan_tiff), "refused", "NaN"),
        Case("empty file", "9", "predict", write("empty.png", lambda: b""), "refused", "empty"),
        Case("PNG cut in half", "9", "predict", write("cut.png", lambda: _half(speckle_png())), "refused",
             "truncated"),
        Case("text file named .dcm", "9", "inspect",
             write("notes.dcm", lambda: b"Patient notes: nothing to see here\n" * 20), "refused", "text"),
    ]
    # controls: real and synthetic scans are scored within the same bounds
    out += [
        Case("BUSI benign scan (control)", "control", "predict", _busi_scan, "handled", r"^busi\.png: "),
        Case("speckle PNG 300x400 (control)", "control", "predict --overlay-dir DIR", write("scan.png", speckle_png),
             "handled", r"^scan\.png: "),
    ]
    return out
