"""Measure preprocessing design choices cheaply: resize policy and input size, by 5-fold cross-validation.

For each (policy, size), ImageNet-pretrained EfficientNet-Lite0 features (frozen, global-average-pooled) of the
train+val images feed a logistic regression; we report the cross-validated malignant-vs-rest AUC. A frozen
probe is a cheap, low-variance proxy for "which input keeps the information the classifier needs", computed
without touching the test split. Folds are stratified by label; each image
is scored only by a fold that did not train on it.

    .venv/bin/python bench/design_choices.py [--sizes 96 128 160] [--policies pad crop stretch]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.data.datasets import load_busi_records  # noqa: E402
from medapp.intake.imaging import load_image  # noqa: E402
from medapp.model.card import InputSpec  # noqa: E402
from medapp.model.preprocess import normalize, resize_to_square  # noqa: E402
from medapp.model.registry import create_model, default_input  # noqa: E402


def cv_auc(features: np.ndarray, is_malignant: np.ndarray, seed: int = 0) -> tuple[float, float]:
    aucs = []
    for train_idx, test_idx in StratifiedKFold(5, shuffle=True, random_state=seed).split(features, is_malignant):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
        clf.fit(features[train_idx], is_malignant[train_idx])
        aucs.append(roc_auc_score(is_malignant[test_idx], clf.predict_proba(features[test_idx])[:, 1]))
    return float(np.mean(aucs)), float(np.std(aucs))


def pooled_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 1280) globally pooled last-stage features of the EfficientNet (its own API), before the classifier."""
    return model._avg_pooling(model.extract_features(x)).flatten(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 160])
    parser.add_argument("--policies", nargs="+", default=["pad", "crop", "stretch"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    records = load_busi_records(["train", "val"])
    is_mal = np.array([r.label == "malignant" for r in records])
    pixels = [load_image(r.path).pixels for r in records]
    model = create_model("efficientnet_lite0", pretrained=True).eval()
    mean, std = default_input("efficientnet_lite0")
    print(f"{len(records)} train+val images, {is_mal.sum()} malignant; frozen ImageNet EfficientNet-Lite0 + "
          f"logistic regression, 5-fold CV AUC (mean ± sd)")
    print(f"{'policy':8s} {'size':>5s} {'CV AUC':>14s} {'seconds':>8s}")
    for policy in args.policies:
        for size in args.sizes:
            t0 = time.perf_counter()
            spec = InputSpec(size=size, resize=policy, mean=mean, std=std)
            squares = torch.from_numpy(np.stack([resize_to_square(p, spec) for p in pixels]))
            with torch.no_grad():
                feats = torch.cat([pooled_features(model, normalize(squares[i:i + 64], spec))
                                   for i in range(0, len(squares), 64)]).numpy()
            auc, sd = cv_auc(feats, is_mal)
            print(f"{policy:8s} {size:5d} {auc:8.3f} ± {sd:.3f} {time.perf_counter() - t0:8.0f}")


if __name__ == "__main__":
    main()
