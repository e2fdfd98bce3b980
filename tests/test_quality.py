"""Image-quality flags: table-driven on synthetic images with hand-checked statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_fixtures import doppler_frames, medical_image, speckle_image, with_colour_flow

from medapp.model.card import QualityLimits
from medapp.serving.quality import QualityFlag, assess_quality, describe_flag

LIMITS = QualityLimits()  # what a newly trained model's card holds


def _white_heavy() -> np.ndarray:
    img = speckle_image(300, 400)
    img[:, :100] = 1.0  # a quarter at full white
    return img


def _black_heavy() -> np.ndarray:
    img = speckle_image(300, 400)
    img[:, :360] = 0.0  # 90% at full black
    return img


@pytest.mark.parametrize(
    ("name", "pixels", "flags"),
    [
        ("ultrasound-like", speckle_image(300, 400), []),
        ("thumbnail", speckle_image(28, 28), [QualityFlag.TOO_SMALL]),
        ("just under min side", speckle_image(127, 400), [QualityFlag.TOO_SMALL]),
        ("at min side", speckle_image(128, 400), []),
        ("blank black", np.zeros((300, 400), np.float32), [QualityFlag.NEARLY_CONSTANT]),
        ("blank grey", np.full((300, 400), 0.5, np.float32), [QualityFlag.NEARLY_CONSTANT]),
        ("faint ramp", np.tile(np.linspace(0.5, 0.55, 400, dtype=np.float32), (300, 1)),
         [QualityFlag.NEARLY_CONSTANT]),
        ("white clipped", _white_heavy(), [QualityFlag.SATURATED]),
        ("black clipped", _black_heavy(), [QualityFlag.SATURATED]),
        ("tiny and blank", np.zeros((28, 28), np.float32), [QualityFlag.TOO_SMALL, QualityFlag.NEARLY_CONSTANT]),
    ],
)
def test_quality_flags(name: str, pixels: np.ndarray, flags: list[QualityFlag]) -> None:
    assert assess_quality(pixels, LIMITS) == flags, name


def test_colour_flow_flagged_and_grey_overlays_are_not() -> None:
    plain = medical_image(speckle_image(300, 400))
    assert assess_quality(plain.pixels, LIMITS, plain.display) == []
    doppler = with_colour_flow(plain, seed=0)
    assert assess_quality(doppler.pixels, LIMITS, doppler.display) == [QualityFlag.COLOUR_FLOW]
    assert assess_quality(doppler.pixels, LIMITS) == []  # without the colours there is nothing to see
    marked = plain.display.copy()
    marked[10:14, 10:60] = (0, 255, 0)  # a green caliper line: 0.2% of the pixels
    assert assess_quality(plain.pixels, LIMITS, marked) == []
    assert "Doppler" in describe_flag("colour_flow", LIMITS) and "B-mode" in describe_flag("colour_flow", LIMITS)


def test_real_and_drawn_doppler_frames_flagged(busi_dir: Path) -> None:
    frames = doppler_frames()
    assert len(frames) >= 6
    missed = [name for name, im in frames if QualityFlag.COLOUR_FLOW not in assess_quality(im.pixels, LIMITS,
                                                                                             im.display)]
    assert not missed


def test_flag_wording_says_what_to_do() -> None:
    assert "28x28 px" in describe_flag("too_small", LIMITS, (28, 28))
    assert "at least 128 px" in describe_flag(QualityFlag.TOO_SMALL, LIMITS)
    with pytest.raises(ValueError, match="choose one of: too_small"):
        describe_flag("blurry", LIMITS)


def test_rgb_refused() -> None:
    with pytest.raises(ValueError, match=r"\(H, W\) grayscale"):
        assess_quality(np.zeros((10, 10, 3), np.float32), LIMITS)


def test_limits_come_from_the_card() -> None:
    """A card with a stricter min_side flags an image the default limits accept."""
    pixels = np.random.default_rng(0).uniform(0.2, 0.8, (200, 300)).astype(np.float32)
    assert assess_quality(pixels, LIMITS) == []
    assert assess_quality(pixels, QualityLimits(min_side=256)) == [QualityFlag.TOO_SMALL]
    assert "at least 256 px" in describe_flag("too_small", QualityLimits(min_side=256))


def test_refusal_advice_says_how_far_and_what_to_try():
    from medapp.serving.quality import refusal_advice

    near = refusal_advice(1.35, 1.33, [])
    assert "Borderline" in near and "2% over" in near and "Another view" in near and "report" in near
    far = refusal_advice(40.0, 10.0, [])
    assert "Far outside" in far and "4.0 times" in far
    assert "Fix the image problem" in refusal_advice(0.5, 1.0, ["saturated"])
