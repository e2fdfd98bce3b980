"""Render a model folder's human README.md from its card and metrics files, so every figure in it is computed.

``python -m medapp evaluate --update-model`` rewrites it (:mod:`medapp.reporting.model_folder`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..formatting import format_number
from ..model.card import ModelCard, known_flaws, metrics_filename
from .dashboard import cross_site_table, device_rows, load_cross_site, load_metrics, sites_text


def _describe_explain(explain: dict[str, Any]) -> str:
    if not explain:
        return "the architecture's default CAM layer, Grad-CAM, image and mirror averaged"
    mirror = explain.get("flip_average", True)
    views = "the image and its mirror" if mirror else "the image"
    if explain.get("shift"):
        copies = "each also shifted" if mirror else "four copies shifted"
        views = f"{views} and {copies} diagonally by {explain['shift']:.0%} of the input"
    method, layer = explain.get("method", "gradcam"), explain.get("target_layer", "default layer")
    text = f"{method} on `{layer}`, averaged over {views}"
    return f"{text} ({explain['rule']})" if explain.get("rule") else text


def render_model_readme(model_dir: str | Path) -> str:
    model_dir = Path(model_dir)
    card = ModelCard.load(model_dir)
    test = load_metrics(model_dir, metrics_filename("busi", "test"))
    val = load_metrics(model_dir, metrics_filename("busi", "val"))
    mnist = load_metrics(model_dir, metrics_filename("breastmnist", "test"))
    cfg = card.config
    lines = [
        f"# {card.name} v{card.version}",
        "",
        "Decision support for breast ultrasound, **not a diagnosis**. "
        f"{card.intended_use}".strip(),
        "",
        "## Model",
        f"- Architecture: `{card.architecture}` {json.dumps(card.model_args)}",
        f"- Input: {card.input.channels}-channel grayscale, {card.input.size}x{card.input.size} px, resize policy "
        f"`{card.input.resize}`, normalised (x - {card.input.mean:.4f}) / {card.input.std:.4f}",
        f"- Classes: {', '.join(card.class_names)}; headline output: calibrated P(malignant), from "
        + ("the mean logits of the heatmap views below (test-time augmentation)" if card.tta_headline
           else "the unaugmented image"),
        f"- Temperature (fitted on validation, Guo et al. 2017): {card.temperature:.3f}",
        f"- Operating threshold on P(malignant): {card.threshold:.3f} ({card.threshold_rule})",
        f"- Scope gate: {card.scope.get('method', '—')} on {card.scope.get('features', '—')}, threshold "
        f"{format_number(card.scope.get('threshold'), 2)} ({card.scope.get('rule', '—')})",
        f"- Heatmap: {_describe_explain(card.explain)}",
        f"- Weights: `model.safetensors`, SHA-256 `{card.weights_sha256}`",
        "",
        "## Training",
        f"- Data: {card.training_data}",
        f"- Config: loss `{cfg.get('loss')}`, optimiser `{cfg.get('optimizer')}` lr {cfg.get('lr')}, "
        f"weight decay {cfg.get('weight_decay')}, {cfg.get('epochs')} epochs max ("
        f"{card.metrics.get('weights') or 'best epoch ' + str(card.metrics.get('best_epoch', '—'))}, "
        f"validation AUC {format_number(card.metrics.get('val_auc'))}), "
        f"batch {cfg.get('batch_size')}, seed {cfg.get('seed')}",
        f"- Reproduce: `{card.command}`",
        "",
    ]
    if test:
        lo, hi = test["auc_ci"]
        lines += [
            f"## Evaluation on the official BreastMNIST/BUSI test split (n = {test['n']}, "
            f"{test['n_positive']} malignant)",
            "",
            "Malignant vs rest. Model and settings chosen on validation only; the project README's honest record "
            "says how often this test split was scored.",
            "",
            "| metric | value |",
            "|---|---|",
            f"| AUC (95% bootstrap CI) | {test['auc']:.3f} ({lo:.3f}–{hi:.3f}) |",
            f"| Accuracy at P(malignant) >= 0.5 (MedMNIST ACC) | {test['accuracy']:.3f} |",
            f"| Sensitivity / specificity at threshold {test['threshold']:.3f} | {test['sensitivity']:.3f} / "
            f"{test['specificity']:.3f} |",
            f"| PPV / NPV at threshold | {format_number(test['ppv'])} / {format_number(test['npv'])} |",
            f"| 3-class accuracy / macro AUC | {test['accuracy_3class']:.3f} / {test['macro_auc_3class']:.3f} |",
            f"| ECE, 15 bins (uncalibrated) | {test['ece']:.3f} ({test['ece_uncalibrated']:.3f}) |",
        ]
        if "scope_pass_rate" in test:
            lines.append(f"| Scope gate pass rate on test | {test['scope_pass_rate']:.3f} |")
        lines += ["", "### Against published results on the same test split", "",
                  "| model | AUC | ACC | source |", "|---|---|---|---|",
                  f"| **{card.name} (this model)** | **{test['auc']:.3f}** | **{test['accuracy']:.3f}** | "
                  "`python -m medapp evaluate` |"]
        if mnist:
            lines.append(f"| {card.name} on the 28 px BreastMNIST images | {mnist['auc']:.3f} | "
                         f"{mnist['accuracy']:.3f} | `python -m medapp evaluate --dataset breastmnist` |")
        for a in test["anchors"]:
            lines.append(f"| {a['model']} | {a['auc']:.3f} | {a['accuracy']:.3f} | {a['source']} |")
        lines.append("")
        loc = test.get("localization")
        if loc:
            lines += ["### Where the model looks (Grad-CAM vs radiologist masks, test lesions)", "",
                      "| method | pointing game | energy in mask | n |", "|---|---|---|---|"]
            for name, r in loc.items():
                if isinstance(r, dict) and "pointing_game" in r:
                    mark = " (default)" if name == loc.get("default") else ""
                    lines.append(f"| {name}{mark} | {r['pointing_game']:.3f} | {r['energy_in_mask']:.3f} | "
                                 f"{r['n']} |")
            lines += ["", "Anchor: pointing game 0.71 for CAM on breast-mass ultrasound (Byra et al., "
                      "J Ultrason 2022).", ""]
        lines += ["![ROC](plots/busi_test_roc.png) ![reliability](plots/busi_test_reliability.png) "
                  "![confusion matrix](plots/busi_test_confusion.png)", ""]
    if val:
        lines += [f"Validation split (n = {val['n']}, used for selection and calibration): AUC {val['auc']:.3f}, "
                  f"ACC {val['accuracy']:.3f}.", ""]
    if test and test.get("near_duplicates"):
        lines += _near_duplicate_lines(test["near_duplicates"])
    busbra = load_metrics(model_dir, metrics_filename("busbra", "test"))
    if busbra:
        lines += _second_site_lines(busbra)
    cross_site = load_cross_site(model_dir)
    if cross_site:
        lines += _cross_site_lines(cross_site)
    if card.outline:
        lines += _outline_lines(card.outline, card.input.size, {"BUSI test": test, "BUS-BRA test": busbra})
    if card.training_sites:
        lines += ["## Sites and scanners seen in training", sites_text(card), ""]
    lines += [
        "## Intended use", card.intended_use, "",
        "## Out of scope", card.out_of_scope_use, "",
        "## Known limits of the training data", known_flaws(card), "",
    ]
    return "\n".join(lines)


def write_model_readme(model_dir: str | Path) -> Path:
    path = Path(model_dir) / "README.md"
    path.write_text(render_model_readme(model_dir))
    return path


def _near_duplicate_lines(subsets: dict[str, Any]) -> list[str]:
    clean = subsets.get("duplicate_free")
    if not clean:
        return []
    lo, hi = clean["auc_ci"]
    return [f"On the {clean['n']} BUSI test images with no near-copy in train or val (docs/near_duplicates.md): "
            f"AUC {format_number(clean['auc'])} ({format_number(lo)}-{format_number(hi)}), sensitivity "
            f"{format_number(clean['sensitivity'])}, specificity {format_number(clean['specificity'])}.", ""]


def _second_site_lines(m: dict[str, Any]) -> list[str]:
    lo, hi = m["auc_ci"]
    lines = [f"## Evaluation on the BUS-BRA test split (n = {m['n']}, {m['n_positive']} malignant, by patient)", "",
             f"{m['auc_definition'].capitalize()}: AUC {format_number(m['auc'])} ({format_number(lo)}-"
             f"{format_number(hi)}); at threshold {format_number(m['threshold'])} sensitivity "
             f"{format_number(m['sensitivity'])}, specificity {format_number(m['specificity'])}; ECE "
             f"{format_number(m['ece'])}; scope gate pass rate {format_number(m['scope_pass_rate'])}; malignant "
             f"images shown as normal or BI-RADS 3 range: {format_number(m.get('malignant_shown_low'))}.", ""]
    return lines + markdown_table(device_rows(m))


def _outline_lines(entry: dict[str, Any], size: int, tests: dict[str, dict[str, Any] | None]) -> list[str]:
    """The lesion-outline decoder: how it was made and chosen, and its overlap with the radiologists' masks
    (``size``: the classifier's input, whose pass the decoder shares)."""
    validation = ", ".join(f"{k.removeprefix('val_dice_') if k != 'val_dice' else 'pooled'} "
                           f"{format_number(v)}" for k, v in entry.get("validation", {}).items())
    lines = ["## Lesion outline (segmentation decoder on the shared encoder)", "",
             f"- Decoder: `{entry['file']}` (SHA-256 `{entry['sha256']}`), U-Net skips from encoder blocks "
             f"{entry['taps']}, input {size} px; the classifier's weights are frozen, so its numbers above are "
             "unchanged by it.",
             f"- Outline threshold {entry['threshold']:.2f} ({entry['threshold_rule']}); best epoch "
             f"{entry['best_epoch']}; validation Dice (input size) {validation}.",
             f"- Reproduce: `{entry.get('command', '')}`", ""]
    rows = []
    for name, metrics in tests.items():
        outline = (metrics or {}).get("outline")
        if not outline:
            continue
        parts = [(name, outline)] + [(f"{name}, {device}", entry) for device, entry in
                                     outline.get("per_device", {}).items()]
        for label, part in parts:
            every, agree = part["all_lesion_images"], part["agreement"]
            rows.append({"test split": label, "lesions": every["n"], "Dice": every["dice_mean"],
                         "IoU": every["iou_mean"], "HD95 px": every["hd95_mean_px"], "missed": every["missed"],
                         "orientation agrees (kappa)": _agrees(agree["orientation"]),
                         "shape agrees (kappa)": _agrees(agree["shape"])})
    if rows:
        lines += ["Against the radiologists' masks at the original resolution (`python -m medapp evaluate`; out of "
                  "scope and missed lesions count as Dice 0; agreement: the same geometric rules on the model's "
                  "outline and on the radiologist's mask):", ""] + markdown_table(rows) + [""]
    return lines


def _agrees(table: dict[str, Any]) -> str:
    """Agreement with Cohen's kappa beside it: most lesions are parallel and oval, so agreement alone flatters."""
    return f"{format_number(table['agreement_counting_missed'])} ({format_number(table['kappa'], 2)})"


def _cross_site_lines(rows: list[dict[str, Any]]) -> list[str]:
    models = ", ".join(dict.fromkeys(f"`{r['model']}` ({r['trained_on']})" for r in rows))
    lines = ["## Across hospitals (trained on one site or both)", "",
             f"Models: {models}. A site not seen in training is the test that matters for a new hospital.", ""]
    return lines + markdown_table(cross_site_table(rows))


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    """Dashboard rows as a markdown table (numbers to 3 decimals; yes/**no** for flags); none for no rows."""
    if not rows:
        return []

    def cell(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "**no**"
        return format_number(value) if isinstance(value, float) else str(value)

    return ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0]),
            *("| " + " | ".join(cell(v) for v in r.values()) + " |" for r in rows), ""]
