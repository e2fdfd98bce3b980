"""Model performance: how good the model is on the held-out test split, read from the files evaluate wrote."""

from __future__ import annotations

import streamlit as st

from medapp.reporting.dashboard import anchor_rows, headline, localization_rows, operating_point_at, rate_rows
from medapp.reporting.figures import CHARTS
from pages.common import dashboard_files, model_dir_stamp, require_frame

require_frame(__file__)

st.title("Model performance")
stamp = model_dir_stamp()
metrics, history, charts = dashboard_files(*stamp) if stamp else (None, None, {})
if metrics is None:
    st.info("No evaluation yet: run `python -m medapp evaluate --localization` to write the model's metrics.json.")
    st.stop()

st.caption(f"Model **{metrics['model']}** on the held-out **{metrics['split']}** split: {metrics['n']} images, "
           f"{metrics['n_positive']} malignant. Malignant vs rest on the calibrated P(malignant).")
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

if localization_rows(metrics):
    st.subheader("Localisation on test lesions", help="Pointing game: heatmap peak inside the radiologist's mask.")
    st.dataframe(localization_rows(metrics), hide_index=True)
st.subheader("Against published results (BreastMNIST test split)")
st.dataframe(anchor_rows(metrics), hide_index=True, column_config={
    "model": "Model", "auc": st.column_config.NumberColumn("AUC", format="%.3f"),
    "accuracy": st.column_config.NumberColumn("Accuracy", format="%.3f"), "source": "Source"})
