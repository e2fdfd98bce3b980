"""Site profiles: a hospital's own calibration and operating threshold for one model, fitted on its local cases.

Across hospitals a model's ranking of cases holds up far better than its probabilities and its threshold do
(issue 11: specificity at a frozen threshold fell from 0.77 to 0.41-0.63 at external sites in one published
model). A profile re-maps P(malignant) with Platt scaling on its log-odds (slope and intercept: the intercept
absorbs a site's prevalence and gain) and chooses the threshold by the shipped card's own rule, on local cases.

A profile lives beside the model (``<model dir>/profiles/<name>.json``), never edits the card, records the
weights' SHA-256 so that it cannot be applied to another model, and records who fitted it, when and on how many
cases (counts only, no patient data).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SiteProfileError
from .calibrate import apply_platt, choose_threshold, fit_platt
from .card import ModelCard

PROFILES_DIR = "profiles"
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# The threshold rule needs this many local cancers: with 20, the 0.90-sensitivity threshold is set by the
# second-lowest-scored cancer, so one unusual case cannot set it alone, and with fewer than 20 non-cancers the
# calibration intercept rests on a handful of cases.
MIN_MALIGNANT = 20
MIN_NON_MALIGNANT = 20
# Below this many cancers the sensitivity reached at the fitted threshold is known only to about +/-0.1 (95% CI).
ADVISED_MALIGNANT = 50


@dataclass(frozen=True)
class SiteProfile:
    """One site's calibration (Platt slope and intercept on top of the card's) and operating threshold."""

    name: str
    model_name: str
    weights_sha256: str
    slope: float
    intercept: float
    threshold: float
    threshold_rule: str
    n_cases: int
    n_malignant: int
    n_patients: int
    created_at: str
    created_by: str
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """What every result fitted by this profile says about itself."""
        return f"calibrated for site {self.name} on {self.n_cases} local cases"

    def apply(self, probs: np.ndarray, malignant_index: int) -> np.ndarray:
        """The card's calibrated (N, C) probabilities -> this site's."""
        return apply_platt(probs, malignant_index, self.slope, self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def renamed(self, name: str) -> SiteProfile:
        """The same fit under the name the site chose when saving it."""
        return dataclasses.replace(self, name=check_profile_name(name))

    def save(self, model_dir: str | Path) -> Path:
        """Write ``profiles/<name>.json`` beside the model; an existing profile of that name is replaced whole."""
        path = profile_path(model_dir, self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)  # never a half-written profile
        return path


def check_profile_name(name: str) -> str:
    if not PROFILE_NAME.match(name or ""):
        raise SiteProfileError(f"site profile name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or "
                               "'-', starting with a letter or digit (it becomes a file name)")
    return name


def profile_path(model_dir: str | Path, name: str) -> Path:
    return Path(model_dir) / PROFILES_DIR / f"{check_profile_name(name)}.json"


def list_profiles(model_dir: str | Path) -> list[str]:
    """Names of the profiles saved beside a model, sorted."""
    folder = Path(model_dir) / PROFILES_DIR
    return sorted(p.stem for p in folder.glob("*.json") if PROFILE_NAME.match(p.stem)) if folder.is_dir() else []


def load_profile(model_dir: str | Path, name: str, card: ModelCard) -> SiteProfile:
    """The named profile of this model, refused when it was fitted for other weights or is malformed."""
    path = profile_path(model_dir, name)
    if not path.is_file():
        known = list_profiles(model_dir)
        raise SiteProfileError(f"no site profile {name!r} for model {card.name} (known: "
                               f"{', '.join(known) or 'none'}); fit one with `python -m medapp validate ... "
                               f"--profile {name}`")
    try:
        data = json.loads(path.read_text())
        profile = SiteProfile(**{k: data[k] for k in (f.name for f in dataclasses.fields(SiteProfile)) if k in data})
    except (json.JSONDecodeError, TypeError, KeyError, OSError) as e:
        raise SiteProfileError(f"site profile {path} is malformed ({e}); fit it again") from e
    numbers = (profile.slope, profile.intercept, profile.threshold)
    if not isinstance(profile.weights_sha256, str) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise SiteProfileError(f"site profile {path} is malformed (a field of the wrong type); fit it again")
    if profile.weights_sha256 != card.weights_sha256:
        raise SiteProfileError(f"site profile {name!r} was fitted for model weights {profile.weights_sha256[:12]}…, "
                               f"not these ({card.weights_sha256[:12]}…, {card.name}); a profile belongs to one "
                               "model: validate this model locally and fit a new one")
    if not (0.0 < profile.threshold < 1.0 and np.isfinite(profile.slope) and profile.slope > 0
            and np.isfinite(profile.intercept)):
        raise SiteProfileError(f"site profile {path} holds invalid values (threshold {profile.threshold}, slope "
                               f"{profile.slope}, intercept {profile.intercept}); fit it again")
    return profile


def check_enough_cases(n_malignant: int, n_non_malignant: int) -> list[str]:
    """Refuse a local set too small for the threshold rule; return warnings for one that is small."""
    if n_malignant < MIN_MALIGNANT or n_non_malignant < MIN_NON_MALIGNANT:
        raise SiteProfileError(
            f"too few local cases to fit a site profile: {n_malignant} malignant and {n_non_malignant} benign or "
            f"normal, at least {MIN_MALIGNANT} and {MIN_NON_MALIGNANT} are needed (the threshold is chosen to catch "
            f"90% of cancers, which with fewer than {MIN_MALIGNANT} cancers is set by a single case)")
    if n_malignant < ADVISED_MALIGNANT:
        return [(f"only {n_malignant} malignant cases: the sensitivity reached at this threshold is uncertain by "
                 f"about +/-0.1 or more; collect at least {ADVISED_MALIGNANT} and refit")]
    return []


def fit_site_profile(name: str, card: ModelCard, probs: np.ndarray, is_malignant: np.ndarray, *, n_patients: int,
                     created_by: str, created_at: str, min_sensitivity: float) -> SiteProfile:
    """Fit Platt scaling and the card's threshold rule on the card-calibrated ``probs`` (N, C) of local cases."""
    check_profile_name(name)
    y = np.asarray(is_malignant, dtype=bool)
    notes = check_enough_cases(int(y.sum()), int((~y).sum()))
    m = card.malignant_index
    slope, intercept = fit_platt(probs[:, m], y)
    if not (slope > 0 and np.isfinite(intercept)):
        raise SiteProfileError(f"the local cases do not support a calibration (fitted slope {slope:.3f}): the "
                               "model does not rank these cancers above the other cases; do not use it here")
    p_site = apply_platt(probs, m, slope, intercept)[:, m]
    threshold = choose_threshold(p_site, y, min_sensitivity)
    threshold = float(np.clip(threshold, 1e-6, 1 - 1e-6))
    return SiteProfile(
        name=name, model_name=card.name, weights_sha256=card.weights_sha256, slope=slope, intercept=intercept,
        threshold=threshold,
        threshold_rule=f"highest threshold on site-calibrated P(malignant) with local sensitivity >= "
                       f"{min_sensitivity:.2f} (the card's rule, on local cases)",
        n_cases=len(y), n_malignant=int(y.sum()), n_patients=int(n_patients), created_at=created_at,
        created_by=created_by, notes=notes)


def min_sensitivity_of(card: ModelCard) -> float:
    """The sensitivity the card's threshold was chosen for (0.90 when the card does not say)."""
    return float(card.config.get("min_sensitivity", 0.90))
