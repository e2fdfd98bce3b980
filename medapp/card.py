"""The model card: the contract a shipped model carries with it.

Training writes it, and evaluation, the CLI and the app read preprocessing, temperature and thresholds from it,
so a number like the input size or the operating threshold lives in exactly one place (no train/serve skew).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .choices import Choice
from .errors import ModelLoadError

CARD_FILE = "model_card.json"
WEIGHTS_FILE = "model.safetensors"
SCOPE_FILE = "scope.safetensors"
METRICS_FILE = "metrics.json"

# Class order used everywhere (index = model output). Malignant probability is the headline output.
CLASS_NAMES: tuple[str, ...] = ("normal", "benign", "malignant")
MALIGNANT = "malignant"


INTENDED_USE = (
    "A second opinion for a clinician reading a single 2-D B-mode breast ultrasound image of a focal lesion or "
    "normal tissue: the calibrated probability that the lesion is malignant, benign and normal probabilities, a "
    "likelihood category, and a heatmap of the regions that drove the estimate. Decision support only; the "
    "clinician makes the diagnosis."
)
OUT_OF_SCOPE_USE = (
    "Not a diagnosis and not a BI-RADS assessment. Not for screening without a clinician, for other organs or "
    "modalities (mammography, MRI, CT, radiographs), for Doppler, elastography or 3-D volumes, for images with "
    "heavy annotations, for patients under 25 or for men (none in the training data), or for any decision "
    "without a radiologist's review."
)

# What every BUSI-trained model inherits (Al-Dhabyani et al., Data in Brief 28:104863, 2020; flaws published by
# Pawlowska et al., Data in Brief 2023; see ../shared/data/README.md).
BUSI_KNOWN_FLAWS = (
    "- One hospital (Baheya, Cairo), images from 2018, 600 women aged 25-75: other scanners, presets and "
    "populations may behave differently.\n"
    "- Near-duplicate images of the same lesion exist, some across the official splits, which flatters test scores; "
    "one image appears twice with different labels.\n"
    "- Some images carry burned-in annotations or calipers that a model can learn instead of the lesion.\n"
    "- 'Normal' images are few (133 of 780), and the official test split has 156 images (42 malignant), so every "
    "number has a wide confidence interval."
)


class ResizePolicy(Choice):
    """How a non-square image becomes the square model input."""

    PAD = "pad"  # keep aspect ratio, letterbox with black (ultrasound background is black)
    CROP = "crop"  # keep aspect ratio, centre square crop (MedMNIST's choice)
    STRETCH = "stretch"  # ignore aspect ratio


@dataclass
class InputSpec:
    """What the network expects: (channels, size, size) float32, (x - mean) / std of [0, 1] grayscale."""

    size: int = 224
    channels: int = 1
    resize: str = ResizePolicy.PAD.value
    mean: float = 0.5
    std: float = 0.5

    def __post_init__(self) -> None:
        self.resize = ResizePolicy.parse(str(self.resize)).value
        if self.size < 8:
            raise ValueError(f"input size must be at least 8 px, got {self.size}")
        if self.std <= 0:
            raise ValueError(f"normalisation std must be positive, got {self.std}")


@dataclass
class ModelCard:
    """Everything needed to rebuild, preprocess for, calibrate and judge a model (see ../shared/STYLE.md)."""

    name: str
    architecture: str
    version: str = "0.1.0"
    model_args: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    input: InputSpec = field(default_factory=InputSpec)
    temperature: float = 1.0
    threshold: float = 0.5
    threshold_rule: str = ""
    scope: dict[str, Any] = field(default_factory=dict)
    # how heatmaps are made for this model (CAM target layer(s), default method, view averaging); see medapp.explain
    explain: dict[str, Any] = field(default_factory=dict)
    # True: the probabilities are softmax(mean over those views' logits / T), temperature and threshold fitted on
    # that mean; False: the unaugmented view's alone
    tta_headline: bool = False
    intended_use: str = ""
    out_of_scope_use: str = ""
    training_data: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    weights_sha256: str = ""
    scope_sha256: str = ""

    @property
    def malignant_index(self) -> int:
        return self.class_names.index(MALIGNANT)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["input"] = InputSpec(**data.get("input", {}))
        return cls(**kwargs)

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / CARD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelCard:
        path = Path(model_dir) / CARD_FILE
        if not path.is_file():
            raise ModelLoadError(
                f"no {CARD_FILE} in {Path(model_dir)}; expected a model folder with {CARD_FILE} and {WEIGHTS_FILE}"
            )
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ModelLoadError(f"{path} is not a valid model card: {e}") from e
