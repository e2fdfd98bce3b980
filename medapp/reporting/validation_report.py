"""The local-validation report as text lines and a PDF: what a hospital reads before relying on the model.

It carries image names as the hospital gave them (its own files), counts and figures; no pixel and no DICOM
header value.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..formatting import format_number
from .figures import figure_png, site_reliability_figure
from .report import DECISION_SUPPORT, new_pdf

VERDICT_WORDS = {"ok": "usable here at this threshold", "caution": "usable with caution",
                 "do_not_use": "do not use as it stands"}


def _ci(values: list[float]) -> str:
    return f"[{format_number(values[0])}-{format_number(values[1])}]"


def counts_line(report: dict[str, Any]) -> str:
    """What was scored of what was given, per class, and how much the scope gate let through."""
    per_class = ", ".join(f"{n} {c}" for c, n in report["counts"].items() if n)
    return (f"{report['scored']} of {report['rows_given']} rows scored ({per_class}); scope gate passed "
            f"{report['scope']['pass_rate']:.1%}")


def metrics_line(m: dict[str, Any]) -> str:
    """One line of the figures that decide whether the model can be used at a site."""
    return (f"n={m['n']} ({m['n_malignant']} malignant, {m['n_patients']} patients); AUC {format_number(m['auc'])} "
            f"{_ci(m['auc_ci'])}; at threshold {m['threshold']:.3f}: sensitivity {format_number(m['sensitivity'])} "
            f"{_ci(m['sensitivity_ci'])}, specificity {format_number(m['specificity'])} {_ci(m['specificity_ci'])}, "
            f"PPV {format_number(m['ppv'])}, NPV {format_number(m['npv'])}; ECE {format_number(m['ece'])}")


def category_lines(m: dict[str, Any]) -> list[str]:
    """The malignancy rate observed within each likelihood category, against the band it claims."""
    out = []
    for code, c in m["categories"].items():
        lo, hi = c["band"]
        out.append(f"{code}: {c['malignant']} of {c['n']} malignant ({c['malignancy_rate']:.0%}; band "
                   f"{lo:.0%}-{hi:.0%})")
    return out


def build_validation_pdf(report: dict[str, Any], created: dt.datetime | None = None) -> bytes:
    """The report on A4: verdicts first, then figures, categories, devices, refused and unreadable images."""
    created = (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    pdf = new_pdf("medapp local validation report", created)
    width = pdf.epw

    def heading(text: str, size: int = 12) -> None:
        pdf.set_font("DejaVu", "B", size)
        pdf.multi_cell(width, 7, text, new_x="LMARGIN", new_y="NEXT")

    def para(text: str, size: int = 9) -> None:
        pdf.set_font("DejaVu", size=size)
        pdf.multi_cell(width, 4.8, text, new_x="LMARGIN", new_y="NEXT")

    model = report["model"]
    heading("Local validation of the model at your site", 16)
    para(f"{DECISION_SUPPORT}. Generated {created.strftime('%Y-%m-%d %H:%M')} UTC. Model {model['name']} "
         f"{model['version']}, weights SHA-256 {model['weights_sha256']}. Cases: {report['source']}; "
         f"{counts_line(report)}.")
    if report["holdout"]:
        h = report["holdout"]
        para(f"Hold-out: the profile was fitted on {h['fitted_on']} images and is judged on {h['held_out']} images of "
             f"other patients ({h['fraction']:.0%} of patients, seed {h['seed']}).")
    sections = [("With the shipped calibration and threshold", report["shipped"])]
    profile = report.get("profile")
    if profile and "metrics" in profile:
        sections.append((f"With site profile '{profile['profile']['name']}' ({profile['evaluated_on']})", profile))
    for title, section in sections:
        pdf.ln(2)
        heading(f"{title}: {VERDICT_WORDS[section['verdict']['level']]}")
        for line in section["verdict"]["lines"]:
            para(f"• {line}")
        para(metrics_line(section["metrics"]), size=8)
        para("Malignancy rate per likelihood category: " + "; ".join(category_lines(section["metrics"])), size=8)
        for device, d in section["metrics"].get("per_device", {}).items():
            para(f"{device}: n={d['n']}, AUC {format_number(d['auc'])}, sensitivity {format_number(d['sensitivity'])}, "
                 f"specificity {format_number(d['specificity'])}", size=8)
    if profile and "error" in profile:
        pdf.ln(2)
        heading("No site profile")
        para(profile["error"])
    pdf.ln(2)
    pdf.image(figure_png(site_reliability_figure(report)), w=95)
    if report["problems"] or report["scope"]["refused"]:
        pdf.ln(2)
        heading("Images not scored or refused")
        for p in report["problems"]:
            para(f"not scored: {p['where']}: {p['problem']}", size=8)
        for r in report["scope"]["refused"]:
            para(f"refused: {r['image']}: {'; '.join(r['reasons'])}", size=8)
    return bytes(pdf.output())
