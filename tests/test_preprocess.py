"""Preprocessing: hand-checked geometry, and the same tensor in training and in serving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medapp.model.card import InputSpec
from medapp.model.preprocess import compute_geometry, normalize, preprocess, resize_to_square, restore_geometry


@pytest.mark.parametrize(
    ("h", "w", "size", "policy", "src", "dst"),
    [
        # landscape 100x200 padded into 64: scale 0.32 -> 32x64, centred with 16 rows of padding above
        (100, 200, 64, "pad", (0, 0, 100, 200), (16, 0, 32, 64)),
        # portrait 300x100 padded into 60: scale 0.2 -> 60x20, 20 columns of padding left
        (300, 100, 60, "pad", (0, 0, 300, 100), (0, 20, 60, 20)),
        # landscape 100x200 centre-cropped to its middle 100x100
        (100, 200, 64, "crop", (0, 50, 100, 100), (0, 0, 64, 64)),
        (100, 200, 64, "stretch", (0, 0, 100, 200), (0, 0, 64, 64)),
    ],
)
def test_geometry_hand_checked(h, w, size, policy, src, dst):
    g = compute_geometry(h, w, size, policy)
    assert (g.src_top, g.src_left, g.src_h, g.src_w) == src
    assert (g.dst_top, g.dst_left, g.dst_h, g.dst_w) == dst


def test_unknown_policy_lists_valid_ones():
    with pytest.raises(ValueError, match="pad, crop, stretch"):
        InputSpec(resize="squash")


@pytest.mark.parametrize("policy", ["pad", "crop", "stretch"])
def test_resize_keeps_range_and_size(policy):
    pixels = np.random.default_rng(0).random((90, 150), dtype=np.float32)
    out = resize_to_square(pixels, InputSpec(size=48, resize=policy))
    assert out.shape == (48, 48) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_pad_leaves_black_border_and_keeps_content_upright():
    pixels = np.zeros((50, 100), dtype=np.float32)
    pixels[:, :50] = 1.0  # left half bright
    out = resize_to_square(pixels, InputSpec(size=100, resize="pad"))
    assert out[:25].max() == 0 and out[75:].max() == 0  # letterbox rows
    assert out[50, 10] == pytest.approx(1.0) and out[50, 90] == pytest.approx(0.0)


@pytest.mark.parametrize("policy", ["pad", "crop", "stretch"])
def test_restore_geometry_maps_a_blob_back_to_where_it_was(policy):
    h, w = 120, 200
    spec = InputSpec(size=64, resize=policy)
    pixels = np.zeros((h, w), dtype=np.float32)
    pixels[50:70, 90:110] = 1.0  # central blob (inside the crop too)
    square = resize_to_square(pixels, spec)
    back = restore_geometry(square, compute_geometry(h, w, spec.size, spec.resize))
    assert back.shape == (h, w)
    y, x = np.unravel_index(np.argmax(back), back.shape)
    assert 45 <= y <= 75 and 85 <= x <= 115


def test_normalize_uses_card_mean_std_and_channels():
    spec = InputSpec(size=8, channels=3, mean=0.25, std=0.5)
    x = normalize(torch.full((8, 8), 0.75), spec)
    assert x.shape == (3, 8, 8)
    assert torch.allclose(x, torch.ones(3, 8, 8))


def test_training_and_serving_feed_identical_tensors(busi_dir):
    """The cached training square (data.load_squares + the training Dataset) equals serving's preprocess()."""
    from medapp.data.datasets import load_busi_records, load_squares
    from medapp.intake.imaging import load_image
    from medapp.training.dataset import SquaresDataset

    spec = InputSpec(size=96, resize="pad", mean=0.45, std=0.22)
    records = load_busi_records("test")[:3]
    squares = load_squares(records, spec)
    dataset = SquaresDataset(squares, np.zeros(len(records)), spec, transform=None)
    for i, record in enumerate(records):
        served = preprocess(load_image(record.path).pixels, spec)
        trained, _ = dataset[i]
        assert served.shape == (1, 96, 96)
        assert torch.equal(served, trained)
