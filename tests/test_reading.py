"""The clinician's typed case details and sign-off: validation, wording and safe report file names."""

from __future__ import annotations

import datetime as dt

import pytest

from medapp.serving.reading import (
    BIRADS_ASSESSMENTS,
    CaseDetails,
    CaseEntryError,
    SignOff,
    laterality_from_file,
    report_filename,
)

WHEN = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC)


def test_case_details_location_and_cleaning():
    case = CaseDetails(label="  Clinic 7\nlesion A\t", laterality="right", clock=11, distance_cm=2.0)
    assert case.label == "Clinic 7 lesion A"  # one line: no forged lines in reports or logs
    assert case.location == "right breast, 11 o'clock, 2 cm from the nipple"
    assert CaseDetails().location == "" and CaseDetails(clock=3).location == "3 o'clock"


@pytest.mark.parametrize("kwargs", [{"laterality": "both"}, {"clock": 0}, {"clock": 13}, {"clock": 2.5},
                                    {"distance_cm": -1.0}, {"distance_cm": float("nan")}, {"distance_cm": 31.0},
                                    {"label": "x" * 65}])
def test_bad_case_details_refused(kwargs):
    with pytest.raises(CaseEntryError):
        CaseDetails(**kwargs)


def test_laterality_from_the_file():
    assert laterality_from_file("L") == "left" and laterality_from_file(" r ") == "right"
    assert laterality_from_file("B") is None and laterality_from_file(None) is None


def test_sign_off_records_who_when_and_category():
    sign = SignOff.make(agrees=True, birads="4A", comment="Agree;\r\nbiopsy", user="dr.ng", now=WHEN)
    assert sign.time_utc == "2026-12-02T09:30:00Z" and sign.comment == "Agree; biopsy"
    assert sign.summary == "dr.ng agrees with the model estimate; BI-RADS 4A (2026-12-02T09:30:00Z)"
    assert sign.to_dict()["birads"] == "4A" and "4B" in BIRADS_ASSESSMENTS
    with pytest.raises(CaseEntryError, match="BI-RADS"):
        SignOff.make(agrees=True, birads="7", comment="", user="dr.ng")
    with pytest.raises(CaseEntryError, match="comment"):
        SignOff.make(agrees=True, birads="2", comment="x" * 1001, user="dr.ng")


@pytest.mark.parametrize(("label", "name"), [
    ("Clinic 7 / lesion A", "medapp_Clinic_7_lesion_A_2026-12-02.pdf"),
    ("", "medapp_report_2026-12-02.pdf"),
    ("../../etc/passwd", "medapp_etc_passwd_2026-12-02.pdf"),
    ("<script>", "medapp_script_2026-12-02.pdf"),
    ("Müller", "medapp_Muller_2026-12-02.pdf"),
])
def test_report_filename_from_the_typed_label(label, name):
    assert report_filename(label, WHEN) == name
