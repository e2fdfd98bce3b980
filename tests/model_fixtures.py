"""Model folders for the prediction, explanation and scope tests (plain helpers; conftest.py is the lead's).

``build_tiny_model_dir`` writes a complete model folder (weights, scope gate, card) in about a second, with no
data and no training: a randomly initialised 8-channel SmallCNN, its scope gate fitted on synthetic speckle
squares against the release step's outlier images. ``build_blob_model_dir`` hand-sets a SmallCNN so that its first stage passes bright pixels through to
the malignant logit: its Grad-CAM must peak on a bright blob, which pins the heatmap's orientation end to end.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from medapp.intake.medical_image import MedicalImage
from medapp.model.card import InputSpec, ModelCard
from medapp.model.checkpoint import save_weights
from medapp.model.preprocess import resize_to_square
from medapp.model.registry import create_model
from medapp.model.scope import fit_scope_gate
from medapp.training.release import explain_entry

TINY_SIZE = 48


def speckle_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W) float32 in [0, 1]: ultrasound-like multiplicative speckle over a smooth gradient, with a dark mass."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 0.35 + 0.25 * np.sin(xx / width * 3.1 + seed) * np.cos(yy / height * 2.3)
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    mass = ((yy - cy) / (0.12 * height)) ** 2 + ((xx - cx) / (0.18 * width)) ** 2 < 1
    base = np.where(mass, 0.08, base)
    speckle = rng.gamma(4.0, 0.25, size=(height, width)).astype(np.float32)
    return np.clip(base * speckle, 0.0, 1.0).astype(np.float32)


def medical_image(pixels: np.ndarray) -> MedicalImage:
    """Wrap (H, W) float32 [0, 1] pixels as intake would (display = gray to RGB)."""
    gray = (np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8)
    return MedicalImage(pixels=pixels.astype(np.float32), display=np.repeat(gray[..., None], 3, axis=2),
                        source_kind="synthetic", original_size=pixels.shape)


def outliers_for(spec: InputSpec) -> np.ndarray:
    """The release step's outlier squares for ``spec``, built once per input geometry and test session."""
    return _outliers(spec.size, spec.resize)


@functools.lru_cache(maxsize=4)
def _outliers(size: int, resize: str) -> np.ndarray:
    from medapp.data.outliers import outlier_squares

    return outlier_squares(InputSpec(size=size, resize=resize))


