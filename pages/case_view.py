"""Diagnose page, one open case: image (with the model's lesion outline) and heatmap, the lesion's measurements, the
estimate in one consistent story, the clinician's record.

Not a page itself (pages/diagnose.py calls :func:`show_case` inside a placeholder that is emptied before another
case is computed, so an old result never stands beside a new image).
"""

from __future__ import annotations

import streamlit as st

from medapp.formatting import format_probability
from medapp.markup import plain
from medapp.model.explain import CAM_DESCRIPTIONS, cam_label, colorbar_image, list_cam_methods
from medapp.reporting.report import HEATMAP_CAPTION, HEATMAP_CAVEAT
from medapp.serving.analysis import Analysis, is_windowed, lesion_text, outlined, viewer_images
from medapp.serving.likelihood import TONE_BADGES, TONE_COLOURS
from medapp.serving.predict import Predictor
from medapp.serving.quality import refusal_advice
from medapp.serving.reading import image_facts
from medapp.serving.worklist import ReadingState
from pages.case_record import downloads, record


def heatmap_method(predictor: Predictor) -> str:
    """The card's recommended heatmap; the others only under "Advanced", each with a one-line description."""
    with st.expander("Advanced: other heatmap methods"):
        methods = list_cam_methods()
        return st.radio("Heatmap method", methods, index=methods.index(predictor.default_cam_method),
                        key="cam_method", format_func=lambda m: CAM_DESCRIPTIONS.get(m, m)
                        + (" (recommended)" if m == predictor.default_cam_method else ""))


def _result(analysis: Analysis) -> None:
    prediction = analysis.prediction
    if not analysis.in_scope:
        st.warning("**Outside the model's intended use: no estimate is shown for this image.**  \n"
                   + "  \n".join(f"- {plain(r)}" for r in prediction.out_of_scope_reasons), icon=":material/block:")
        st.info(refusal_advice(prediction.scope_score, prediction.scope_threshold, prediction.quality_flags))
        return
    st.metric("Probability of malignancy (calibrated)", format_probability(prediction.p_malignant),
              help=f"Uncertainty ±{format_probability(prediction.uncertainty)} over {prediction.tta_views} views")
    tone = prediction.decision_tone
    st.markdown(f":{TONE_COLOURS[tone]}-badge[{TONE_BADGES[tone]}] **{prediction.category.label}**")
    st.markdown(prediction.decision_text)
    if prediction.low_confidence:
        st.warning(f"Low confidence: the estimate moves by ±{format_probability(prediction.uncertainty)} across "
                   "views of the image, or sits close to the threshold. Interpret with extra care.",
                   icon=":material/help:")
    st.caption(f"Operating threshold {format_probability(prediction.threshold)} · {prediction.calibration}")
    for name, value in prediction.probabilities.items():
        st.progress(value, text=f"{name}: {format_probability(value)}")


def _lesion(analysis: Analysis, drawn: bool) -> None:
    """The outlined lesion's measurements and descriptors (and the drawing's legend when drawn), or why none."""
    text = lesion_text(analysis)
    if isinstance(text, str):
        st.caption(f"Lesion outline: {plain(text)}")
    elif text is not None:
        st.markdown("**Lesion, from the model's outline**\n\n"
                    + "\n".join(f"- {plain(label)}: {plain(value)}" for label, value in text.rows))
        st.caption(f"{plain(text.source)} {plain(text.scale)}" + (f"  \n{plain(text.legend)}" if drawn else ""))


def show_case(analysis: Analysis, predictor: Predictor, reading: ReadingState, *, opacity: float,
              window: tuple[float, float] | None, outline: bool = True) -> None:
    shown, overlay = viewer_images(analysis, opacity=opacity, window=window)
    picture = outlined(analysis, shown) if outline else shown
    st.subheader(plain(analysis.name))
    pictures, result = st.columns([3, 2], gap="large")
    with pictures:
        layout = "Image"
        if overlay is not None:  # side by side, or one picture at the column's full width
            layout = st.segmented_control("Show", ["Both", "Image", "Heatmap"], default="Both", key="picture_layout",
                                          label_visibility="collapsed") or "Both"
        left, right = st.columns(2) if layout == "Both" else (st.container(), st.container())
        if layout in ("Both", "Image"):
            left.image(picture, caption="Image", width="stretch")
        if overlay is not None and layout in ("Both", "Heatmap"):
            right.image(overlay, caption=f"{HEATMAP_CAPTION} ({cam_label(analysis.prediction.cam_method)})",
                        width="stretch")
            right.image(colorbar_image(256, 12, vertical=False), caption="low ← contribution → high", width="stretch")
            right.caption(HEATMAP_CAVEAT)
        _lesion(analysis, drawn=picture is not shown)
    with result:
        _result(analysis)
        case, sign = record(analysis, reading)
        downloads(analysis, predictor, shown if is_windowed(window) else None, overlay, case, sign)
    with st.expander("Image details"):
        st.table(image_facts(analysis.image))
        for note in analysis.image.notes:
            st.caption(plain(note))
