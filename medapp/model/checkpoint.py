"""Weights on disk: safetensors only (no pickled models), with a SHA-256 the card records and loading verifies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file, save_file
from torch import nn

if TYPE_CHECKING:
    from .card import ModelCard

from ..errors import ModelLoadError
from ..settings import MODEL_DIR_ENV, MODELS_DIR, get_settings
from .integrity import sha256_file, verify_checksums
from .registry import unwrap

__all__ = ["default_model_dir", "load_model", "load_weights", "save_weights", "sha256_file"]


def save_weights(model: nn.Module, path: str | Path) -> str:
    """Write the state dict as safetensors; returns its SHA-256."""
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    save_file(state, str(path))
    return sha256_file(path)


def load_weights(model: nn.Module, path: str | Path, expected_sha256: str | None = None) -> nn.Module:
    """Load safetensors weights into ``model``, refusing a file whose SHA-256 differs from the card's."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"weights file {path} not found; the model folder is incomplete")
    if expected_sha256:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ModelLoadError(
                f"weights file {path.name} has SHA-256 {actual[:12]}…, but the model card expects "
                f"{expected_sha256[:12]}…; the file was changed or corrupted — reinstall the model"
            )
    try:
        state = load_file(str(path))
        unwrap(model).load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as e:
        raise ModelLoadError(f"weights in {path} do not fit the architecture in the card: {e}") from e
    return model


def load_model(model_dir: str | Path) -> tuple[ModelCard, nn.Module]:
    """A model folder's card and its eval-mode network, weights verified against the card's SHA-256.

    The one loader for serving and evaluation, so both run exactly the weights the card vouches for, under a card
    that matches the folder's ``SHA256SUMS`` (:mod:`medapp.model.integrity`).
    """
    from .card import CARD_FILE, WEIGHTS_FILE, ModelCard
    from .registry import create_model

    model_dir = Path(model_dir)
    if (model_dir / CARD_FILE).is_file():  # first: an edited card is refused as edited, whatever it now says
        verify_checksums(model_dir, (CARD_FILE, WEIGHTS_FILE))
    card = ModelCard.load(model_dir)
    if not card.weights_sha256:
        raise ModelLoadError(f"the model card in {model_dir} records no weights_sha256, so the weights cannot be "
                             "verified; re-export the model with `python -m medapp train`")
    try:
        model = create_model(card.architecture, num_classes=len(card.class_names), in_chans=card.input.channels,
                             **card.model_args)
    except (ValueError, TypeError) as e:
        raise ModelLoadError(f"cannot build architecture {card.architecture!r} from the card in {model_dir}: "
                             f"{e}") from e
    load_weights(model, model_dir / WEIGHTS_FILE, card.weights_sha256)
    return card, model.eval()


def default_model_dir() -> Path:
    """``$MEDAPP_MODEL_DIR``, or the single folder under ``models/`` that holds a model card."""
    from .card import CARD_FILE

    chosen = get_settings().model_dir
    if chosen is not None:
        return chosen
    found = sorted(p.parent for p in MODELS_DIR.glob(f"*/{CARD_FILE}")) if MODELS_DIR.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelLoadError(f"no shipped model under {MODELS_DIR} (expected models/<name>/{CARD_FILE}); "
                             f"train one, or point {MODEL_DIR_ENV} or --model at a model folder")
    names = ", ".join(p.name for p in found)
    raise ModelLoadError(f"several models under {MODELS_DIR} ({names}); choose one with --model or {MODEL_DIR_ENV}")
