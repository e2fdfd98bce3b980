"""Images that are not breast ultrasound, for teaching the scope gate where "breast ultrasound" ends.

Outlier exposure (Hendrycks, Mazeika & Dietterich 2019, "Deep Anomaly Detection with Outlier Exposure"): a gate
fitted on in-scope images alone learns the hospitals it saw (a BUSI-only gate passed 4% of BUS-BRA's images,
docs/design_choices.md); one that also sees what lies outside can draw its line between ultrasound and everything
else instead of around one site.

Everything here is offline and installed with the project's own packages, and deliberately disjoint from the
out-of-scope images the tests judge the gate on (``tests/model_fixtures.py``: scikit-image's other photographs,
pydicom's and ``shared/data/dicom``'s CR, CT and MR files, BreastMNIST, blank and noise images), so that the
tests measure how the gate generalises to kinds of image it was not shown:

- photographs and pictures: scikit-image's ``motorcycle_left``/``_right``, ``microaneurysms``, ``retina``, 40 of
  its ``lfw_subset`` faces; matplotlib's ``grace_hopper``, ``Minduka_Present_Blue_Pack``, ``logo2``;
- other modalities and maps: matplotlib's MR slice ``s1045.ima`` and elevation map ``jacksboro_fault_dem``,
  pydicom's nuclear-medicine ``JPEG2000.dcm`` and secondary-capture ``image_dfl.dcm``;
- drawn families (seeded): smooth random fields (MR/CT-like soft texture), ellipse phantoms on black (CT-like),
  bright smooth bodies with bars (radiograph-like), dense smooth regions on black (mammogram-like), printed text,
  gratings, shapes on gradients, low-contrast white noise.

Each real image also gives random crops, so a gate cannot key on one picture's framing.
"""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..model.card import InputSpec
from ..model.preprocess import resize_to_square

OUTLIER_SIZE = (256, 256)
CROPS_PER_IMAGE = 6
DRAWN_PER_FAMILY = 30


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3:  # colour -> luma (BT.601, as intake's Pillow "L")
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114])
    lo, hi = np.percentile(a, [0.5, 99.5])
    return np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1).astype(np.float32)


def _real_images() -> Iterator[tuple[str, np.ndarray]]:
    """(name, image) of the installed pictures above; a source missing from this installation is skipped."""
    import matplotlib
    import skimage
    from PIL import Image

    skimage_dir = Path(skimage.__file__).parent / "data"
    mpl_dir = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
    for name in ("motorcycle_left.png", "motorcycle_right.png", "microaneurysms.png", "retina.jpg"):
        if (skimage_dir / name).is_file():
            yield f"skimage:{name}", np.asarray(Image.open(skimage_dir / name))
    if (skimage_dir / "lfw_subset.npy").is_file():
        for i, face in enumerate(np.load(skimage_dir / "lfw_subset.npy")[:40]):
            yield f"skimage:lfw_{i}", face
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        if (mpl_dir / name).is_file():
            yield f"matplotlib:{name}", np.asarray(Image.open(mpl_dir / name))
    if (mpl_dir / "s1045.ima.gz").is_file():
        with gzip.open(mpl_dir / "s1045.ima.gz") as f:
            yield "matplotlib:s1045_mri", np.frombuffer(f.read(), np.uint16).reshape(256, 256)
    if (mpl_dir / "jacksboro_fault_dem.npz").is_file():
        with np.load(mpl_dir / "jacksboro_fault_dem.npz") as dem:
            yield "matplotlib:elevation", dem["elevation"]
    yield from _pydicom_images()


