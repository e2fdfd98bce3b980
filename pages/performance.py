"""Model performance: how good the model is on the held-out test split, read from the files evaluate wrote."""

from __future__ import annotations

import streamlit as st

from medapp.reporting.dashboard import (
    anchor_rows,
    cross_site_table,
    device_rows,
    headline,
    held_out_evaluations,
    load_cross_site,
    localization_rows,
    operating_point_at,
    rate_rows,
)
from medapp.reporting.figures import CHARTS
from pages.common import current_model_dir, dashboard_files, file_stamp, require_frame

require_frame(__file__)

st.title("Model performance")
model_dir = current_model_dir()
evaluations = held_out_evaluations(model_dir) if model_dir else {}
if not evaluations:
    st.info("No evaluation yet: run `python -m medapp evaluate --localization --update-model` to write the "
            "model's metrics.json.")
    st.stop()
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

if device_rows(metrics):
    st.subheader("Per scanner", help="The same metrics on each scanner's images of this test set.")
    st.dataframe(device_rows(metrics), hide_index=True)
cross_site = load_cross_site(model_dir)
if cross_site:
    st.subheader("Across hospitals", help="The same recipe trained on one site, the other, or both, and scored on "
                 "each site's test split: does the model hold up at a hospital it never saw?")
    st.dataframe(cross_site_table(cross_site), hide_index=True)

st.subheader("Charts")
columns = st.columns(3)
for i, (key, png) in enumerate(charts.items()):
    columns[i % 3].image(png, caption=CHARTS[key], width="stretch")

if localization_rows(metrics):
    st.subheader("Localisation on test lesions", help="Pointing game: heatmap peak inside the radiologist's mask.")
    st.dataframe(localization_rows(metrics), hide_index=True)
if metrics.get("anchors"):
    st.subheader("Against published results (BreastMNIST test split)")
    st.dataframe(anchor_rows(metrics), hide_index=True, column_config={
        "model": "Model", "auc": st.column_config.NumberColumn("AUC", format="%.3f"),
        "accuracy": st.column_config.NumberColumn("Accuracy", format="%.3f"), "source": "Source"})
