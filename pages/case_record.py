"""Diagnose page, the clinician's part of one case: typed case details, the sign-off, and the downloads.

Not a page itself (pages/case_view.py calls it). A report leaves only after the export question is answered for
images that state no scan region (text burned into pixels is PHI too).
"""

from __future__ import annotations

import streamlit as st

from medapp.errors import MedAppError
from medapp.markup import plain
from medapp.pacs.browse import describe_send, send_signed
from medapp.reporting.export_region import CHOICES, EXPORT_LABELS, NO_REGION_WARNING, export_region, needs_choice
from medapp.reporting.report import build_report_pdf, overlay_png
from medapp.serving.analysis import Analysis
from medapp.serving.predict import Predictor
from medapp.serving.reading import (
    BIRADS_ASSESSMENTS,
    LATERALITIES,
    CaseDetails,
    SignOff,
    laterality_from_file,
    report_filename,
)
from medapp.serving.worklist import ReadingState
from pages.common import PACS_INBOX_KEY, audit_log
from pages.signin import current_identity


def record(analysis: Analysis, reading: ReadingState) -> tuple[CaseDetails, SignOff | None]:
    """The clinician's typed case details and sign-off (recorded in the audit log when given)."""
    sha, image = analysis.file_sha256, analysis.image
    with st.expander("Case details and sign-off", expanded=True):
        cols = st.columns(4)
        label = cols[0].text_input("Case label", max_chars=64, key=f"label_{sha}",
                                   help="Typed by you, never read from the file; names the report")
        from_file = laterality_from_file(image.metadata.get("laterality"))
        side = cols[1].selectbox("Laterality", [None, *LATERALITIES], key=f"side_{sha}",
                                 index=[None, *LATERALITIES].index(from_file), help="From the file when it says so")
        clock = cols[2].selectbox("Clock", [None, *range(1, 13)], key=f"clock_{sha}")
        distance = cols[3].number_input("cm from nipple", 0.0, 30.0, None, 0.5, key=f"dist_{sha}")
        case = CaseDetails(label=label, laterality=side, clock=clock, distance_cm=distance)
        signed = reading.sign_offs.get(sha)
        if signed is not None:
            st.success(f"Signed: {plain(signed.summary)}", icon=":material/verified:")
            return case, signed
        with st.form(f"sign_{sha}"):
            verdict = st.radio("Your verdict", ["Agree", "Disagree"], horizontal=True, key=f"verdict_{sha}")
            birads = st.selectbox("Your BI-RADS assessment", BIRADS_ASSESSMENTS, index=None, key=f"birads_{sha}")
            comment = st.text_area("Comment", max_chars=1000, key=f"comment_{sha}")
            if st.form_submit_button("Sign off", icon=":material/draw:", key=f"sign_off_{sha}"):
                try:
                    sign = SignOff.make(agrees=verdict == "Agree", birads=birads or "", comment=comment,
                                        user=current_identity().user)
                    reading.sign(analysis, sign, audit_log())
                    st.rerun()
                except MedAppError as e:
                    st.error(plain(e))
    return case, None


def downloads(analysis: Analysis, predictor: Predictor, shown, overlay, case: CaseDetails,
               sign: SignOff | None) -> None:
    choice = None
    if needs_choice(analysis.image):  # the pixels may show names: the clinician decides what leaves, first
        st.warning(NO_REGION_WARNING, icon=":material/visibility_off:")
        choice = st.radio("Export", [None, *CHOICES], key=f"export_{analysis.file_sha256}",
                          format_func=EXPORT_LABELS.get)
        if choice is None:
            return
    export = export_region(analysis.image, choice)
    st.caption(f"Downloads: {export.description}.")
    st.download_button(  # built on click only, so reruns stay fast
        "Download PDF report", lambda: build_report_pdf(
            analysis.image, analysis.prediction, predictor.card, file_sha256=analysis.file_sha256, overlay=overlay,
            shown=shown, case=case, sign_off=sign, export=export),
        report_filename(case.label), "application/pdf", icon=":material/picture_as_pdf:")
    if overlay is not None:
        st.download_button("Download overlay PNG", lambda: overlay_png(overlay, export),
                           report_filename(case.label, suffix="png"), "image/png", icon=":material/image:")
    if sign is not None:
        send_to_pacs(analysis, predictor, case, sign, choice)


def send_to_pacs(analysis: Analysis, predictor: Predictor, case: CaseDetails, sign: SignOff,
                 choice: str | None) -> None:
    """For an image opened from the PACS, once signed: the signed SR and PDF into its study (sending again is
    safe: what is there is not sent twice). A failure keeps everything in the session; send again later."""
    inbox = st.session_state.get(PACS_INBOX_KEY)
    sha = analysis.file_sha256
    if inbox is None or inbox.source(sha) is None:
        return
    if st.button("Send to PACS", icon=":material/cloud_upload:", key=f"send_{sha}",
                 help="The signed result (DICOM SR) and the PDF report go into this image's study"):
        try:
            with st.spinner("Storing the signed result in the PACS…"):
                send_signed(inbox, analysis, sign, case, predictor, audit_log(), choice)
        except MedAppError as e:
            st.error(f"Not sent: {plain(e)}  \nYour sign-off is kept in this session: press Send to PACS again "
                     "when the PACS answers.")
            return
    if sha in inbox.sent:
        st.success(describe_send(inbox.sent[sha]), icon=":material/cloud_done:")
