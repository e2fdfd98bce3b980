"""Model performance: each hospital's held-out test split, read from the files evaluate wrote; nothing re-scored."""

from __future__ import annotations

import streamlit as st

from medapp.reporting.dashboard import (
    anchor_rows,
    card_config,
    headline,
    held_out_evaluations,
    load_cross_site,
    localization_notes,
    localization_table,
    operating_point_at,
    rate_rows,
    training_note,
)
from medapp.reporting.figures import CHARTS
from medapp.reporting.scoring_record import load_scoring_record, scoring_record_markdown, scoring_rows
from medapp.reporting.test_sets import comparison_rows, cross_site_display, scanner_rows, site_evaluations
from pages.common import current_model_dir, dashboard_files, file_stamp, require_frame

require_frame(__file__)


@st.cache_data(show_spinner=False)
def site_tables(model_dir: str, stamps: tuple[float, ...]) -> tuple[list[dict], list[dict], str | None]:
    """Side-by-side rows, scanner rows and the evaluated weights' SHA-256; ``stamps`` (hashed) refresh them."""
    sites = site_evaluations(model_dir)
    return comparison_rows(sites), scanner_rows(sites), next((m.get("weights_sha256") for m in sites.values()), None)


st.title("Model performance")
model_dir = current_model_dir()
evaluations = held_out_evaluations(model_dir) if model_dir else {}
if not evaluations:
    st.info("No evaluation yet: run `python -m medapp evaluate --localization --update-model` to write the "
            "model's metrics.json.")
    st.stop()
comparison, scanners, weights = site_tables(model_dir, tuple(file_stamp(model_dir, f) for f in evaluations.values()))
record = load_scoring_record(model_dir)
st.info(scoring_record_markdown(record, weights), icon=":material/fact_check:")
if record:
    with st.expander("Every test scoring on record"):
        st.dataframe(scoring_rows(record), hide_index=True)

if comparison:
    st.subheader("Each hospital's test split", help="Each hospital's test split, held out from training and "
                 "selection. Counts in brackets: the rates' denominators.")
    st.table(comparison, hide_index=True)
if scanners:
    st.subheader("Per scanner", help="The same measures on each scanner's images of a test split.")
    st.table(scanners, hide_index=True)
cross_site = load_cross_site(model_dir)
if cross_site:
    st.subheader("Across hospitals", help="The same recipe trained on one site, the other, or both, and scored on "
                 "each site's test split: does the model hold up at a hospital it never saw?")
    st.table(cross_site_display(cross_site), hide_index=True)

st.subheader("One test set in detail")
chosen = st.selectbox("Held-out test set", list(evaluations), help="Each hospital's test split, scored once.")
filename = evaluations[chosen]
metrics, history, charts = dashboard_files(model_dir, filename, file_stamp(model_dir, filename))
st.caption(f"Model **{metrics['model']}** on the held-out **{metrics['split']}** split: {metrics['n']} images, "
           f"{metrics['n_positive']} malignant. {metrics.get('auc_definition', 'malignant vs rest').capitalize()} "
           "on the calibrated P(malignant).")
for column, (label, value, explanation) in zip(st.columns(5), headline(metrics), strict=True):
    column.metric(label, value, help=explanation)

st.subheader("Threshold explorer", help="Move the threshold to see the trade-off; the model uses the card's.")
threshold = st.slider("Flag as suspicious when P(malignant) is at least", 0.0, 1.0, float(metrics["threshold"]),
                      0.005, format="%.3f")
point = operating_point_at(metrics, threshold)
for column, (label, value) in zip(st.columns(4), rate_rows(point), strict=True):
    column.metric(label, value)
st.caption(f"At {threshold:.3f}: {point.tp} malignant found, {point.fn} missed, {point.fp} false alarms, "
           f"{point.tn} correctly not flagged (test split).")

st.subheader("Charts")
columns = st.columns(3)
for i, (key, png) in enumerate(charts.items()):
    columns[i % 3].image(png, caption=CHARTS[key], width="stretch")
if "training" in charts:
    st.caption(training_note(history, card_config(model_dir)))

if localization_table(metrics):
    st.subheader("Localisation on test lesions", help="Where the heatmap lands against the radiologists' outlines. "
                 "The heatmap shows where the model looked, not a lesion outline.")
    st.table(localization_table(metrics), hide_index=True)
    st.caption("  \n".join(localization_notes(metrics)))
if metrics.get("anchors"):
    st.subheader("Against published results (BreastMNIST test split)")
    st.dataframe(anchor_rows(metrics), hide_index=True, column_config={
        "model": "Model", "auc": st.column_config.NumberColumn("AUC", format="%.3f"),
        "accuracy": st.column_config.NumberColumn("Accuracy", format="%.3f"), "source": "Source"})