def _write_model_dir(model: torch.nn.Module, card: ModelCard, out_dir: Path, n_scope: int = 60) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    sha = save_weights(model, out_dir / "model.safetensors")
    squares = np.stack([resize_to_square(speckle_image(200 + 7 * i, 260 - 3 * i, seed=i), card.input)
                        for i in range(n_scope)])
    fit_scope_gate(model, card, squares[: n_scope * 2 // 3], squares[n_scope * 2 // 3 :], outliers_for(card.input),
                   out_dir)
    card.weights_sha256 = sha
    card.save(out_dir)
    return out_dir


def build_tiny_model_dir(out_dir: Path, *, size: int = TINY_SIZE, seed: int = 0) -> Path:
    """A complete model folder of a random 8-channel SmallCNN (pad policy, ``size`` px input)."""
    torch.manual_seed(seed)
    model = create_model("small_cnn", num_classes=3, in_chans=1, width=8)
    card = ModelCard(name="tiny_test_model", architecture="small_cnn", version="0.0.1", model_args={"width": 8},
                     input=InputSpec(size=size, channels=1, resize="pad", mean=0.5, std=0.5), temperature=1.5,
                     threshold=0.3, explain=explain_entry({}, model))
    return _write_model_dir(model, card, out_dir)


def build_blob_model_dir(out_dir: Path, *, size: int = 64, resize: str = "pad") -> Path:
    """A SmallCNN hand-set so that bright pixels (normalised > 0) drive the malignant logit through channel 0.

    Every stride-1 conv is the identity on channel 0 (centre tap 1), every stride-2 conv a 3x3 box filter on it,
    BatchNorm is the identity, so channel 0 carries ReLU(normalised input) blurred and downsampled, and the head
    gives malignant = mean of channel 0. The card names the first conv (full resolution) as the CAM layer, so
    Grad-CAM must follow the bright blob.
    """
    model = create_model("small_cnn", num_classes=3, in_chans=1, width=4)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.zero_()
                if module.stride == (2, 2):
                    module.weight[0, 0] = 1.0 / 9.0  # box filter: downsampling keeps every pixel's evidence
                else:
                    module.weight[0, 0, 1, 1] = 1.0
        linear = model.head[-1]
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[2, 0] = 1.0
    card = ModelCard(name="blob_model", architecture="small_cnn", model_args={"width": 4, "dropout": 0.0},
                     input=InputSpec(size=size, channels=1, resize=resize, mean=0.5, std=0.5))
    out = _write_model_dir(model, card, out_dir)
    raw = card.to_dict()
    raw["explain"] = {"target_layer": "features.0", "method": "gradcam", "flip_average": False}
    import json

    (out / "model_card.json").write_text(json.dumps(raw, indent=2))
    reseal(out)
    return out


def reseal(model_dir: Path) -> None:
    """After a test edits a card on purpose (as a release would), seal the folder again (medapp.model.integrity)."""
    from medapp.model.card import CARD_FILE, SCOPE_FILE, WEIGHTS_FILE
    from medapp.model.integrity import write_checksums

    write_checksums(model_dir, (CARD_FILE, WEIGHTS_FILE, SCOPE_FILE))


def edit_card(folder: Path, path: tuple[str, ...], value: object) -> None:
    """Set one (nested) field of the folder's model_card.json by hand, as a careless or hostile edit would (the
    folder is not re-sealed: see :func:`reseal`)."""
    import json

    raw = json.loads((folder / "model_card.json").read_text())
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (folder / "model_card.json").write_text(json.dumps(raw))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_predictor(tiny_model_dir: Path):  # noqa: ANN201 - medapp.serving.predict.Predictor
    from medapp.serving.predict import Predictor

    return Predictor.from_dir(tiny_model_dir)


# --- Out-of-scope images, built from real images available offline (issue 4's acceptance set) ---

SKIMAGE_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "coins", "moon", "page", "text", "rocket", "horse",
                  "clock", "brick", "grass", "gravel", "logo", "hubble_deep_field", "immunohistochemistry", "cat",
                  "cell", "colorwheel", "checkerboard", "shepp_logan_phantom")
OOD_MODALITIES = ("CR", "CT", "MR")


