"""medapp's web app: the frame. Pages live in pages/ and call medapp; run with `streamlit run app.py`."""

from __future__ import annotations

import streamlit as st

from medapp.reporting.icon import app_icon
from pages.common import FRAME_KEY, return_to_page, sidebar
from pages.signin import require_signin

# The tab icon is drawn locally: a Material or emoji icon would be fetched from a font host outside the hospital.
st.set_page_config(page_title="medapp · breast ultrasound", page_icon=app_icon(), layout="wide")
identity = require_signin()  # with an identity provider configured, nobody gets past here before signing in
navigation = st.navigation([
    st.Page("pages/diagnose.py", title="Diagnose", icon=":material/radiology:", default=True),
    st.Page("pages/pacs.py", title="PACS", icon=":material/dns:"),
    st.Page("pages/performance.py", title="Model performance", icon=":material/monitoring:"),
    st.Page("pages/validate_site.py", title="Validate at your site", icon=":material/fact_check:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
])
st.session_state[FRAME_KEY] = True
return_to_page()
sidebar(identity)
navigation.run()
