"""Diagnose page, worklist part: analysis with per-file progress, the sorted list, next/previous, lesion groups.

Not a page itself (pages/diagnose.py calls it). The open case is kept by identity in medapp's ReadingState, so
adding files or re-sorting never opens another patient's image.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from medapp.formatting import format_probability
from medapp.markup import plain
from medapp.serving.analysis import Analysis, Upload, Workspace, worklist_rows
from medapp.serving.predict import Predictor
from medapp.serving.worklist import ReadingState
from pages.common import audit_log

ROWS_KEY = "worklist_rows"
SHORTCUTS = "Keyboard: **J** next case, **K** previous case."


def analyze_with_progress(workspace: Workspace, predictor: Predictor, uploads: list[Upload],
                          cam_method: str | None) -> list[Analysis]:
    """Every upload's analysis; new files show a progress bar naming the file, and each result as it finishes."""
    analyses: list[Analysis] = []
    bar = live = None
    for i, (analysis, fresh) in enumerate(workspace.analyze_each(predictor, uploads, cam_method=cam_method,
                                                                 audit=audit_log()), start=1):
        analyses.append(analysis)
        if fresh and len(uploads) > 1:
            bar, live = bar or st.progress(0.0), live or st.empty()
            bar.progress(i / len(uploads), text=f"Analysed {i} of {len(uploads)}: {plain(analysis.name)}")
            live.dataframe(worklist_rows(analyses), hide_index=True, column_order=["file", "p_text", "category"],
                           column_config={"file": "File", "category": "Category", "p_text": "P(malignant)"})
    for done in (bar, live):
        if done is not None:
            done.empty()
    return analyses


def _clicked(reading: ReadingState, key: str) -> None:
    """The worklist's on_select: open the clicked row's case (rows as shown when it was clicked)."""
    rows = st.session_state.get(ROWS_KEY, [])
    picked = st.session_state[key].selection.rows
    if picked and picked[0] < len(rows):
        reading.selected = rows[picked[0]]["sha"]


def worklist(rows: list[dict], reading: ReadingState) -> dict:
    """The sorted worklist (several images) with next/previous buttons; returns the open case's row."""
    chosen = reading.choose(rows)
    if len(rows) == 1:
        return chosen
    st.subheader("Worklist", help="Most suspicious first; images outside intended use come last. Click a row to "
                 "open it. " + SHORTCUTS)
    nav = st.columns([1.5, 1.2, 5])
    if nav[0].button("Previous", icon=":material/arrow_upward:", shortcut="k", key="previous_case"):
        reading.step(rows, -1)
    if nav[1].button("Next", icon=":material/arrow_downward:", shortcut="j", key="next_case"):
        reading.step(rows, +1)
    chosen = reading.choose(rows)
    nav[2].caption(SHORTCUTS)
    shown = [{**r, "open": "▶" if r["sha"] == chosen["sha"] else ""} for r in rows]
    st.session_state[ROWS_KEY] = shown
    identity = hashlib.sha256("".join(r["sha"] for r in rows).encode() + chosen["sha"].encode()).hexdigest()[:16]
    key = f"worklist_{identity}"  # a new list or a new open case: the highlight follows the case, not the row
    st.dataframe(
        shown, hide_index=True, on_select=lambda: _clicked(reading, key), selection_mode="single-row", key=key,
        selection_default={"selection": {"rows": [rows.index(chosen)], "columns": []}},
        column_order=["open", "file", "p_text", "category", "lesion", "signed", "flags"],
        column_config={"open": st.column_config.TextColumn("", width=30), "file": "File", "category": "Category",
                       "lesion": "Lesion", "signed": "Sign-off", "flags": "Flags", "p_text": "P(malignant)"})
    return chosen


def lesion_groups(analyses: list[Analysis], reading: ReadingState) -> None:
    """Group images into one lesion (two views of one mass) and show each lesion's combined estimate."""
    names = {a.file_sha256: a.name for a in analyses if a.ok}
    if len(names) < 2:
        return
    with st.container(border=True):
        st.markdown("**One lesion, several views**: group the images of one mass (e.g. radial and antiradial) for "
                    "one lesion estimate beside each view's.")
        picked = st.multiselect("Images of one lesion", list(names), format_func=names.get, key="lesion_pick")
        label = st.text_input("Lesion name", value="Lesion 1", max_chars=40, key="lesion_name")
        if st.button("Group as one lesion", disabled=len(picked) < 2):
            reading.group(picked, label)
            st.rerun()  # the worklist above shows the new lesion column at once
        for lesion in reading.lesion_estimates(analyses):
            views = ", ".join(f"{plain(name)} {format_probability(p)}" for name, p in lesion.views)
            combined = format_probability(lesion.p_malignant) if lesion.p_malignant is not None else "n/a"
            st.markdown(f"**{plain(lesion.name)}**: lesion estimate **{combined}** from {len(lesion.views)} "
                        f"view(s) ({views}; mean of log-odds)")
            if lesion.left_out:
                st.caption("Left out (outside intended use): " + ", ".join(plain(n) for n in lesion.left_out))
