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

from ..choices import Choice
from ..errors import ModelLoadError
from .integrity import write_checksums

CARD_FILE = "model_card.json"
WEIGHTS_FILE = "model.safetensors"
SCOPE_FILE = "scope.safetensors"
OUTLINE_FILE = "lesion_outline.safetensors"  # the lesion-outline decoder, when the model has one
METRICS_FILE = "metrics.json"
CROSS_SITE_FILE = "cross_site.json"


def metrics_filename(dataset: str, split: str) -> str:
    """``metrics.json`` for the BUSI test split (the dashboard's first page); a distinct name for anything else."""
    return METRICS_FILE if (dataset, split) == ("busi", "test") else f"metrics_{dataset}_{split}.json"


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
    "- BUSI: one hospital (Baheya, Cairo), images from 2018, 600 women aged 25-75: other scanners, presets and "
    "populations may behave differently.\n"
    "- Near-duplicate images of the same lesion exist, some across the official splits, which flatters test scores; "
    "one image appears twice with different labels.\n"
    "- Some images carry burned-in annotations or calipers that a model can learn instead of the lesion.\n"
    "- 'Normal' images are few (133 of 780), and the official test split has 156 images (42 malignant), so every "
    "number has a wide confidence interval."
)


# BUS-BRA (Gomez-Flores et al., Medical Physics 2024; ../shared/data/README.md).
BUSBRA_KNOWN_FLAWS = (
    "- BUS-BRA: one hospital (National Cancer Institute, Rio de Janeiro), four scanners, two of them with only a few "
    "dozen images; no normal images, so it teaches nothing about normal tissue.\n"
    "- Its images are the dataset's own crops around the lesion, while BUSI's are whole screens: the crop itself "
    "differs between the sites, and many BUS-BRA images carry burned-in text and calipers."
)
KNOWN_FLAWS = {"busi": BUSI_KNOWN_FLAWS, "busbra": BUSBRA_KNOWN_FLAWS}


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
class QualityLimits:
    """Image-quality checks (:mod:`medapp.serving.quality`): an image failing one is outside intended use.

    ``min_side`` px; ``min_std`` of pixels in [0, 1]; share of pixels clipped white / black before "saturated".
    Set against BUSI (780 images: shortest side 190-716 px, pixel std 0.11-0.28, at most 2% of pixels at full
    white and at most 48% at full black); each limit sits well outside that range. ``max_colour_share``: share of
    pixels whose colour channels differ by ``colour_level`` or more before "colour flow": at most 0.73% in BUSI
    (coloured marks on 7 of 780 images) and 0 in BUS-BRA's 1,508; a power-Doppler frame (pydicom's
    ``US1_UNCR.dcm``) has 5.1%.
    """

    min_side: int = 128
    min_std: float = 0.03
    max_white_share: float = 0.10
    max_black_share: float = 0.85
    white_level: float = 0.99
    black_level: float = 0.01
    max_colour_share: float = 0.02
    colour_level: int = 60


@dataclass
class ServingPolicy:
    """The numbers besides temperature and threshold that change what a clinician sees for this model.

    ``uncertainty_limit``: "low confidence" when P(malignant) moves this much (std) across the test-time views;
    ``threshold_margin``: ... or sits this close to the operating threshold. ``normal_ceiling``: the "normal" wording
    is used only below this P(malignant) (the top of the BI-RADS 4A band), so a sizeable malignancy estimate is
    never hidden behind the word "normal". ``quality``: the image checks.
    """

    uncertainty_limit: float = 0.10
    threshold_margin: float = 0.05
    normal_ceiling: float = 0.10
    quality: QualityLimits = field(default_factory=QualityLimits)

    def __post_init__(self) -> None:
        if isinstance(self.quality, dict):
            self.quality = QualityLimits(**self.quality)
        for name in ("uncertainty_limit", "threshold_margin", "normal_ceiling"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"serving.{name} must be in [0, 1], got {getattr(self, name)}")


# Fields a card must state: without them a model would be served on silent defaults (a card without "threshold"
# was once served at 0.5).
REQUIRED_FIELDS = ("name", "architecture", "model_args", "class_names", "input", "temperature", "threshold",
                   "scope", "explain", "tta_headline", "serving", "weights_sha256")


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
    serving: ServingPolicy = field(default_factory=ServingPolicy)
    intended_use: str = ""
    out_of_scope_use: str = ""
    training_data: str = ""
    # the sites and scanners the model has seen: [{dataset, site, train, val, devices: {device: images}}]
    training_sites: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    weights_sha256: str = ""
    scope_sha256: str = ""
    # the lesion-outline decoder on this model's encoder, when trained (medapp.training.train_outline): file,
    # sha256, taps, threshold, validation Dice, config, command; empty: the model draws no outline
    outline: dict[str, Any] = field(default_factory=dict)

    @property
    def malignant_index(self) -> int:
        return self.class_names.index(MALIGNANT)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """A card from its JSON form, refusing missing required fields and values out of range."""
        missing = [k for k in REQUIRED_FIELDS if k not in data]
        if missing:
            raise ValueError(f"required field(s) missing: {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["input"] = InputSpec(**data["input"])
        kwargs["serving"] = ServingPolicy(**data["serving"])
        card = cls(**kwargs)
        card.validate()
        return card

    def validate(self) -> None:
        """Range checks on what serving relies on; raises ValueError naming the field."""
        if MALIGNANT not in self.class_names:
            raise ValueError(f"class_names {self.class_names} lack {MALIGNANT!r}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"threshold must be a probability strictly between 0 and 1, got {self.threshold}")
        if not float(self.temperature) > 0.0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        for key in ("target_layer", "method"):
            if not self.explain.get(key):
                raise ValueError(f"explain.{key} is missing (the heatmap's layer and default method)")
        for key in ("layers", "threshold"):
            if key not in self.scope:
                raise ValueError(f"scope.{key} is missing (the scope gate was not fitted)")

    def save(self, model_dir: str | Path) -> Path:
        """Write the card and re-seal the folder (``SHA256SUMS`` over card, weights and scope gate), so that only
        medapp's own writes (train, calibrate, evaluate --update-model) leave a folder that loads."""
        path = Path(model_dir) / CARD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        write_checksums(path.parent, (CARD_FILE, WEIGHTS_FILE, SCOPE_FILE, OUTLINE_FILE))
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


def known_flaws(card: ModelCard) -> str:
    """The known flaws of every dataset the model was trained on (BUSI for a card that names no sites)."""
    datasets = [s["dataset"] for s in card.training_sites] or ["busi"]
    return "\n".join(KNOWN_FLAWS[d] for d in dict.fromkeys(datasets) if d in KNOWN_FLAWS)
