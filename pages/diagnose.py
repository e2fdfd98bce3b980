"""Diagnose: upload images, read the worklist, open a case, review the estimate, record a sign-off, download."""

from __future__ import annotations

import streamlit as st

from medapp.markup import plain
from medapp.serving.analysis import FULL_WINDOW, VIEWER_OPACITY, Upload, Workspace
from medapp.serving.worklist import ReadingState
from medapp.settings import MB, get_settings
from pages.case_view import heatmap_method, show_case
from pages.common import PACS_INBOX_KEY, audit_log, get_predictor, require_frame
from pages.worklist_view import analyze_with_progress, lesion_groups, worklist

require_frame(__file__)

st.title("Diagnose")
predictor = get_predictor()
limit_mb = get_settings().max_file_bytes / MB
files = st.file_uploader(f"Drop breast-ultrasound images here: PNG, JPEG, BMP, TIFF or DICOM, up to {limit_mb:g} MB "
                         "each (any file name)", accept_multiple_files=True, key="uploads")
from_pacs = st.session_state.get(PACS_INBOX_KEY)  # a study opened on the PACS page: its images join the uploads
uploads = [Upload(f.name, f.getvalue()) for f in files or []] + (from_pacs.uploads if from_pacs else [])
if predictor is None or not uploads:
    st.info("Upload one or more images (or open a study on the PACS page) to see the model's estimate. Several "
            "images give a worklist.")
    st.stop()

listing = st.container()  # fixed places on the page: the case view below never shifts with the list above
case_slot = st.empty()
workspace = st.session_state.setdefault("workspace", Workspace())
reading = st.session_state.setdefault("reading", ReadingState())
viewer = st.sidebar.container(border=True)  # the viewer's controls beside the page, so the case fits the screen
viewer.markdown("**Viewer**")
with viewer:
    cam_method = heatmap_method(predictor)
with listing:
    analyses = analyze_with_progress(workspace, predictor, uploads, cam_method)
    for refused in (a for a in analyses if a.error):
        st.error(f"**{plain(refused.name)}** was not analysed: {plain(refused.error)}")
    rows = reading.rows(analyses)
    if not rows:
        st.stop()
    chosen = worklist(rows, reading)
    lesion_groups(analyses, reading)
    first = analyses[chosen["index"]]
    opacity, outline = VIEWER_OPACITY, True  # no heatmap or outline outside intended use: no controls either
    if chosen["p_malignant"] is not None:
        opacity = viewer.slider("Heatmap opacity", 0.0, 1.0, VIEWER_OPACITY, 0.05)
        outline = viewer.toggle("Lesion outline", value=True, key="lesion_outline",
                                help="The model's outline of the lesion and its two diameters, drawn on the image")
    frame = None
    if first.image.frame_count > 1:
        frame = viewer.number_input(f"Frame (of {first.image.frame_count})", 1, first.image.frame_count,
                                    key=f"frame_{first.file_sha256}") - 1
    window = None
    if first.image.source_kind == "dicom":
        level = viewer.slider("Window level", 0.0, 1.0, FULL_WINDOW[0], 0.01, key=f"level_{first.file_sha256}")
        width = viewer.slider("Window width", 0.05, 1.0, FULL_WINDOW[1], 0.01, key=f"width_{first.file_sha256}")
        window = (level, width)

if st.session_state.get("shown_case") != chosen["sha"]:  # another case: clear the old one before computing
    case_slot.info(f"Opening {plain(first.name)}…", icon=":material/hourglass_top:")
with case_slot.container(), st.spinner("Computing the heatmap…"):
    analysis = workspace.open(predictor, uploads[chosen["index"]], frame=frame, cam_method=cam_method,
                              audit=audit_log())
    st.session_state["shown_case"] = chosen["sha"]
    if analysis.error:
        st.error(f"**{plain(analysis.name)}** was not analysed: {plain(analysis.error)}")
    else:
        show_case(analysis, predictor, reading, opacity=opacity, window=window, outline=outline)
