"""Near-duplicate images: the same lesion and frame stored twice, so that a split cannot keep test images unseen.

BUSI holds many near-identical images (one frame with and without calipers, adjacent cine frames, a re-crop), some
of them across the official train/val/test split and some with conflicting labels (Pawlowska et al., Data in Brief
2023). A test image whose near-copy was trained on measures memory, not diagnosis; this module finds such pairs
and gives evaluation the test images that have no near-copy outside the test split.

The signature is a band-passed 32 x 32 thumbnail, compared by normalised correlation. A plain thumbnail is not
enough: every ultrasound frame shares a bright-near-field, dark-far-field profile and black screen borders, so
unrelated BUSI images correlated above 0.8. The difference of Gaussians removes that shared layout (and the finest
speckle), leaving the tissue structure that identifies one scan. docs/near_duplicates.md gives the threshold's
evidence: the score distribution, the pairs checked by eye, and the BUSI vs BUS-BRA (other hospital) null.
"""

from __future__ import annotations

import csv
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import DataNotFoundError, ManifestError
from ..intake.imaging import load_image
from ..settings import PROJECT_ROOT
from .datasets import load_busi_records

if TYPE_CHECKING:
    from .manifest import Record

SIGNATURE_SIZE = 32
# Difference of Gaussians, in thumbnail pixels: below 0.5 is pixel noise, above 2 the layout every frame shares.
BAND_SIGMAS = (0.5, 2.0)
# Chosen in docs/near_duplicates.md: every BUSI pair checked by eye above it showed the same lesion.
DEFAULT_THRESHOLD = 0.5
PUBLISHED_PAIRS = PROJECT_ROOT / "docs" / "near_duplicates_busi.csv"
PAIR_COLUMNS = ("image_a", "image_b", "split_a", "split_b", "label_a", "label_b", "similarity")
TEST_SPLIT = "test"


@dataclass(frozen=True)
class SimilarPair:
    """Images ``a`` and ``b`` (indices into the signature arrays compared) and their correlation in [-1, 1]."""

    a: int
    b: int
    similarity: float


@dataclass(frozen=True)
class NearDuplicates:
    """The pairs above the threshold and their connected components (groups of two or more indices, sorted)."""

    pairs: list[SimilarPair]
    groups: list[list[int]]


def compute_signature(pixels: np.ndarray) -> np.ndarray:
    """(SIGNATURE_SIZE**2,) float32, zero mean and unit norm, from (H, W) float32 pixels in [0, 1].

    The box resize averages whole source pixels, so a shift of a few pixels, a brightness change or a JPEG
    re-encode barely moves the signature; the dot product of two signatures is their Pearson correlation.
    A featureless image gives all zeros (similar to nothing) rather than dividing by zero.
    """
    thumb = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32)).resize(
        (SIGNATURE_SIZE, SIGNATURE_SIZE), Image.Resampling.BOX)
    t = np.asarray(thumb, dtype=np.float64)
    band = ndimage.gaussian_filter(t, BAND_SIGMAS[0]) - ndimage.gaussian_filter(t, BAND_SIGMAS[1])
    band -= band.mean()
    norm = np.linalg.norm(band)
    return (band / norm if norm > 1e-9 else np.zeros_like(band)).ravel().astype(np.float32)