def _pydicom_images() -> Iterator[tuple[str, np.ndarray]]:
    import pydicom
    from pydicom.data import get_testdata_file

    for name in ("JPEG2000.dcm", "image_dfl.dcm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # offline: pydicom warns that it cannot download its extra files
            try:
                path = get_testdata_file(name)
                if path is not None:
                    yield f"pydicom:{name}", pydicom.dcmread(path).pixel_array
            except Exception:  # noqa: BLE001 - a file this pydicom lacks or cannot decode is simply not used
                continue


def _random_crops(image: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The whole image and ``n - 1`` random crops of 40-90% of each side."""
    h, w = image.shape
    out = [image]
    for _ in range(n - 1):
        ch, cw = int(h * rng.uniform(0.4, 0.9)), int(w * rng.uniform(0.4, 0.9))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = image[y : y + ch, x : x + cw]
        out.append(crop[:, ::-1] if rng.uniform() < 0.5 else crop)
    return out


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return ndimage.gaussian_filter(rng.normal(size=shape), sigma=rng.uniform(2, 20))


def _phantom(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]] / max(shape)
    img = np.zeros(shape)
    for _ in range(rng.integers(3, 9)):
        cy, cx, ry, rx = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4)
        img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = rng.uniform(0.2, 1.0)
    return ndimage.gaussian_filter(img, 1.0) + rng.normal(0, 0.02, shape)


def _radiograph(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]] / max(shape)
    body = np.exp(-(((xx - 0.5) / rng.uniform(0.2, 0.4)) ** 2 + ((yy - 0.5) / rng.uniform(0.3, 0.6)) ** 2))
    for _ in range(rng.integers(2, 6)):  # bones: bright bars
        angle, off, width = rng.uniform(0, np.pi), rng.uniform(-0.3, 0.3), rng.uniform(0.02, 0.06)
        dist = np.abs((xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle) - off)
        body = body + 0.5 * (dist < width)
    return ndimage.gaussian_filter(body, 2.0)


def _mammogram(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]] / max(shape)
    side = 0.0 if rng.uniform() < 0.5 else 1.0
    breast = ((xx - side) / rng.uniform(0.5, 0.8)) ** 2 + ((yy - 0.5) / rng.uniform(0.35, 0.5)) ** 2 <= 1
    tissue = 0.5 + 0.25 * ndimage.gaussian_filter(rng.normal(size=shape), sigma=rng.uniform(3, 8)) * 8
    return breast * np.clip(tissue, 0, 1)


def _text(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageDraw

    ink, paper = (0, 255) if rng.uniform() < 0.5 else (255, 0)
    im = Image.new("L", (shape[1], shape[0]), paper)
    draw = ImageDraw.Draw(im)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789"))
    for y in range(4, shape[0] - 10, int(rng.integers(10, 16))):
        draw.text((4, y), "".join(rng.choice(letters, 60)), fill=ink)
    return np.asarray(im, dtype=np.float64)


def _grating(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 40)
    return np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)


def _shapes(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]] / max(shape)
    img = rng.uniform(0, 0.5) * xx + rng.uniform(0, 0.5) * yy
    for _ in range(rng.integers(2, 8)):
        y0, x0 = rng.uniform(0, 0.8, 2)
        img[(yy > y0) & (yy < y0 + rng.uniform(0.05, 0.3)) & (xx > x0) & (xx < x0 + rng.uniform(0.05, 0.3))] = \
            rng.uniform(0, 1)
    return img


def _faint_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.uniform(0.3, 0.7) + rng.uniform(0.04, 0.15) * rng.normal(size=shape)


DRAWN_FAMILIES: dict[str, Callable[[np.random.Generator, tuple[int, int]], np.ndarray]] = {
    "smooth_field": _smooth_field, "phantom": _phantom, "radiograph": _radiograph, "mammogram": _mammogram,
    "text": _text, "grating": _grating, "shapes": _shapes, "faint_noise": _faint_noise,
}


def outlier_images(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """(name, (H, W) float32 image in [0, 1]) of every outlier: real pictures with their crops, then drawn ones."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, np.ndarray]] = []
    for name, image in _real_images():
        gray = _unit(image)
        if gray.ndim != 2 or min(gray.shape) < 8:
            continue
        out += [(f"{name}#{i}", crop) for i, crop in enumerate(_random_crops(gray, CROPS_PER_IMAGE, rng))]
    for family, draw in DRAWN_FAMILIES.items():
        out += [(f"drawn:{family}_{i}", _unit(draw(rng, OUTLIER_SIZE))) for i in range(DRAWN_PER_FAMILY)]
    return out


def outlier_squares(spec: InputSpec) -> np.ndarray:
    """Every outlier as the model's (N, S, S) float32 input square, exactly as serving prepares an image."""
    return np.stack([resize_to_square(image, spec) for _, image in outlier_images()]).astype(np.float32)
