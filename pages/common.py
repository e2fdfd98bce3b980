"""Streamlit glue shared by the pages: the cached model, audit log and dashboard files, and the sidebar.

Not a page itself (app.py lists the pages). Everything here either caches a medapp object or lays out widgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from medapp.errors import MedAppError, SiteProfileError
from medapp.intake.privacy import AuditLog
from medapp.markup import plain
from medapp.model.checkpoint import default_model_dir
from medapp.model.site_profile import profile_path
from medapp.reporting.dashboard import load_history, load_metrics
from medapp.reporting.figures import render_charts
from medapp.reporting.report import DECISION_SUPPORT
from medapp.serving.analysis import open_audit_log
from medapp.serving.predict import Predictor
from medapp.serving.signin import Identity
from pages.calibration_setting import PROFILE_KEY, SHIPPED, profile_setting
from pages.signin import current_identity, signin_status

FRAME_KEY = "medapp_frame"
RETURN_KEY = "medapp_return_to"
PACS_INBOX_KEY = "pacs_inbox"  # the study opened on the PACS page (medapp.pacs.browse.PacsInbox), read by Diagnose


def require_frame(page_file: str) -> None:
    """Run the page inside app.py's frame (sidebar, disclaimer, navigation); call first with ``__file__``.

    On a fresh server, a deep link such as /performance makes Streamlit run the pages/ script by itself (its
    pages-folder fallback, until app.py has called st.navigation once). Such a run goes through app.py and
    comes back here (:func:`return_to_page`).
    """
    if not st.session_state.get(FRAME_KEY):
        st.session_state[RETURN_KEY] = f"pages/{Path(page_file).name}"
        st.switch_page("app.py")


def return_to_page() -> None:
    """In app.py, after st.navigation: go on to the page a deep link asked for, if any."""
    target = st.session_state.pop(RETURN_KEY, None)
    if target:
        st.switch_page(target)


@st.cache_resource(show_spinner="Loading the model…")
def load_predictor(model_dir: str, profile: str | None = None, stamp: float = 0.0) -> Predictor:
    """Once per process and site profile, shared by every session (Predictor is thread-safe); ``stamp`` (the
    profile file's mtime) reloads a profile saved again or removed."""
    return Predictor.from_dir(model_dir, profile=profile)


def audit_log() -> AuditLog:
    """The deployment's audit log, naming this session's user (a path, cheap to build each run; not cached, so a
    changed MEDAPP_AUDIT_LOG is followed)."""
    identity = current_identity()
    if identity is None:  # not reached: app.py's gate shows only the sign-in page until someone signs in
        st.stop()
    return open_audit_log(identity.user)


@st.cache_data(show_spinner="Drawing the charts…", max_entries=8)
def dashboard_files(model_dir: str, filename: str, stamp: float) -> tuple[dict[str, Any] | None, Any,
                                                                             dict[str, bytes]]:
    """One metrics file, history.csv and every chart as PNG; ``stamp`` (file mtime; hashed, which an argument
    named with a leading underscore would not be) refreshes after a
    re-evaluate."""
    metrics, history = load_metrics(model_dir, filename), load_history(model_dir)
    return metrics, history, (render_charts(metrics, history) if metrics else {})


def get_predictor() -> Predictor | None:
    """The predictor, or None after showing why it could not be loaded."""
    try:
        model_dir, chosen = str(default_model_dir()), st.session_state.get(PROFILE_KEY)
        if chosen in (None, SHIPPED):
            return load_predictor(model_dir)
        return load_predictor(model_dir, chosen, file_stamp(model_dir, str(profile_path(model_dir, chosen))))
    except SiteProfileError as e:  # removed or fitted for other weights: back to the card, and say so
        st.session_state[PROFILE_KEY] = SHIPPED
        st.warning(f"The site profile could not be used, so the shipped calibration is: {plain(e)}")
        return get_predictor()
    except MedAppError as e:
        st.error(f"The model could not be loaded: {plain(e)}")
        return None


def current_model_dir() -> str | None:
    try:
        return str(default_model_dir())
    except MedAppError as e:
        st.error(f"No model folder: {plain(e)}")
        return None


def file_stamp(model_dir: str, filename: str) -> float:
    path = Path(model_dir) / filename
    return path.stat().st_mtime if path.is_file() else 0.0


def sidebar(identity: Identity) -> None:
    with st.sidebar:
        signin_status(identity)
        st.warning(f"**{DECISION_SUPPORT}**", icon=":material/medical_information:")
        predictor = get_predictor()
        if predictor is not None:
            card = predictor.card
            st.caption(f"Model **{card.name}** v{card.version}  \nweights `{card.weights_sha256[:12]}`")
            profile_setting(predictor)
