"""Model card: what the model is for, what it is not for, what it learned from, and how good it is."""

from __future__ import annotations

import streamlit as st

from medapp.reporting.dashboard import card_page_sections
from pages.common import get_predictor, require_frame

require_frame(__file__)

st.title("Model card")
predictor = get_predictor()
if predictor is None:
    st.stop()
for title, body in card_page_sections(predictor.card, predictor.model_dir):
    st.subheader(title)
    st.markdown(body)
