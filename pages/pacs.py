"""PACS: the recent ultrasound studies of the hospital's PACS; "Open" one to read it on the Diagnose page.

The patient's name is shown on this page only, where the clinician picks the right study by it (as literal text,
never logged); the Diagnose page shows the study's images under neutral names ("PACS image 1 of 3").
"""

from __future__ import annotations

import streamlit as st

from medapp.errors import MedAppError
from medapp.markup import plain
from medapp.pacs.browse import NOT_CONFIGURED, connect, default_since, open_study, recent_studies
from medapp.settings import get_settings
from pages.common import PACS_INBOX_KEY, require_frame

require_frame(__file__)

st.title("PACS")
if not get_settings().pacs_url:
    st.info(NOT_CONFIGURED, icon=":material/dns:")
    st.stop()

opened = st.session_state.get(PACS_INBOX_KEY)
if opened is not None:
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.info(" ".join([f"{len(opened.uploads)} image(s) of a PACS study are open on the Diagnose page.",
                        *(f"{plain(note[:1].upper() + note[1:])}." for note in opened.notes)]))
    if right.button("Close that study", key="pacs_close"):
        del st.session_state[PACS_INBOX_KEY]
        st.rerun()

since = st.date_input("Studies on or after", value=default_since(), key="pacs_since")
try:
    client = connect()
    rows, total = recent_studies(client, since)
except MedAppError as e:
    st.error(f"The PACS could not be searched: {plain(e)}")
    st.stop()
if not rows:
    st.info("No ultrasound study on or after this date. Choose an earlier date.")
    st.stop()
st.caption(f"{total} ultrasound stud{'y' if total == 1 else 'ies'}, newest first"
           + (f" (the {len(rows)} newest shown)" if total > len(rows) else "")
           + ". Opening a study replaces the study opened before; uploaded files stay.")

WIDTHS = [4, 2, 2, 1, 1.5]
for column, title in zip(st.columns(WIDTHS), ["Patient", "Study date", "Modalities", "Images", ""], strict=True):
    column.markdown(f"**{title}**")
chosen = None
for row in rows:
    cells = st.columns(WIDTHS, vertical_alignment="center")
    cells[0].text(row.patient)  # literal text: a name is never read as markup
    cells[1].text(row.date)
    cells[2].text(row.modalities)
    cells[3].text(row.images)
    if cells[4].button("Open", key=f"open_{row.key}", icon=":material/folder_open:"):
        chosen = row

if chosen is not None:
    try:
        with st.spinner("Fetching the study's images from the PACS…"):
            inbox = open_study(client, chosen.study_uid)
    except MedAppError as e:
        st.error(f"The study could not be opened: {plain(e)}")
        st.stop()
    st.session_state[PACS_INBOX_KEY] = inbox
    st.switch_page("pages/diagnose.py")
