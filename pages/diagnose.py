"""Diagnose: upload images, review the estimate and where the model looked, download a report."""

from __future__ import annotations

import streamlit as st

from medapp.formatting import format_probability
from medapp.markup import plain
from medapp.model.explain import colorbar_image, list_cam_methods
from medapp.reporting.report import build_report_pdf, overlay_png
from medapp.serving.analysis import Upload, Workspace, viewer_images, worklist_rows
from pages.common import audit_log, get_predictor, require_frame

require_frame(__file__)

st.title("Diagnose")
predictor = get_predictor()
files = st.file_uploader("Drop breast-ultrasound images here: PNG, JPEG, BMP, TIFF or DICOM (any file name)",
                         accept_multiple_files=True, key="uploads")
if predictor is None or not files:
    st.info("Upload one or more images to see the model's estimate. Several images give a worklist.")
    st.stop()

workspace = st.session_state.setdefault("workspace", Workspace())
uploads = [Upload(f.name, f.getvalue()) for f in files]
cam_method = st.session_state.get("cam_method", predictor.default_cam_method)
with st.spinner("Analysing…"):
    analyses = workspace.analyze(predictor, uploads, cam_method=cam_method, audit=audit_log())
for refused in (a for a in analyses if a.error):
    st.error(f"**{plain(refused.name)}** was not analysed: {plain(refused.error)}")
rows = worklist_rows(analyses)
if not rows:
    st.stop()

chosen = rows[0]
if len(rows) > 1:
    st.subheader("Worklist", help="Most suspicious first; images outside intended use come last. Click a row.")
    event = st.dataframe(
        rows, hide_index=True, on_select="rerun", selection_mode="single-row", key="worklist",
        column_order=["file", "p_malignant", "category", "flags"],
        column_config={"file": "File", "category": "Category", "flags": "Flags",
                       "p_malignant": st.column_config.ProgressColumn("P(malignant)", format="percent")})
    chosen = rows[event.selection.rows[0]] if event.selection.rows else rows[0]

first = analyses[chosen["index"]]
controls = st.columns(4)
cam_method = controls[0].selectbox("Heatmap method", list_cam_methods(), key="cam_method",
                                   index=list_cam_methods().index(predictor.default_cam_method))
opacity = controls[1].slider("Heatmap opacity", 0.0, 1.0, 0.4, 0.05)
frame = None
if first.image.frame_count > 1:
    frame = controls[2].number_input(f"Frame (of {first.image.frame_count})", 1, first.image.frame_count,
                                     key=f"frame_{first.file_sha256}") - 1
window = None
if first.image.source_kind == "dicom":
    level = controls[3].slider("Window level", 0.0, 1.0, 0.5, 0.01, key=f"level_{first.file_sha256}")
    width = controls[3].slider("Window width", 0.05, 1.0, 1.0, 0.01, key=f"width_{first.file_sha256}")
    window = (level, width)
with st.spinner("Computing the heatmap…"):
    analysis = workspace.open(predictor, uploads[chosen["index"]], frame=frame, cam_method=cam_method,
                              audit=audit_log())
prediction = analysis.prediction
original, overlay = viewer_images(analysis, opacity=opacity, window=window)

st.subheader(plain(analysis.name))
pictures, result = st.columns([3, 2], gap="large")
with pictures:
    left, right = st.columns(2)
    left.image(original, caption="Image", width="stretch")
    if overlay is not None:
        right.image(overlay, caption=f"Where the model looked ({prediction.cam_method})", width="stretch")
        right.image(colorbar_image(256, 12, vertical=False), caption="low ← attention → high", width="stretch")
with result:
    if not analysis.in_scope:
        st.warning("**Outside the model's intended use: no result is shown for this image.**  \n"
                   + "  \n".join(f"- {plain(r)}" for r in prediction.out_of_scope_reasons), icon=":material/block:")
    else:
        st.metric("Probability of malignancy (calibrated)", format_probability(prediction.p_malignant),
                  help=f"Uncertainty ±{prediction.uncertainty:.1%} over {prediction.tta_views} test-time views")
        st.markdown(f"**{prediction.category.label}**")
        badge = ":orange-badge[Above threshold]" if prediction.decision else ":green-badge[Below threshold]"
        st.markdown(f"{badge} {prediction.decision_text}")
        if prediction.low_confidence:
            st.warning(f"Low confidence: uncertainty ±{prediction.uncertainty:.1%} or close to the threshold "
                       f"{prediction.threshold:.0%}. Interpret with extra care.", icon=":material/help:")
        st.caption(f"Uncertainty ±{prediction.uncertainty:.1%} · operating threshold {prediction.threshold:.0%}"
                   f" · {prediction.calibration}")
        for name, value in prediction.probabilities.items():
            st.progress(value, text=f"{name}: {format_probability(value)}")
        st.download_button(  # built on click only, so reruns stay fast
            "Download PDF report", lambda: build_report_pdf(analysis.image, prediction, predictor.card,
                                                            file_sha256=analysis.file_sha256, overlay=overlay),
            "medapp_report.pdf", "application/pdf", icon=":material/picture_as_pdf:")
        st.download_button("Download overlay PNG", lambda: overlay_png(overlay), "medapp_overlay.png", "image/png",
                           icon=":material/image:")
    with st.expander("Image details"):
        st.write({"format": analysis.image.source_kind, "size (h×w px)": analysis.image.original_size,
                  "frame": f"{analysis.image.frame_index + 1} of {analysis.image.frame_count}",
                  **analysis.image.metadata})
        for note in analysis.image.notes:
            st.caption(plain(note))
