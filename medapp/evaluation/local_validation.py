"""Local validation: score a hospital's own labelled cases exactly as the app does, say plainly whether the model
can be used there, and fit a site profile (:mod:`medapp.model.site_profile`) when it needs one.

Every readable image goes through the :class:`~medapp.serving.predict.Predictor` (the app's path: the same
test-time views, scope gate and quality checks); metrics are over the images the app would report on (in scope),
with patient-level bootstrap CIs, since one patient's images are not independent evidence. With a hold-out
fraction, the profile is fitted on some patients and judged on the others, which is the honest view of what it
will do; without one, a profile's figures are on the cases it was fitted on and are reported as such.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..data.local_cases import CaseProblem, LocalCases
from ..errors import MedAppError, SiteProfileError
from ..intake.imaging import load_image
from ..model.card import ModelCard
from ..model.site_profile import SiteProfile, fit_site_profile, min_sensitivity_of
from ..serving.likelihood import CATEGORIES, categorize_likelihood
from ..serving.predict import Predictor
from .metrics import (
    binary_auc,
    bootstrap_auc_ci,
    expected_calibration_error,
    grouped_bootstrap_ci,
    operating_point,
    reliability_bins,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (images done, images in all)
# Verdict levels, mildest first.
OK, CAUTION, DO_NOT_USE = "ok", "caution", "do_not_use"
ECE_LIMIT = 0.10  # beyond this, stated probabilities are off by more than 10 points on average
SCOPE_LIMIT = 0.90  # the shipped model passes >= 95% of its test sets; below 90% here the site's images differ
AUC_LIMIT = 0.80


@dataclass
class ScoredCases:
    """What the app showed for each readable case: card-calibrated probabilities, scope, and the labels."""

    images: list[str]
    labels: np.ndarray  # str
    patients: np.ndarray  # str
    devices: np.ndarray  # str
    probs: np.ndarray  # (N, C), the card's calibration
    in_scope: np.ndarray  # bool
    reasons: list[list[str]]
    problems: list[CaseProblem]  # the given rows that could not be scored (listed, never dropped)
    source: str = ""


def score_cases(predictor: Predictor, cases: LocalCases, *, batch_size: int = 16,
                progress: Progress | None = None) -> ScoredCases:
    """Decode and score every case in batches (the card's calibration, never a profile); an unreadable image
    becomes a problem row. Only one batch of decoded images is in memory at a time."""
    if predictor.profile is not None:
        raise SiteProfileError("local validation scores with the shipped calibration; load the model without a "
                               "site profile")
    kept, probs, in_scope, reasons = [], [], [], []
    problems = list(cases.problems)
    total = len(cases.cases)
    for start in range(0, total, batch_size):
        batch, images = [], []
        for case in cases.cases[start : start + batch_size]:
            try:
                images.append(load_image(case.read()))
                batch.append(case)
            except (MedAppError, OSError) as e:
                problems.append(CaseProblem(case.image, f"unreadable: {e}"))
        for case, pred in zip(batch, predictor.predict_batch(images, explain=False), strict=True):
            kept.append(case)
            probs.append([pred.probabilities[c] for c in predictor.card.class_names])
            in_scope.append(pred.in_scope)
            reasons.append(list(pred.out_of_scope_reasons))
        if progress is not None:
            progress(min(start + batch_size, total), total)
    n_classes = len(predictor.card.class_names)
    return ScoredCases(
        images=[c.image for c in kept], labels=np.array([c.label for c in kept], dtype=object),
        patients=np.array([c.patient for c in kept], dtype=object),
        devices=np.array([c.device for c in kept], dtype=object),
        probs=np.array(probs, dtype=np.float64).reshape(-1, n_classes), in_scope=np.array(in_scope, dtype=bool),
        reasons=reasons, problems=problems, source=cases.source)


def patient_holdout(patients: np.ndarray, is_malignant: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of the hold-out cases: about ``fraction`` of the patients, drawn separately among patients with
    a cancer and those without (so both sides have cancers); a patient is never split."""
    if not 0.0 < fraction < 1.0:
        raise SiteProfileError(f"--holdout must be a fraction between 0 and 1 (e.g. 0.5), got {fraction}")
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    with_cancer = {p for p, y in zip(patients, is_malignant, strict=True) if y}
    for group in (sorted(with_cancer), sorted(set(patients) - with_cancer)):
        order = rng.permutation(len(group))
        held.update(group[i] for i in order[: round(fraction * len(group))])
    return np.array([p in held for p in patients], dtype=bool)


def _ci(statistic: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, s: np.ndarray, groups: np.ndarray,
        n_boot: int) -> list[float]:
    return list(grouped_bootstrap_ci(statistic, y, s, n_boot=n_boot, groups=groups))


def site_metrics(probs: np.ndarray, labels: np.ndarray, patients: np.ndarray, devices: np.ndarray,
                 threshold: float, card: ModelCard, *, n_boot: int = 1000) -> dict[str, Any]:
    """The report's figures on in-scope cases at ``threshold``: AUC and the rates at the threshold, each with a
    patient-level bootstrap CI; calibration; the malignancy rate within each likelihood category; per device."""
    m = card.malignant_index
    y = labels == card.class_names[m]
    p = probs[:, m] if len(probs) else np.zeros(0)
    point = operating_point(y, p, threshold)

    def rate(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
        return lambda yy, ss: getattr(operating_point(yy, ss, threshold), name)

    categories = [categorize_likelihood(float(pi[m]), label=card.class_names[int(pi.argmax())], threshold=threshold,
                                        normal_ceiling=card.serving.normal_ceiling).code for pi in probs]
    by_category = {}
    for code in CATEGORIES:
        rows = np.array([c == code for c in categories], dtype=bool)
        if rows.any():
            by_category[code] = {"n": int(rows.sum()), "malignant": int(y[rows].sum()),
                                 "malignancy_rate": float(y[rows].mean()),
                                 "band": [CATEGORIES[code].low, CATEGORIES[code].high]}
    result: dict[str, Any] = {
        "n": len(y), "n_malignant": int(y.sum()), "n_patients": len(set(patients)),
        "threshold": float(threshold),
        "auc": binary_auc(y, p),
        "auc_ci": list(bootstrap_auc_ci(y, p, n_boot=n_boot, groups=patients)) if len(y) else [np.nan, np.nan],
        **{name: getattr(point, name) for name in ("sensitivity", "specificity", "ppv", "npv")},
        **{f"{name}_ci": _ci(rate(name), y, p, patients, n_boot) for name in ("sensitivity", "specificity")},
        "counts_at_threshold": {"tp": point.tp, "fp": point.fp, "tn": point.tn, "fn": point.fn},
        "ece": expected_calibration_error(y, p) if len(y) else float("nan"),
        "mean_p_malignant": float(p.mean()) if len(p) else float("nan"),
        "malignant_share": float(y.mean()) if len(y) else float("nan"),
        "reliability": reliability_bins(y, p),
        "categories": by_category,
    }
    if len(set(devices)) > 1:
        per = {}
        for device in sorted(set(devices)):
            rows = devices == device
            pt = operating_point(y[rows], p[rows], threshold)
            per[device] = {"n": int(rows.sum()), "n_malignant": int(y[rows].sum()), "auc": binary_auc(y[rows], p[rows]),
                           "sensitivity": pt.sensitivity, "specificity": pt.specificity}
        result["per_device"] = per
    return result


def _worse(a: str, b: str) -> str:
    return max(a, b, key=(OK, CAUTION, DO_NOT_USE).index)


def verdict(metrics: dict[str, Any], scope_pass_rate: float, target_sensitivity: float,
            with_profile: bool) -> dict[str, Any]:
    """A plain-language judgement of one report: a level (ok, caution, do_not_use) and the sentences behind it."""
    level, lines = OK, []
    lo, hi = metrics["sensitivity_ci"]
    sens, n_mal = metrics["sensitivity"], metrics["n_malignant"]
    fix = "" if with_profile else ": do not use without a site profile"
    if n_mal == 0:
        level = DO_NOT_USE
        lines.append("No malignant case was scored, so sensitivity cannot be judged: add biopsy-proven cancers.")
    elif sens < target_sensitivity - 0.05 or hi < target_sensitivity:
        level = DO_NOT_USE
        lines.append(f"Sensitivity at the threshold is {sens:.2f} [{lo:.2f}-{hi:.2f}] here, below the "
                     f"{target_sensitivity:.2f} the threshold was chosen for{fix}.")
    else:
        lines.append(f"Sensitivity at the threshold is {sens:.2f} [{lo:.2f}-{hi:.2f}] here (target "
                     f"{target_sensitivity:.2f}); specificity {metrics['specificity']:.2f}.")
    auc, (alo, ahi) = metrics["auc"], metrics["auc_ci"]
    if np.isfinite(auc):
        if auc < AUC_LIMIT:
            level = DO_NOT_USE
            lines.append(f"AUC {auc:.2f} [{alo:.2f}-{ahi:.2f}]: the model ranks this site's cancers poorly; a profile "
                         "cannot fix that.")
        else:
            lines.append(f"AUC {auc:.2f} [{alo:.2f}-{ahi:.2f}].")
    if np.isfinite(metrics["ece"]) and metrics["ece"] > ECE_LIMIT:
        level = _worse(level, CAUTION)
        lines.append(f"Probabilities are off by {metrics['ece']:.2f} on average (ECE; mean P(malignant) "
                     f"{metrics['mean_p_malignant']:.2f} against a malignant share of "
                     f"{metrics['malignant_share']:.2f}); "
                     "read them with care" + ("" if with_profile else " or fit a site profile") + ".")
    if scope_pass_rate < SCOPE_LIMIT:
        level = _worse(level, CAUTION)
        lines.append(f"Only {scope_pass_rate:.0%} of the images passed the scope gate: this site's images differ from "
                     "what the model knows; see the refused images.")
    return {"level": level, "lines": lines}


def validate_site(predictor: Predictor, cases: LocalCases, *, holdout: float | None = None,
                  profile_name: str | None = None, seed: int = 0, n_boot: int = 1000,
                  progress: Progress | None = None, created_by: str | None = None) -> tuple[dict[str, Any],
                                                                                         SiteProfile | None]:
    """Score ``cases`` (:func:`score_cases`) and build the report on the scores (:func:`site_report`)."""
    return site_report(predictor.card, score_cases(predictor, cases, progress=progress), holdout=holdout,
                       profile_name=profile_name, seed=seed, n_boot=n_boot, created_by=created_by)


def site_report(card: ModelCard, scored: ScoredCases, *, holdout: float | None = None,
                profile_name: str | None = None, seed: int = 0, n_boot: int = 1000,
                created_by: str | None = None) -> tuple[dict[str, Any], SiteProfile | None]:
    """The report on scored cases; with ``holdout`` or ``profile_name``, fit a site profile (on the non-held-out
    patients) and report it beside the shipped calibration. Returns (report, profile or None); the caller decides
    whether to save the profile."""
    m = card.malignant_index
    is_mal = scored.labels == card.class_names[m]
    target = min_sensitivity_of(card)
    counts = {c: int((scored.labels == c).sum()) for c in card.class_names}
    report: dict[str, Any] = {
        "model": {"name": card.name, "version": card.version, "weights_sha256": card.weights_sha256},
        "source": scored.source, "created_at": _now(), "rows_given": len(scored.images) + len(scored.problems),
        "scored": len(scored.images), "counts": counts,
        "problems": [{"where": p.where, "problem": p.problem} for p in scored.problems],
        "scope": {"pass_rate": float(scored.in_scope.mean()) if len(scored.images) else float("nan"),
                  "refused": [{"image": i, "reasons": r} for i, r, ok in
                              zip(scored.images, scored.reasons, scored.in_scope, strict=True) if not ok]},
        "target_sensitivity": target,
    }
    use = scored.in_scope
    hold = (patient_holdout(scored.patients, is_mal, holdout, seed) if holdout
            else np.ones(len(scored.images), dtype=bool))
    report["holdout"] = ({"fraction": holdout, "seed": seed, "held_out": int((hold & use).sum()),
                          "fitted_on": int((~hold & use).sum())} if holdout else None)
    evaluated = use & hold

    def metrics_for(probs: np.ndarray, threshold: float) -> dict[str, Any]:
        return site_metrics(probs[evaluated], scored.labels[evaluated], scored.patients[evaluated],
                            scored.devices[evaluated], threshold, card, n_boot=n_boot)

    shipped = metrics_for(scored.probs, card.threshold)
    report["shipped"] = {"metrics": shipped,
                         "verdict": verdict(shipped, report["scope"]["pass_rate"], target, with_profile=False)}
    profile = None
    if holdout or profile_name:
        fit_rows = use & ~hold if holdout else use
        try:
            profile = fit_site_profile(
                profile_name or "candidate", card, scored.probs[fit_rows], is_mal[fit_rows],
                n_patients=len(set(scored.patients[fit_rows])), created_by=created_by or _operator(),
                created_at=report["created_at"], min_sensitivity=target)
        except SiteProfileError as e:  # the shipped report still stands; say why there is no profile
            report["profile"] = {"error": str(e)}
            return report, None
        site = metrics_for(profile.apply(scored.probs, m), profile.threshold)
        report["profile"] = {
            "profile": profile.to_dict(),
            "evaluated_on": ("held-out patients (not used to fit the profile)" if holdout else
                             "the same cases the profile was fitted on: optimistic; hold some patients out for an "
                             "honest view"),
            "metrics": site,
            "verdict": verdict(site, report["scope"]["pass_rate"], target, with_profile=True),
        }
    return report, profile


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _operator() -> str:
    """Who ran the validation (the operating-system account; staff, not patient, identity)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
