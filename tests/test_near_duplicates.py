"""Near-duplicates: a shifted, brightened, re-encoded copy is found, unrelated scans are not, groups chain, and the
duplicate-free test subset drops exactly the test images whose group reaches train or val."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from medapp.data.near_duplicates import (
    DEFAULT_THRESHOLD,
    PUBLISHED_PAIRS,
    SIGNATURE_SIZE,
    busi_near_duplicate_free_test,
    compute_signature,
    find_near_duplicates,
    find_similar_pairs,
    group_pairs,
    load_signatures,
    near_duplicate_free,
    read_pairs_csv,
)
from medapp.errors import ManifestError


def speckle_scan(seed: int, shape: tuple[int, int] = (180, 240)) -> np.ndarray:
    """(H, W) float32 in [0, 1]: smoothed speckle, depth attenuation and one dark lesion at a random place,
    a crude ultrasound frame whose structure is unique to ``seed``."""
    rng = np.random.default_rng(seed)
    h, w = shape
    tissue = ndimage.gaussian_filter(rng.random(shape), 4) + 0.5 * ndimage.gaussian_filter(rng.random(shape), 12)
    tissue = (tissue - tissue.min()) / np.ptp(tissue)
    depth = np.linspace(1.0, 0.35, h)[:, None]
    yy, xx = np.mgrid[:h, :w]
    cy, cx, ry, rx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.25, 0.75) * w, rng.uniform(12, 30), rng.uniform(15, 40)
    lesion = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    return np.clip(tissue * depth * np.where(lesion, 0.25, 1.0), 0, 1).astype(np.float32)


def save(pixels: np.ndarray, path: Path, **options: object) -> Path:
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path, **options)
    return path


def altered_copy(pixels: np.ndarray) -> np.ndarray:
    """Shifted 3 px right and 2 px down (about 1 %, edge repeated), brighter and higher in contrast."""
    shifted = np.pad(pixels, ((2, 0), (3, 0)), mode="edge")[: pixels.shape[0], : pixels.shape[1]]
    return np.clip(shifted * 1.15 + 0.05, 0, 1)


def test_shifted_brightened_reencoded_copy_is_paired(tmp_path):
    original = speckle_scan(1)
    paths = [save(original, tmp_path / "a.png"), save(altered_copy(original), tmp_path / "a_copy.jpg", quality=80),
             save(speckle_scan(2), tmp_path / "b.png"), save(speckle_scan(3), tmp_path / "c.png")]
    found = find_near_duplicates(paths)
    assert [(p.a, p.b) for p in found.pairs] == [(0, 1)]
    assert found.pairs[0].similarity > 0.8  # far above the threshold, not scraping past it
    assert found.groups == [[0, 1]]


def test_unrelated_speckle_scans_are_not_paired(tmp_path):
    signatures = load_signatures([save(speckle_scan(seed), tmp_path / f"{seed}.png") for seed in range(10, 22)])
    assert find_similar_pairs(signatures) == []
    similarity = signatures @ signatures.T
    assert similarity[~np.eye(len(signatures), dtype=bool)].max() < DEFAULT_THRESHOLD - 0.1


def test_one_dataset_against_another_indexes_each_side(tmp_path):
    scans = [speckle_scan(seed) for seed in (30, 31, 32)]
    ours = load_signatures([save(s, tmp_path / f"ours{i}.png") for i, s in enumerate(scans)])
    theirs = load_signatures([save(speckle_scan(40), tmp_path / "t0.png"), save(altered_copy(scans[2]), tmp_path
                                                                                / "t1.png")])
    assert [(p.a, p.b) for p in find_similar_pairs(ours, theirs)] == [(2, 1)]


def test_signature_is_a_unit_zero_mean_vector_and_a_blank_image_matches_nothing():
    signature = compute_signature(speckle_scan(5))
    assert signature.shape == (SIGNATURE_SIZE * SIGNATURE_SIZE,) and signature.dtype == np.float32
    assert abs(float(signature.mean())) < 1e-6 and float(np.linalg.norm(signature)) == pytest.approx(1, abs=1e-5)
    assert not compute_signature(np.full((64, 64), 0.3, np.float32)).any()


@pytest.mark.parametrize(
    ("count", "pairs", "groups"),
    [
        (5, [(0, 1), (1, 2)], [[0, 1, 2]]),  # 0 ~ 1 ~ 2: one group although 0 and 2 were never compared above
        (6, [(4, 5), (0, 1), (2, 1)], [[0, 1, 2], [4, 5]]),
        (3, [], []),
    ],
)
def test_grouping_is_transitive(count, pairs, groups):
    assert group_pairs(count, pairs) == groups


def test_duplicate_free_test_subset():
    items = [("t_leak", "test"), ("train_1", "train"), ("t_pair_a", "test"), ("t_pair_b", "test"),
             ("t_chain", "test"), ("t_link", "test"), ("val_1", "val"), ("t_alone", "test")]
    pairs = [("t_leak", "train_1"), ("t_pair_a", "t_pair_b"), ("t_chain", "t_link"), ("t_link", "val_1")]
    # the copy in train excludes t_leak; copies only within test stay; a chain through test to val excludes both
    assert near_duplicate_free(items, pairs) == ["t_pair_a", "t_pair_b", "t_alone"]


def test_stale_pair_list_and_bad_threshold_are_refused():
    with pytest.raises(ManifestError, match="stale"):
        near_duplicate_free([("a", "test")], [("a", "gone")])
    with pytest.raises(ValueError, match=r"outside \(-1, 1\]"):
        find_similar_pairs(np.zeros((2, 4), np.float32), threshold=1.5)


def test_published_busi_list_matches_what_the_code_computes(busi_dir):
    """docs/near_duplicates_busi.csv is what bench/near_duplicates.py computes from the images today (~10 s)."""
    from medapp.data.datasets import load_busi_records

    records = load_busi_records()
    now = find_near_duplicates([r.path for r in records])
    computed = {(records[p.a].image, records[p.b].image): p.similarity for p in now.pairs}
    published = {(a, b): s for a, b, s in read_pairs_csv(PUBLISHED_PAIRS)}
    assert set(published) == set(computed), "rerun .venv/bin/python bench/near_duplicates.py"
    assert all(abs(published[k] - computed[k]) < 1e-3 for k in computed)
    free = busi_near_duplicate_free_test()
    expected = near_duplicate_free([(r.image, r.split) for r in records], computed)
    assert [r.image for r in free] == expected
    assert {r.split for r in free} == {"test"} and 0 < len(free) < len(load_busi_records("test"))
