"""Validate at your site: measure the model on local labelled cases, read the verdict, save a site profile."""

from __future__ import annotations

import streamlit as st

from medapp.data.local_cases import check_table_size, open_zip_cases, upload_cases
from medapp.errors import MedAppError
from medapp.evaluation.local_validation import validate_site
from medapp.markup import plain
from medapp.model.site_profile import MIN_MALIGNANT, MIN_NON_MALIGNANT, list_profiles
from pages.common import current_model_dir, load_predictor, require_frame
from pages.site_report import show_site_report

require_frame(__file__)

REPORT_KEY = "site_validation"

st.title("Validate at your site")
st.markdown(
    "Before relying on the model, measure it on your own biopsy-proven cases. Thresholds rarely carry between "
    "hospitals; a **site profile** fitted here re-calibrates the probabilities and sets the threshold on your "
    f"cases (at least {MIN_MALIGNANT} malignant and {MIN_NON_MALIGNANT} benign or normal). "
    "Nothing you upload is stored; only a saved profile (numbers, no images) is written beside the model.")
model_dir = current_model_dir()
if model_dir is None:
    st.stop()

source = st.radio("Cases", ["A zip of images", "Image files"], horizontal=True,
                  help="Zip: benign/, malignant/ and normal/ folders, or any layout plus a labels CSV. "
                       "Files: upload the images and a labels CSV, or label them in the table below.")
labels_file = st.file_uploader("Labels CSV (columns image, label; optional patient, device)", type=["csv"],
                               key="site_labels")
cases = None
try:
    labels_csv = None
    if labels_file is not None:
        check_table_size(labels_file.size, labels_file.name)
        labels_csv = labels_file.getvalue().decode("utf-8-sig", errors="replace")
    if source == "A zip of images":
        archive = st.file_uploader("Zip of labelled images", type=["zip"], key="site_zip")
        if archive is not None:
            cases = open_zip_cases(archive, labels_csv, archive.name)
    else:
        images = st.file_uploader("Images (PNG, JPEG, DICOM)", accept_multiple_files=True, key="site_images")
        if images:
            files = {f.name: f.getvalue() for f in images}
            labels = None
            if labels_csv is None:
                table = st.data_editor([{"image": n, "label": ""} for n in files], hide_index=True,
                                       disabled=["image"], key="site_label_table",
                                       column_config={"label": st.column_config.SelectboxColumn(
                                           "label", options=["benign", "malignant", "normal"])})
                labels = {row["image"]: row["label"] or "" for row in table}
            cases = upload_cases(files, labels_csv, labels)
except MedAppError as e:
    st.error(plain(e))
    st.stop()

holdout_on = st.toggle("Judge the profile on held-out patients (recommended)", value=True,
                       help="Fits the profile on part of the patients and reports it on the others, never splitting "
                            "a patient: the honest view of what the profile will do.")
holdout = st.slider("Share of patients held out", 0.2, 0.8, 0.5, 0.05) if holdout_on else None

if cases is not None and st.button(f"Validate {len(cases.cases)} images", type="primary",
                                   icon=":material/play_arrow:"):
    bar = st.progress(0.0, text="Scoring the cases…")
    try:
        report, profile = validate_site(
            load_predictor(model_dir), cases, holdout=holdout, profile_name="candidate",
            progress=lambda done, total: bar.progress(done / max(total, 1), text=f"Scored {done} of {total} images"))
    except MedAppError as e:
        st.error(plain(e))
        st.stop()
    bar.empty()
    st.session_state[REPORT_KEY] = (report, profile)

if REPORT_KEY not in st.session_state:
    st.stop()
report, profile = st.session_state[REPORT_KEY]
show_site_report(report)

if profile is not None:
    st.subheader("Save the site profile")
    st.markdown(f"Fitted on {profile.n_cases} in-scope images of {profile.n_patients} patients "
                f"({profile.n_malignant} malignant): threshold {profile.threshold:.3f}. "
                "Once saved it can be chosen under *Calibration* in the sidebar; the shipped card is not changed.")
    for note in profile.notes:
        st.warning(plain(note))
    name = st.text_input("Profile name (letters, digits, '.', '_', '-')", key="profile_name")
    confirmed = st.checkbox("I confirm these are this site's biopsy-proven or followed-up cases, and that results "
                            "calibrated with this profile will say so.", key="profile_confirm")
    if st.button("Save profile", disabled=not (name and confirmed), icon=":material/save:"):
        try:
            if name in list_profiles(model_dir):
                st.warning(f"A profile named {name!r} existed and was replaced.")
            path = profile.renamed(name).save(model_dir)
            st.success(f"Saved site profile {name!r} ({path.name}); choose it under Calibration in the sidebar.")
        except MedAppError as e:
            st.error(plain(e))
