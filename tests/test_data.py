"""Data: the official split, masks, BreastMNIST, and clear errors for a missing data folder."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from medapp.data.datasets import load_breastmnist, load_busi_records, load_mask
from medapp.errors import DataNotFoundError


def test_split_counts_match_splits_csv(busi_dir):
    with (busi_dir / "busi" / "splits.csv").open() as f:
        expected = Counter((row["split"], row["label"]) for row in csv.DictReader(f))
    records = load_busi_records()
    assert Counter((r.split, r.label) for r in records) == expected
    sizes = {s: len(load_busi_records(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 546, "val": 78, "test": 156}  # the official MedMNIST BreastMNIST split
    assert Counter(r.label for r in load_busi_records("test")) == {"benign": 92, "malignant": 42, "normal": 22}


def test_splits_are_disjoint(busi_dir):
    images = [r.image for r in load_busi_records()]
    assert len(images) == len(set(images)) == 780


def test_masks_union_and_normal_is_empty(busi_dir):
    records = {r.image: r for r in load_busi_records()}
    multi = records["benign/benign (4).png"]
    assert len(multi.masks) == 2
    mask = load_mask(multi)
    assert mask.dtype == bool and mask.any()
    normal = next(r for r in records.values() if r.label == "normal")
    assert not load_mask(normal).any()


def test_breastmnist_labels_follow_the_official_file(busi_dir):
    test = load_breastmnist("test")
    assert test.images.shape == (156, 28, 28) and test.images.dtype == np.uint8
    assert int(test.malignant.sum()) == 42  # label 0 = malignant


def test_missing_data_folder_says_what_and_where(tmp_path):
    with pytest.raises(DataNotFoundError, match="busi/splits.csv.*MEDAPP_DATA_DIR"):
        load_busi_records(root=tmp_path)
    with pytest.raises(DataNotFoundError, match="BreastMNIST"):
        load_breastmnist("test", root=tmp_path)


def test_incomplete_data_folder_names_the_missing_image(tmp_path):
    (tmp_path / "busi").mkdir()
    (tmp_path / "busi" / "splits.csv").write_text(
        "image,label,split,masks,medmnist_index\nbenign/benign (1).png,benign,train,,0\n")
    with pytest.raises(DataNotFoundError, match=r"missing.*benign \(1\)\.png"):
        load_busi_records(root=tmp_path)


def test_unknown_split_lists_valid_ones(busi_dir):
    with pytest.raises(ValueError, match="train, val, test"):
        load_busi_records("holdout")