def _from_array(array: np.ndarray, kind: str) -> MedicalImage:
    """An RGB/gray uint8/bool/float skimage array -> MedicalImage through Pillow's luma, as intake does."""
    from PIL import Image

    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = (np.clip((arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-9), 0, 1) * 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    im = Image.fromarray(arr)
    gray = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return MedicalImage(pixels=gray, display=np.asarray(im.convert("RGB")), source_kind=kind,
                        original_size=gray.shape)


def ood_dicom_paths() -> list[Path]:
    """CR, CT and MR DICOMs from ../shared/data/dicom and pydicom's bundled test files."""
    import warnings

    import pydicom
    from pydicom.data import get_testdata_files

    from medapp.data.datasets import data_dir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # offline: pydicom warns that it cannot download its extra files
        bundled = [Path(p) for p in sorted(get_testdata_files("*"))]
    candidates = sorted((data_dir() / "dicom").glob("*.dcm")) + bundled
    out = []
    for path in candidates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                modality = pydicom.dcmread(path, stop_before_pixels=True, force=True).get("Modality")
            except Exception:  # noqa: BLE001 - unreadable headers are not part of this set
                continue
        if modality in OOD_MODALITIES:
            out.append(path)
    return out


DOPPLER_DICOMS = ("US1_UNCR.dcm", "US1_J2KI.dcm")  # pydicom's power-Doppler frame of a lymph node, two encodings


def with_colour_flow(image: MedicalImage, seed: int, share: float = 0.08) -> MedicalImage:
    """A B-mode image with a drawn colour-flow box, as a scanner exports a Doppler frame: red/blue/yellow flow
    blobs covering about ``share`` of the image, grey pixels recomputed from the colours as intake would."""
    from scipy import ndimage

    from medapp.intake.color import luma_601

    rng = np.random.default_rng(seed)
    display = image.display.copy()
    h, w = display.shape[:2]
    bh, bw = h // 2, w // 2
    y0, x0 = rng.integers(h // 8, h - bh - h // 8 + 1), rng.integers(w // 8, w - bw - w // 8 + 1)
    field = ndimage.gaussian_filter(rng.normal(size=(bh, bw)), 3)
    flow = np.abs(field) >= np.quantile(np.abs(field), 1 - 4 * share)  # the box is a quarter of the image
    box = display[y0 : y0 + bh, x0 : x0 + bw]
    box[flow & (field > 0)] = (220, 30, 20)
    box[flow & (field < 0)] = (30, 60, 230)
    box[flow & (np.abs(field) > np.quantile(np.abs(field), 1 - share))] = (250, 220, 40)
    return MedicalImage(pixels=luma_601(display), display=display, source_kind=image.source_kind,
                        original_size=image.original_size)


def doppler_frames(n_drawn: int = 8) -> list[tuple[str, MedicalImage]]:
    """Doppler-dominated frames: pydicom's real power-Doppler DICOMs and BUSI/BUS-BRA test images with a drawn
    colour-flow box (each dataset present contributes ``n_drawn // 2``)."""
    import warnings

    from medapp.data.datasets import data_dir, load_records
    from medapp.errors import MedAppError
    from medapp.intake.imaging import load_image

    frames = []
    for name in DOPPLER_DICOMS:
        path = data_dir() / "dicom" / name
        if path.is_file():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frames.append((f"doppler:{name}", load_image(path)))
    for dataset in ("busi", "busbra"):
        try:
            records = load_records(dataset, "test")
        except MedAppError:
            continue
        for i, record in enumerate(records[: n_drawn // 2]):
            frames.append((f"doppler:{dataset}:{record.image}", with_colour_flow(load_image(record.path), seed=i)))
    return frames


def out_of_scope_set(n_breastmnist: int = 20) -> tuple[list[tuple[str, MedicalImage]], list[tuple[str, str]]]:
    """(images to judge, refused-by-intake) for the scope acceptance test.

    Images: scikit-image photographs, CR/CT/MR DICOMs (through intake), Doppler-dominated frames
    (:func:`doppler_frames`), 28 px BreastMNIST images (built directly as MedicalImage, since intake may refuse
    them as too small), blank and noise images. Refused: (name, message) of
    DICOMs intake itself refuses (also never judged by the model).
    """
    import warnings

    import skimage.data

    from medapp.data.datasets import load_breastmnist
    from medapp.errors import MedAppError
    from medapp.intake.imaging import load_image

    images: list[tuple[str, MedicalImage]] = []
    refused: list[tuple[str, str]] = []
    for name in SKIMAGE_PHOTOS:
        try:
            images.append((f"skimage:{name}", _from_array(getattr(skimage.data, name)(), "photo")))
        except (Exception, pytest.skip.Exception):  # noqa: BLE001 - skimage skips samples it would download
            continue
    for path in ood_dicom_paths():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                images.append((f"dicom:{path.name}", load_image(path)))
            except MedAppError as e:
                refused.append((f"dicom:{path.name}", str(e)))
    images += doppler_frames()
    try:
        mnist = load_breastmnist("test")
        for i in range(min(n_breastmnist, len(mnist.images))):
            images.append((f"breastmnist:{i}", _from_array(mnist.images[i], "png")))
    except MedAppError:
        pass
    rng = np.random.default_rng(0)
    shape = (420, 560)
    synthetic = {
        "blank:black": np.zeros(shape), "blank:white": np.ones(shape), "blank:grey": np.full(shape, 0.5),
        "noise:uniform": rng.uniform(size=shape), "noise:gaussian": np.clip(rng.normal(0.5, 0.2, shape), 0, 1),
        "noise:salt_pepper": (rng.uniform(size=shape) > 0.5).astype(float),
        "noise:speckle_field": np.clip(rng.gamma(1.0, 0.3, shape), 0, 1),
    }
    for name, arr in synthetic.items():
        images.append((name, medical_image(arr.astype(np.float32))))
    return images, refused
