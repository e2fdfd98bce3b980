"""Headline from the unaugmented image or from the mean of the test-time views? Judged on VALIDATION only.

    .venv/bin/python bench/tta_choice.py [--model DIR]

Prints, on the validation split, the negative log-likelihood (before and after a fitted temperature), the Brier
score and the malignant-vs-rest AUC of the 3-class probabilities from (a) the unaugmented image and (b) the mean
logits of the card's views (``explain``: flip_average, shift). NLL and Brier are proper scores, so unlike the
near-saturated validation AUC they still separate the two. The better one is the card's ``tta_headline``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.data.datasets import load_busi_records, load_squares  # noqa: E402
from medapp.model.calibrate import fit_temperature, softmax  # noqa: E402
from medapp.model.checkpoint import (
    default_model_dir,  # noqa: E402
    load_model,  # noqa: E402
)
from medapp.model.inference import headline_views, predict_logits  # noqa: E402


def scores(logits: np.ndarray, labels: np.ndarray, malignant: int) -> str:
    y = torch.from_numpy(labels)
    nll = F.cross_entropy(torch.from_numpy(logits), y).item()
    t = fit_temperature(logits, labels)
    nll_t = F.cross_entropy(torch.from_numpy(logits / t), y).item()
    probs = softmax(logits)
    brier = float(((probs - np.eye(probs.shape[1])[labels]) ** 2).sum(1).mean())
    auc = roc_auc_score(labels == malignant, probs[:, malignant])
    return f"NLL {nll:.3f}   NLL after temperature {nll_t:.3f} (T {t:.2f})   Brier {brier:.3f}   AUC {auc:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    args = parser.parse_args()
    card, model = load_model(args.model or default_model_dir())
    records = load_busi_records("val")
    labels = np.array([card.class_names.index(r.label) for r in records])
    squares = load_squares(records, card.input)
    views = headline_views(True, card.explain, card.input)
    print(f"model {card.name}; validation n={len(records)}")
    single = predict_logits(model, squares, card.input)
    print(f"  unaugmented image      {scores(single, labels, card.malignant_index)}")
    mean = predict_logits(model, squares, card.input, views=views)
    print(f"  mean of {len(views)} views' logits {scores(mean, labels, card.malignant_index)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
