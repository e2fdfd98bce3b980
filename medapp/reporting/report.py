"""The downloadable report: a one-page PDF of one analysis, and the overlay as PNG.

Neither carries the file name, patient fields or DICOM header values beyond the equipment-free image facts
(format, size, frame); the PDF's document metadata names only medapp. The image is identified, as in the audit
log, by the SHA-256 of the uploaded bytes, which lets a reader match the report to a file they hold. Pixels can
carry names too: every picture goes through an :class:`~medapp.reporting.export_region.ExportRegion` (the scan
region only, or bands blanked, or the whole image the user confirmed), and the PDF says which. The model's lesion
outline and calipers are drawn on the image first and the picture cropped after, so they line up with the scan.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import matplotlib
import numpy as np
from fpdf import FPDF
from PIL import Image

from ..formatting import format_percent, format_probability
from ..intake.medical_image import MedicalImage
from ..model.card import INTENDED_USE, ModelCard
from ..serving.likelihood import DISCLAIMER
from ..serving.outline_overlay import describe_lesion, draw_outline
from ..serving.predict import Prediction
from ..serving.reading import CaseDetails, SignOff
from .export_region import ExportRegion

DECISION_SUPPORT = "Decision support only, not a diagnosis"
# The heatmap explains the malignancy estimate whatever the top class; it is where the model looked, not an outline.
HEATMAP_CAPTION = "What raised the malignancy estimate"
HEATMAP_CAVEAT = ("The heatmap shows which parts of the image raised the malignancy estimate: where the model looked, "
                  "not a lesion outline. It can be wrong when the model is.")
LESION_HEADING = "Lesion (from the model's outline)"
_FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"  # DejaVu: Unicode glyphs (≤, –, µ) in the PDF
_MAX_IMAGE_SIDE = 800  # px embedded per picture: sharp at ~85 mm wide, keeps the PDF small


def overlay_png(overlay: np.ndarray, export: ExportRegion) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes of its exportable part, with no text chunks (no metadata at all)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(export.apply(overlay), dtype=np.uint8)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _picture(rgb: np.ndarray) -> Image.Image:
    im = Image.fromarray(np.asarray(rgb, dtype=np.uint8))
    im.thumbnail((_MAX_IMAGE_SIDE, _MAX_IMAGE_SIDE))
    return im


def new_pdf(title: str, created: dt.datetime, pdf_class: type[FPDF] = FPDF) -> FPDF:
    """An A4 document on its first page: metadata that names only medapp (no PHI in the file's properties) and
    DejaVu regular and bold as "DejaVu" (matplotlib's copy, so nothing is fetched)."""
    pdf = pdf_class(format="A4")
    pdf.set_title(title)
    pdf.set_creator("medapp")
    pdf.set_producer("medapp")
    pdf.set_creation_date(created)
    pdf.add_font("DejaVu", "", str(_FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(_FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    return pdf


class _Report(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("DejaVu", size=7)
        self.set_text_color(90)
        self.cell(0, 5, f"medapp report · {DECISION_SUPPORT} · page {self.page_no()}", align="C")


def build_report_pdf(image: MedicalImage, prediction: Prediction, card: ModelCard, *, file_sha256: str,
                     export: ExportRegion, overlay: np.ndarray | None = None, shown: np.ndarray | None = None,
                     case: CaseDetails | None = None, sign_off: SignOff | None = None,
                     created: dt.datetime | None = None) -> bytes:
    """A PDF of one analysis: image and overlay, result, scope, model identity, UTC time and intended use.

    ``shown`` is the image as the clinician windowed it on screen (default: the image as decoded). Both pictures
    are limited by ``export`` (see :mod:`medapp.reporting.export_region`). ``case`` (the typed label and lesion
    location) and ``sign_off`` (the radiologist's verdict) are printed when given. An out-of-scope image shows no
    probability, category, overlay or lesion outline: only why it is outside intended use. The outlined lesion's
    measurements and descriptors (:mod:`medapp.serving.outline_overlay`) follow the result, with their source.
    """
    created = (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    pdf = new_pdf("medapp decision-support report", created, _Report)
    width = pdf.epw

    pdf.set_font("DejaVu", "B", 16)
    pdf.cell(0, 9, "Breast ultrasound: model estimate", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "B", 10)
    pdf.set_text_color(180, 40, 40)
    pdf.cell(0, 6, f"{DECISION_SUPPORT}.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0)
    pdf.set_font("DejaVu", size=8)
    pdf.multi_cell(width, 4.2, f"Generated {created.strftime('%Y-%m-%d %H:%M:%S')} UTC · image SHA-256 "
                   f"{file_sha256} · {image.source_kind.upper()}, {image.original_size[1]}x{image.original_size[0]} px"
                   f", frame {image.frame_index + 1} of {image.frame_count}", new_x="LMARGIN", new_y="NEXT")
    if case is not None and (case.label or case.location):
        pdf.set_font("DejaVu", "B", 10)
        pdf.multi_cell(width, 5, "; ".join(x for x in (f"Case {case.label}" if case.label else "", case.location)
                                           if x), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)

    top = pdf.get_y()
    half = (width - 6) / 2
    base, caption = (image.display, "Image") if shown is None else (shown, "Image (as windowed on screen)")
    lesion = prediction.lesion if prediction.in_scope else None
    if lesion is not None:  # drawn on the full image, cropped with it below
        base, caption = draw_outline(base, lesion), f"{caption} with the model's lesion outline"
    pictures = [(caption, base)] + ([(HEATMAP_CAPTION, overlay)] if overlay is not None
                                    and prediction.in_scope else [])
    bottom = top
    for i, (caption, rgb) in enumerate(pictures):
        im = _picture(export.apply(rgb))
        x = pdf.l_margin + i * (half + 6)
        h = min(half * im.height / im.width, 95)
        w = h * im.width / im.height
        pdf.set_font("DejaVu", size=8)
        pdf.set_xy(x, top)
        pdf.cell(w, 4, caption)
        pdf.image(im, x=x, y=top + 5, w=w, h=h)
        bottom = max(bottom, top + 5 + h)
    pdf.set_y(bottom + 4)

    def row(label: str, value: str, bold: bool = False, size: int = 10) -> None:
        pdf.set_font("DejaVu", "B" if bold else "", size)
        pdf.set_x(pdf.l_margin)
        pdf.cell(48, 6, label)
        pdf.multi_cell(width - 48, 6, value, new_x="LMARGIN", new_y="NEXT")

    pdf.set_font("DejaVu", "B", 12)
    pdf.cell(0, 7, "Result", new_x="LMARGIN", new_y="NEXT")
    if prediction.in_scope:
        row("P(malignant)", f"{format_probability(prediction.p_malignant)} (calibrated)", bold=True)
        row("Likelihood category", prediction.category.label)
        row("Decision", prediction.decision_text)
        row("Class probabilities",
            ", ".join(f"{k} {format_probability(v)}" for k, v in prediction.probabilities.items()))
        row("Uncertainty", f"±{format_percent(prediction.uncertainty)} across {prediction.tta_views} test-time views"
            + ("; LOW CONFIDENCE, interpret with extra care" if prediction.low_confidence else ""))
        row("Heatmap", f"{prediction.cam_method}, explaining class '{prediction.cam_target}'. {HEATMAP_CAVEAT}")
        row("Scope", f"within intended use (scope score {prediction.scope_score:.1f}, limit "
            f"{prediction.scope_threshold:.1f}); no quality problem found")
    else:
        row("Scope", "OUTSIDE INTENDED USE: no probability is reported for this image", bold=True)
        for reason in prediction.out_of_scope_reasons:
            row("", f"• {reason}")
    row("Image pixels", export.description, size=8)
    if image.notes:
        row("Intake notes", "; ".join(image.notes))
    pdf.ln(2)

    if prediction.in_scope and (lesion is not None or prediction.lesion_note):
        pdf.set_font("DejaVu", "B", 12)
        pdf.cell(0, 7, LESION_HEADING, new_x="LMARGIN", new_y="NEXT")
        if lesion is None:
            row("Outline", prediction.lesion_note)
        else:
            text = describe_lesion(lesion)
            for label, value in text.rows:
                row(label, value)
            row("", f"{text.source} {text.scale} {text.legend}", size=8)
        pdf.ln(2)

    if sign_off is not None:
        pdf.set_font("DejaVu", "B", 12)
        pdf.cell(0, 7, "Radiologist sign-off", new_x="LMARGIN", new_y="NEXT")
        row("Verdict", "agrees with the model estimate" if sign_off.agrees else "disagrees with the model estimate",
            bold=True)
        row("BI-RADS assessment", sign_off.birads)
        if sign_off.comment:
            row("Comment", sign_off.comment)
        row("Signed", f"{sign_off.user}, {sign_off.time_utc}")
        pdf.ln(2)
    pdf.set_font("DejaVu", "B", 12)
    pdf.cell(0, 7, "Model", new_x="LMARGIN", new_y="NEXT")
    row("Name and version", f"{prediction.model.get('name', card.name)} {prediction.model.get('version', card.version)}")
    row("Weights SHA-256", prediction.model.get("sha256", card.weights_sha256) or "not recorded", size=8)
    row("Calibration", prediction.calibration)
    pdf.ln(2)
    pdf.set_font("DejaVu", "B", 12)
    pdf.cell(0, 7, "Intended use", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=9)
    pdf.multi_cell(width, 4.8, card.intended_use or INTENDED_USE, new_x="LMARGIN", new_y="NEXT")
    if card.out_of_scope_use:
        pdf.multi_cell(width, 4.8, f"Not for: {card.out_of_scope_use}", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(width, 4.8, DISCLAIMER, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