def load_signatures(paths: Sequence[Path]) -> np.ndarray:
    """(N, SIGNATURE_SIZE**2) float32: each file decoded through intake (as the model sees it), then signed."""
    out = np.zeros((len(paths), SIGNATURE_SIZE * SIGNATURE_SIZE), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = compute_signature(load_image(path).pixels)
    return out


def _check_threshold(threshold: float) -> float:
    if not -1.0 < threshold <= 1.0:
        raise ValueError(f"similarity threshold {threshold!r} is outside (-1, 1]; signatures are correlations "
                         f"(default {DEFAULT_THRESHOLD})")
    return float(threshold)


def find_similar_pairs(signatures: np.ndarray, others: np.ndarray | None = None,
                       threshold: float = DEFAULT_THRESHOLD) -> list[SimilarPair]:
    """Pairs with correlation >= ``threshold``, most similar first.

    Without ``others``: pairs within ``signatures`` (a < b). With ``others``: ``a`` indexes ``signatures`` and
    ``b`` indexes ``others`` (one dataset against another). Rows go in blocks so memory stays O(block x M).
    """
    threshold = _check_threshold(threshold)
    within = others is None
    others = signatures if within else others
    pairs = []
    for start in range(0, len(signatures), 512):
        block = signatures[start:start + 512] @ others.T
        for i, j in zip(*np.nonzero(block >= threshold), strict=True):
            a = start + int(i)
            if not within or a < j:
                pairs.append(SimilarPair(a, int(j), round(float(block[i, j]), 4)))
    return sorted(pairs, key=lambda p: (-p.similarity, p.a, p.b))


def group_pairs(count: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components of size >= 2 among ``count`` items: near-duplication is chained (frame 1 ~ 2 ~ 3),
    and a copy of a copy leaks as surely as a direct one. Groups are sorted, largest first."""
    edges = np.array(list(pairs), dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(int(label), []).append(index)
    return sorted((g for g in members.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))


def find_near_duplicates(paths: Sequence[Path], threshold: float = DEFAULT_THRESHOLD) -> NearDuplicates:
    """Near-duplicate pairs and groups among image files; indices refer to ``paths``."""
    pairs = find_similar_pairs(load_signatures(paths), threshold=threshold)
    return NearDuplicates(pairs, group_pairs(len(paths), ((p.a, p.b) for p in pairs)))


def near_duplicate_free(items: Sequence[tuple[Hashable, str]],
                        pairs: Iterable[tuple[Hashable, Hashable]]) -> list[Hashable]:
    """Keys of the test items whose group holds no item outside the test split, in ``items`` order.

    ``items`` are (key, split); ``pairs`` are (key, key) near-duplicates. Grouping is transitive (see
    :func:`group_pairs`). Near-copies that are all in test are kept: they do not leak training data, though they
    are correlated, so a per-group bootstrap is the honest interval on such a subset.
    """
    index = {key: i for i, (key, _) in enumerate(items)}
    edges, unknown = [], []
    for a, b in pairs:
        if a not in index or b not in index:
            unknown.append(a if a not in index else b)
            continue
        edges.append((index[a], index[b]))
    if unknown:
        raise ManifestError(f"near-duplicate pair names {unknown[0]!r}, which is not among the {len(items)} items; "
                            "the pair list is stale: rerun bench/near_duplicates.py")
    leaked = {i for g in group_pairs(len(items), edges) if any(items[j][1] != TEST_SPLIT for j in g) for i in g}
    return [key for i, (key, split) in enumerate(items) if split == TEST_SPLIT and i not in leaked]


def read_pairs_csv(path: Path = PUBLISHED_PAIRS) -> list[tuple[str, str, float]]:
    """(image_a, image_b, similarity) rows of a published pair list (paths relative to busi/)."""
    if not path.is_file():
        raise DataNotFoundError(f"near-duplicate list not found at {path}; run .venv/bin/python "
                                "bench/near_duplicates.py to write it")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != PAIR_COLUMNS:
            raise ManifestError(f"{path}: header {reader.fieldnames}, expected {', '.join(PAIR_COLUMNS)}")
        return [(row["image_a"], row["image_b"], float(row["similarity"])) for row in reader]


def busi_near_duplicate_free_test(pairs_csv: Path | None = PUBLISHED_PAIRS, root: Path | None = None) -> list[Record]:
    """BUSI's test records (splits.csv order) with no near-copy in train or val, directly or through a chain.

    This is the subset on which a BUSI test score measures diagnosis rather than recall of training images. Pairs
    come from the published list (fast, and the same list the docs count); ``pairs_csv`` None recomputes them
    from the images (~10 s on 2 cores).
    """
    records = load_busi_records(root=root)
    if pairs_csv is None:
        found = find_near_duplicates([r.path for r in records])
        pairs = [(records[p.a].image, records[p.b].image) for p in found.pairs]
    else:
        pairs = [(a, b) for a, b, _ in read_pairs_csv(pairs_csv)]
    keep = set(near_duplicate_free([(r.image, r.split) for r in records], pairs))
    return [r for r in records if r.image in keep]
