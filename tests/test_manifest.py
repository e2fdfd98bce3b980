"""Datasets as manifests: BUSI and BUS-BRA through one code path, and malformed manifests refused by row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medapp.data.datasets import load_mask, load_records
from medapp.data.manifest import DatasetSpec, read_manifest
from medapp.errors import DataNotFoundError, ManifestError


def _site(tmp_path: Path, rows: str, header: str = "image,label,split,patient,mask,device") -> Path:
    """A hospital's own folder: two images, one mask, and the manifest beside them."""
    folder = tmp_path / "hospital"
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for name in ("a.png", "b.png", "a_mask.png"):
        Image.fromarray(np.full((40, 50), 255 if "mask" in name else 90, np.uint8)).save(folder / "img" / name)
    (folder / "manifest.csv").write_text(f"{header}\n{rows}")
    return folder / "manifest.csv"


def test_a_hospital_folder_loads_with_no_new_code(tmp_path: Path) -> None:
    manifest = _site(tmp_path, "img/a.png,malignant,test,p1,img/a_mask.png,Scanner X\n"
                               "img/b.png,benign,test,p2,,\n", header="image,label,split,patient,mask,device")
    records = load_records({"name": "local", "manifest": str(manifest)}, "test")
    a, b = records
    assert (a.label, a.patient, a.device, a.site, a.dataset) == ("malignant", "p1", "Scanner X", "local", "local")
    assert a.path == manifest.parent / "img" / "a.png" and load_mask(a).all()
    assert b.device == "unknown" and b.masks == () and not load_mask(b).any()


def test_extra_columns_are_kept_and_patient_defaults_to_the_image(tmp_path: Path) -> None:
    manifest = _site(tmp_path, "img/a.png,normal,train,3\n", header="image,label,split,birads")
    (record,) = read_manifest(manifest, "x")
    assert record.extra == {"birads": "3"} and record.patient == "x:img/a.png"


@pytest.mark.parametrize(("rows", "message"), [
    ("img/a.png,malignant,test,p1,,\nimg/b.png,cancer,test,p2,,\n", r"row 3: label 'cancer' is not one of"),
    ("img/a.png,benign,holdout,p1,,\n", r"row 2: split 'holdout' is not one of train, val, test"),
    (",benign,test,p1,,\n", r"row 2: image is empty"),
    ("../elsewhere.png,benign,test,p1,,\n", r"row 2: image .* inside the manifest's folder"),
    ("img/a.png,benign,train,p1,,\nimg/b.png,benign,test,p1,,\n", r"patient 'p1' has images in both train and test"),
])
def test_malformed_rows_are_refused_by_row(tmp_path: Path, rows: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        read_manifest(_site(tmp_path, rows), "local")


def test_missing_column_missing_file_and_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="lacks column.*split"):
        read_manifest(_site(tmp_path, "img/a.png,benign\n", header="image,label"), "local")
    manifest = _site(tmp_path, "img/missing.png,benign,test,p1,,\n")
    with pytest.raises(DataNotFoundError, match=r"1 file\(s\) listed in .* missing \(first: .*missing.png"):
        load_records({"name": "local", "manifest": str(manifest)})
    with pytest.raises(DataNotFoundError, match="manifest of dataset 'local' not found"):
        load_records({"name": "local", "manifest": str(tmp_path / "nope.csv")})


def test_dataset_specs() -> None:
    assert DatasetSpec.parse("busbra") == DatasetSpec("busbra", "", 1.0)
    assert DatasetSpec.parse({"name": "busi", "weight": 2}).weight == 2.0
    with pytest.raises(ManifestError, match="not one medapp knows"):
        DatasetSpec.parse("hospital_x")
    with pytest.raises(ManifestError, match="weight must be positive"):
        DatasetSpec.parse({"name": "busi", "weight": 0})
    with pytest.raises(ManifestError, match="unknown: path"):
        DatasetSpec.parse({"name": "busi", "path": "x"})


def test_busi_and_busbra_ship_as_manifests(busi_dir: Path) -> None:
    busi = load_records("busi")
    assert len(busi) == 780 and {r.site for r in busi} == {"busi"}
    assert sum(r.split == "test" for r in busi) == 156
    if not (busi_dir / "busbra" / "metadata.csv").is_file():
        pytest.skip(f"BUS-BRA not found at {busi_dir / 'busbra'}")
    busbra = load_records("busbra")
    assert len(busbra) == 1508 and {r.label for r in busbra} == {"benign", "malignant"}
    assert [sum(r.split == s for r in busbra) for s in ("train", "val", "test")] == [1051, 153, 304]
    assert len({r.device for r in busbra}) == 4 and all(len(r.masks) == 1 for r in busbra)
    assert {r.patient for r in busbra if r.split == "test"}.isdisjoint({r.patient for r in busbra
                                                                        if r.split != "test"})
