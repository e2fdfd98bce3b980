"""The sidebar's calibration setting: the shipped card's, or a site profile saved beside the model.

Not a page itself (pages/common.py puts it in the sidebar). The choice lives in the session under ``PROFILE_KEY``;
pages/common.py loads the predictor for it.
"""

from __future__ import annotations

import streamlit as st

from medapp.model.site_profile import list_profiles
from medapp.serving.predict import SHIPPED_CALIBRATION, Predictor

PROFILE_KEY = "site_profile"
SHIPPED = SHIPPED_CALIBRATION.capitalize()  # the setting's first option, named as every result names it


def profile_setting(predictor: Predictor) -> None:
    """The site-profile setting: the shipped card's calibration, or a profile fitted on this site's cases."""
    if predictor.model_dir is None:
        return
    names = list_profiles(predictor.model_dir)
    if not names:
        st.caption("Calibration: the shipped model card's (no site profile saved; see *Validate at your site*)")
        return
    st.selectbox("Calibration", [SHIPPED, *names], key=PROFILE_KEY,
                 help="A site profile re-calibrates P(malignant) and sets the threshold on your own "
                      "validated cases (Validate at your site). The shipped card is never changed.")
    if predictor.profile is not None:
        st.info(predictor.profile.label, icon=":material/tune:")
