"""``python -m medapp inspect``: text and JSON output, exit codes, one error line per refused file, no PHI."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from intake_fixtures import PHI_STRINGS, dicom_bytes, encode, make_dataset, phi_dataset

from medapp.cli import inspect_cmd
from medapp.intake.imaging import load_image

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    """The ``inspect`` command alone: the full CLI's other commands import torch, too heavy for unit tests (the
    real entry point is covered by the slow test at the end)."""
    parser = argparse.ArgumentParser()
    inspect_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "phi": tmp_path / "study1.dcm",
        "png": tmp_path / "scan.png",
        "multi": tmp_path / "cine.dcm",
        "text": tmp_path / "notes.txt",
    }
    paths["phi"].write_bytes(dicom_bytes(phi_dataset()))
    paths["png"].write_bytes(encode(np.full((40, 50), 128, np.uint8), "PNG"))
    frames = np.stack([np.full((40, 40), v, np.uint8) for v in (0, 100, 200)])
    ds = make_dataset(np.zeros((40, 40), np.uint8), NumberOfFrames=3)
    ds.PixelData = frames.tobytes()
    paths["multi"].write_bytes(dicom_bytes(ds))
    paths["text"].write_text("not an image\n")
    return paths


def assert_no_phi(text: str) -> None:
    leaked = [value for value in PHI_STRINGS if value.lower() in text.lower()]
    assert not leaked, f"PHI leaked: {leaked}"


def test_text_output_exit_0_and_no_phi(files, capsys):
    assert main(["inspect", str(files["phi"]), str(files["png"])]) == 0
    out, err = capsys.readouterr()
    assert "size: 64 x 48 px" in out and "modality: US" in out and "size: 50 x 40 px" in out
    assert err == ""
    assert_no_phi(out)


def test_json_output_and_frame(files, capsys):
    assert main(["inspect", "--json", "--frame", "2", str(files["multi"])]) == 0
    out, _ = capsys.readouterr()
    (report,) = json.loads(out)
    assert report["ok"] and (report["frame_index"], report["frame_count"]) == (2, 3)
    assert "frame 3 of 3" in report["notes"]
    assert main(["inspect", "--json", str(files["phi"])]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out)[0]["metadata"]["modality"] == "US"
    assert_no_phi(out)


def test_refused_files_one_error_line_each_others_processed(files, tmp_path, capsys):
    missing = tmp_path / "absent.png"
    code = main(["inspect", str(files["text"]), str(files["png"]), str(missing)])
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert lines == [
        f"error: {files['text']}: file is text, not an image; upload a PNG, JPEG, BMP, TIFF or DICOM file",
        f"error: {missing}: no such file; check the path",
    ]
    assert str(files["png"]) in out and "Traceback" not in out + err


def test_frame_out_of_range_is_an_error_line(files, capsys):
    assert main(["inspect", "--frame", "5", str(files["multi"])]) == 2
    assert "frame 5 requested but the file has 3" in capsys.readouterr().err


def test_deidentify_to_writes_clean_copies(files, tmp_path, capsys):
    out_dir = tmp_path / "clean"
    assert main(["inspect", "--json", "--deidentify-to", str(out_dir), str(files["phi"]), str(files["png"])]) == 0
    out, err = capsys.readouterr()
    reports = json.loads(out)
    written = sorted(out_dir.iterdir())
    assert len(written) == 2 and all(r["deidentified_to"] for r in reports)
    assert all("study1" not in p.name and "scan" not in p.name for p in written)  # names never reused
    dcm = next(p for p in written if p.suffix == ".dcm")
    assert_no_phi(dcm.read_bytes().decode("latin-1") + out + err)
    assert pydicom.dcmread(dcm).PatientIdentityRemoved == "YES"
    np.testing.assert_array_equal(load_image(dcm).pixels, load_image(files["phi"]).pixels)


@pytest.mark.slow
def test_module_entry_point_never_prints_a_traceback(files):
    result = subprocess.run(
        [sys.executable, "-m", "medapp", "inspect", str(files["text"]), str(files["png"])],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    expected = f"error: {files['text']}: file is text, not an image; upload a PNG, JPEG, BMP, TIFF or DICOM file"
    assert result.stderr.strip() == expected
    assert "Traceback" not in result.stdout + result.stderr
