"""The scope gate's outlier images: offline, deterministic, and disjoint from the images the tests judge it on."""

from __future__ import annotations

import numpy as np
import pytest
from model_fixtures import DOPPLER_DICOMS, SKIMAGE_PHOTOS, ood_dicom_paths

from medapp.data.outliers import DRAWN_FAMILIES, DRAWN_PER_FAMILY, outlier_images, outlier_squares
from medapp.model.card import InputSpec


@pytest.fixture(scope="module")
def outliers() -> list[tuple[str, np.ndarray]]:
    return outlier_images()


def test_outliers_are_images_in_unit_range_and_reproducible(outliers: list[tuple[str, np.ndarray]]) -> None:
    first, second = outliers, outlier_images()
    assert [n for n, _ in first] == [n for n, _ in second]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, second))
    for name, image in first:
        assert image.ndim == 2 and image.dtype == np.float32 and min(image.shape) >= 8, name
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, name
    names = [n for n, _ in first]
    for family in DRAWN_FAMILIES:
        assert sum(n.startswith(f"drawn:{family}_") for n in names) == DRAWN_PER_FAMILY
    real = {n.split("#")[0] for n in names if not n.startswith("drawn:")}
    assert len(real) >= 40, "the installed pictures (photographs, MR slice, maps, DICOM) are missing"


def test_outliers_share_no_source_with_the_out_of_scope_test_set(outliers: list[tuple[str, np.ndarray]]) -> None:
    sources = {n.split("#")[0].split(":", 1)[1] for n, _ in outliers if not n.startswith("drawn:")}
    stems = {s.rsplit(".", 1)[0] for s in sources}
    assert not stems & set(SKIMAGE_PHOTOS)
    assert not sources & ({p.name for p in ood_dicom_paths()} | set(DOPPLER_DICOMS))


def test_outlier_squares_match_the_model_input(outliers: list[tuple[str, np.ndarray]]) -> None:
    squares = outlier_squares(InputSpec(size=32))
    assert squares.shape == (len(outliers), 32, 32) and squares.dtype == np.float32
