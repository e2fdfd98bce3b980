"""Streamlit glue shared by the pages: the cached model, audit log and dashboard files, and the sidebar.

Not a page itself (app.py lists the pages). Everything here either caches a medapp object or lays out widgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from medapp.analysis import audit_log_path
from medapp.errors import MedAppError
from medapp.performance import load_history, load_metrics, render_charts
from medapp.predict import Predictor, default_model_dir
from medapp.privacy import AuditLog
from medapp.report import DECISION_SUPPORT


@st.cache_resource(show_spinner="Loading the model…")
def load_predictor(model_dir: str) -> Predictor:
    """Once per process, shared by every session (Predictor is thread-safe)."""
    return Predictor.from_dir(model_dir)


@st.cache_resource
def audit_log() -> AuditLog:
    return AuditLog(audit_log_path())


@st.cache_data(show_spinner="Drawing the charts…", max_entries=4)
def dashboard_files(model_dir: str, _stamp: float) -> tuple[dict[str, Any] | None, Any, dict[str, bytes]]:
    """metrics.json, history.csv and every chart as PNG; ``_stamp`` (file mtime) refreshes after a re-evaluate."""
    metrics, history = load_metrics(model_dir), load_history(model_dir)
    return metrics, history, (render_charts(metrics, history) if metrics else {})


def get_predictor() -> Predictor | None:
    """The predictor, or None after showing why it could not be loaded."""
    try:
        return load_predictor(str(default_model_dir()))
    except MedAppError as e:
        st.error(f"The model could not be loaded: {e}")
        return None


def model_dir_stamp() -> tuple[str, float] | None:
    try:
        model_dir = default_model_dir()
    except MedAppError as e:
        st.error(f"No model folder: {e}")
        return None
    metrics = Path(model_dir) / "metrics.json"
    return str(model_dir), (metrics.stat().st_mtime if metrics.is_file() else 0.0)


def sidebar() -> None:
    with st.sidebar:
        st.warning(f"**{DECISION_SUPPORT}**", icon=":material/medical_information:")
        predictor = get_predictor()
        if predictor is not None:
            card = predictor.card
            st.caption(f"Model **{card.name}** v{card.version}  \nweights `{card.weights_sha256[:12]}`")
