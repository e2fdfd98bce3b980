"""The local-validation report on screen: verdicts side by side, figures, refused images, downloads.

Not a page itself (pages/validate_site.py shows it).
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from medapp.markup import plain
from medapp.reporting.figures import figure_png, site_reliability_figure
from medapp.reporting.validation_report import (
    VERDICT_WORDS,
    build_validation_pdf,
    category_lines,
    counts_line,
    metrics_line,
)

LEVEL_BOX = {"ok": st.success, "caution": st.warning, "do_not_use": st.error}


def show_site_report(report: dict[str, Any]) -> None:
    st.caption(counts_line(report))
    sections = [("Shipped calibration and threshold", report["shipped"])]
    if report.get("profile") and "metrics" in report["profile"]:
        sections.append((f"With a site profile ({report['profile']['evaluated_on']})", report["profile"]))
    for column, (title, section) in zip(st.columns(len(sections)), sections, strict=True):
        with column:
            st.subheader(title)
            LEVEL_BOX[section["verdict"]["level"]](
                f"**{VERDICT_WORDS[section['verdict']['level']].capitalize()}.**  \n"
                + "  \n".join(section["verdict"]["lines"]))
            st.caption(metrics_line(section["metrics"]))
            st.caption("Malignancy rate per category: " + "; ".join(category_lines(section["metrics"])))
            if "per_device" in section["metrics"]:
                st.dataframe([{"device": d, **v} for d, v in section["metrics"]["per_device"].items()], hide_index=True)
    st.image(figure_png(site_reliability_figure(report)), width=480)
    if report.get("profile") and "error" in report["profile"]:
        st.warning(f"No site profile: {plain(report['profile']['error'])}")
    if report["problems"] or report["scope"]["refused"]:
        with st.expander(f"Images not scored ({len(report['problems'])}) or refused by the scope gate "
                         f"({len(report['scope']['refused'])})"):
            st.dataframe([{"image": p["where"], "why": p["problem"]} for p in report["problems"]]
                         + [{"image": r["image"], "why": "; ".join(r["reasons"])} for r in report["scope"]["refused"]],
                         hide_index=True)
    downloads = st.columns(2)
    downloads[0].download_button("Download report (PDF)", lambda: build_validation_pdf(report), "site_validation.pdf",
                                 "application/pdf", icon=":material/picture_as_pdf:")
    downloads[1].download_button("Download report (JSON)", json.dumps(report, indent=1, allow_nan=True),
                                 "site_validation.json", "application/json", icon=":material/data_object:")
