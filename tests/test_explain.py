"""Heatmaps: method table, orientation end to end, mirror equivariance, overlay, localisation scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import build_blob_model_dir, medical_image, speckle_image, tiny_model_dir, tiny_predictor  # noqa: F401

from medapp.evaluation.localization import center_prior, energy_in_mask, pointing_game_hit
from medapp.model.explain import (
    CAM_METHODS,
    DEFAULT_CAM_METHOD,
    check_cam_method,
    colorbar_image,
    list_cam_methods,
    overlay_heatmap,
)
from medapp.model.registry import create_model, resolve_layer
from medapp.serving.predict import Predictor


def test_method_table() -> None:
    assert DEFAULT_CAM_METHOD == "gradcam" == list_cam_methods()[0]
    assert list_cam_methods() == ["gradcam", "gradcam++", "hirescam", "layercam", "eigencam"]
    assert set(list_cam_methods(include_slow=True)) == set(CAM_METHODS)
    with pytest.raises(ValueError, match="enable slow methods explicitly"):
        check_cam_method("scorecam")
    assert check_cam_method("scorecam", allow_slow=True) == "scorecam"
    with pytest.raises(ValueError, match="unknown CAM method 'gradkam'; choose one of: gradcam"):
        check_cam_method("gradkam")


@pytest.mark.parametrize("path", ["features.-3", "features[-3]", "features.21"])
def test_resolve_layer(path: str) -> None:
    model = create_model("small_cnn", num_classes=3, in_chans=1, width=4)
    assert resolve_layer(model, path) is model.features[21]


def test_resolve_layer_names_the_failure() -> None:
    model = create_model("small_cnn", num_classes=3, in_chans=1, width=4)
    with pytest.raises(ValueError, match="failed at 'blocks'"):
        resolve_layer(model, "blocks.3")


@pytest.fixture(scope="module")
def blob_predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor.from_dir(build_blob_model_dir(tmp_path_factory.mktemp("blob")))


# (height, width, blob rows, blob cols): non-square both ways, blob in different corners
BLOBS = [
    (150, 260, (15, 50), (20, 70)),  # landscape, top-left
    (150, 260, (95, 135), (190, 245)),  # landscape, bottom-right
    (260, 150, (20, 60), (95, 140)),  # portrait, top-right
    (260, 150, (200, 245), (10, 50)),  # portrait, bottom-left
]


@pytest.mark.parametrize(("height", "width", "rows", "cols"), BLOBS)
def test_heatmap_lands_on_the_blob_not_flipped_or_transposed(blob_predictor: Predictor, height: int, width: int,
                                                             rows: tuple[int, int], cols: tuple[int, int]) -> None:
    pixels = np.zeros((height, width), np.float32)
    pixels[rows[0] : rows[1], cols[0] : cols[1]] = 1.0
    pred = blob_predictor.predict(medical_image(pixels), target="malignant")
    heatmap = pred.heatmap
    assert heatmap is not None and heatmap.shape == (height, width) and heatmap.dtype == np.float32
    assert 0.0 <= heatmap.min() and heatmap.max() == pytest.approx(1.0)
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    assert rows[0] <= r < rows[1] and cols[0] <= c < cols[1]
    inside = np.zeros_like(pixels, dtype=bool)
    inside[rows[0] : rows[1], cols[0] : cols[1]] = True
    assert energy_in_mask(heatmap, inside) > 0.6


def test_heatmap_is_zero_outside_a_crop(tmp_path: Path) -> None:
    predictor = Predictor.from_dir(build_blob_model_dir(tmp_path, resize="crop"))
    pixels = np.zeros((150, 300), np.float32)
    pixels[60:90, 130:170] = 1.0
    heatmap = predictor.predict(medical_image(pixels), target="malignant").heatmap
    assert heatmap.shape == (150, 300)
    assert heatmap[:, :75].max() == 0 and heatmap[:, 225:].max() == 0  # centre 150x150 crop used
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    assert 60 <= r < 90 and 130 <= c < 170


@pytest.mark.parametrize("method", list_cam_methods())
def test_heatmap_of_mirrored_image_is_mirrored_heatmap(tiny_predictor: Predictor, method: str) -> None:
    # the image and its mirror only (no shifts, which smooth the map towards symmetry)
    predictor = Predictor(tiny_predictor.model, tiny_predictor.card, tiny_predictor.gate,
                          explain_config={**tiny_predictor.explain_config, "shift": 0})
    assert len(predictor.views) == 2
    pixels = speckle_image(180, 300, seed=3)
    kwargs = {"cam_method": method, "target": "malignant", "tta": False}
    heatmap = predictor.predict(medical_image(pixels), **kwargs).heatmap
    mirrored = predictor.predict(medical_image(pixels[:, ::-1].copy()), **kwargs).heatmap
    assert heatmap.shape == mirrored.shape == (180, 300)
    np.testing.assert_allclose(mirrored, heatmap[:, ::-1], atol=2e-3)
    # and the mirror is not trivially satisfied by a symmetric map
    assert np.abs(heatmap - heatmap[:, ::-1]).max() > 0.05 or method == "eigencam"


@pytest.mark.parametrize("config", [{"shift": 0.06}, {"target_layer": "features.9+features.-3", "method": "layercam",
                                                     "shift": 0.04, "smooth": 0.03}])
def test_augmented_cam_keeps_mirror_equivariance(tiny_predictor: Predictor, config: dict) -> None:
    predictor = Predictor(tiny_predictor.model, tiny_predictor.card, tiny_predictor.gate, explain_config=config)
    pixels = speckle_image(170, 290, seed=4)
    heatmap = predictor.predict(medical_image(pixels), target="malignant", tta=False).heatmap
    mirrored = predictor.predict(medical_image(pixels[:, ::-1].copy()), target="malignant", tta=False).heatmap
    np.testing.assert_allclose(mirrored, heatmap[:, ::-1], atol=2e-3)


def test_cam_views_and_shift() -> None:
    from medapp.model.views import _shift, cam_views

    assert cam_views(False, 0) == [(False, 0, 0)]
    views = cam_views(True, 3)
    assert len(views) == 10 and views[0] == (False, 0, 0)
    assert {(dy, -dx) for _, dy, dx in views} == {(dy, dx) for _, dy, dx in views}  # closed under mirroring
    t = torch.arange(9.0).reshape(1, 3, 3)
    assert _shift(t, 1, -1, -5.0).tolist() == [[[-5, -5, -5], [1, 2, -5], [4, 5, -5]]]


def test_view_batch_is_view_major_and_merge_undoes_it() -> None:
    from medapp.model.views import cam_views, merge_view_maps, view_batch

    x = torch.rand(2, 1, 6, 6)
    views = cam_views(True, 1)
    batch = view_batch(x, views, fill=-3.0)
    assert batch.shape == (20, 1, 6, 6)
    assert torch.equal(batch[:2], x) and torch.equal(batch[5 * 2 : 5 * 2 + 2], x.flip(-1))  # identity, mirror
    assert batch[2:4, 0, 0].eq(-3.0).all()  # shifted down-right: the top row is filled
    # each view moved back lands on the original wherever it saw the image, so the average is the image
    torch.testing.assert_close(merge_view_maps(batch[:, 0], views, 2), x[:, 0])


def test_shifted_cam_still_lands_on_the_blob(tmp_path: Path) -> None:
    base = Predictor.from_dir(build_blob_model_dir(tmp_path))
    predictor = Predictor(base.model, base.card, base.gate,
                          explain_config={**base.explain_config, "shift": 0.05, "flip_average": True})
    pixels = np.zeros((150, 260), np.float32)
    pixels[95:135, 190:245] = 1.0
    heatmap = predictor.predict(medical_image(pixels), target="malignant").heatmap
    r, c = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    assert 95 <= r < 135 and 190 <= c < 245


def test_overlay_blends_by_opacity() -> None:
    image = np.full((4, 6, 3), 100, np.uint8)
    heatmap = np.zeros((4, 6), np.float32)
    heatmap[0, 0] = 1.0
    assert np.array_equal(overlay_heatmap(image, heatmap, opacity=0.0), image)
    full = overlay_heatmap(image, heatmap, opacity=1.0, colormap="gray")
    assert full[0, 0].tolist() == [255, 255, 255] and full[1, 1].tolist() == [0, 0, 0]
    half = overlay_heatmap(image, heatmap, opacity=0.5, colormap="gray")
    assert half[0, 0].tolist() == [178, 178, 178] and half[1, 1].tolist() == [50, 50, 50]
    jet = overlay_heatmap(image, heatmap, opacity=1.0)
    assert jet[0, 0, 0] > 100 and jet[0, 0, 2] < 50  # jet's top is red
    assert jet.dtype == np.uint8 and jet.shape == (4, 6, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"opacity": 1.5}, "opacity must be in"), ({"colormap": "nope"}, "unknown colormap 'nope'")],
)
def test_overlay_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        overlay_heatmap(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32), **kwargs)


def test_overlay_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="does not match"):
        overlay_heatmap(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.float32))


def test_colorbar() -> None:
    bar = colorbar_image(100, 10, colormap="gray")
    assert bar.shape == (100, 10, 3) and bar[0, 0].tolist() == [255] * 3 and bar[-1, 0].tolist() == [0] * 3
    assert colorbar_image(50, 8, vertical=False).shape == (8, 50, 3)


def test_pointing_game_and_energy_hand_checked() -> None:
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    heat = np.zeros((4, 4), np.float32)
    heat[1, 2], heat[0, 0] = 1.0, 0.5
    assert pointing_game_hit(heat, mask) is True
    assert energy_in_mask(heat, mask) == pytest.approx(1.0 / 1.5)
    heat[3, 3] = 2.0
    assert pointing_game_hit(heat, mask) is False
    assert energy_in_mask(np.zeros((4, 4)), mask) == 0.0
    with pytest.raises(ValueError, match="differs from mask shape"):
        energy_in_mask(np.zeros((4, 5)), mask)


def test_center_prior_peaks_at_centre() -> None:
    prior = center_prior(101, 61)
    assert prior.shape == (101, 61) and prior.max() == pytest.approx(1.0)
    assert np.unravel_index(int(np.argmax(prior)), prior.shape) == (50, 30)
    assert prior[50, 30 + 15] == pytest.approx(np.exp(-0.5 * (15 / (0.25 * 61)) ** 2), rel=1e-5)
