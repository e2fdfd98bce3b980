"""Which pixels of an image may leave medapp in a report or overlay: text burned into the pixels is PHI too.

Ultrasound frames show the patient's name, ID, birth date and the institution in the pixels around the scan, and
header de-identification cannot touch them. Every export (the PDF, the overlay PNG, ``predict --overlay-dir``)
therefore goes through :func:`export_region`:

- the file states its scan region (DICOM Ultrasound Region Sequence, :mod:`medapp.intake.us_regions`): the export is
  cropped to it, and nothing around it leaves;
- it does not (PNG/JPEG, or a DICOM without regions): there is no safe automatic answer, so the user must choose,
  before any export is built, between blanking the header and footer bands (:data:`BAND_FRACTION` of the height
  each, where scanners put the name and the date) and keeping the whole image after checking that it shows no
  patient details. Without a choice :class:`~medapp.errors.ExportNotConfirmedError` is raised.

The report says which of these was applied, so the reader knows what the picture can and cannot contain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ExportNotConfirmedError
from ..intake.medical_image import MedicalImage

SCAN_REGION = "scan_region"
BLANK_BANDS = "blank_bands"
WHOLE_IMAGE = "whole_image"
CHOICES = (BLANK_BANDS, WHOLE_IMAGE)  # what a user may choose when the file states no scan region
BAND_FRACTION = 0.12
NO_REGION_WARNING = (
    "This image states no scan region, so medapp cannot tell the scan from text drawn around it: names, IDs and "
    "dates burned into the pixels would go into the report and overlay. Choose how to export it."
)
EXPORT_LABELS = {
    None: "Choose before downloading",
    BLANK_BANDS: f"Blank the top and bottom bands ({BAND_FRACTION:.0%} each), where scanners draw names and dates",
    WHOLE_IMAGE: "Keep the whole image: I checked it shows no patient details",
}
_DESCRIPTIONS = {
    SCAN_REGION: "cropped to the scan region the DICOM file states (Ultrasound Region Sequence); text drawn "
                 "around the scan is left out",
    BLANK_BANDS: f"no scan region stated; the top and bottom {BAND_FRACTION:.0%} of the image (where scanners "
                 "draw the name and the date) are blanked; text elsewhere in the image is not removed",
    WHOLE_IMAGE: "no scan region stated; the whole image is exported, as the user confirmed it shows no patient "
                 "details",
}  # fmt: skip


@dataclass(frozen=True)
class ExportRegion:
    """How an image's pixels are limited for export; :meth:`apply` works on the image or any resized copy."""

    mode: str
    box: tuple[int, int, int, int] | None  # (top, left, bottom, right) in the image's own pixels
    image_size: tuple[int, int]  # (height, width) the box refers to

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self.mode]

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The exportable copy of ``rgb`` (the image, its windowed view or its overlay, at any scale)."""
        height, width = rgb.shape[:2]
        if self.mode == SCAN_REGION and self.box is not None:
            sy, sx = height / self.image_size[0], width / self.image_size[1]
            top, left, bottom, right = self.box
            return np.ascontiguousarray(rgb[round(top * sy) : max(round(bottom * sy), round(top * sy) + 1),
                                            round(left * sx) : max(round(right * sx), round(left * sx) + 1)])
        out = np.array(rgb, copy=True)
        if self.mode == BLANK_BANDS:
            band = max(1, round(height * BAND_FRACTION))
            out[:band] = 0
            out[height - band :] = 0
        return out


def needs_choice(image: MedicalImage) -> bool:
    """True when the user must choose how to export ``image`` (no scan region stated)."""
    return image.scan_region is None


def export_region(image: MedicalImage, choice: str | None = None) -> ExportRegion:
    """The scan region when the file states one (``choice`` is then ignored), else the user's ``choice``.

    Raises :class:`ExportNotConfirmedError` when a choice is needed and missing or unknown.
    """
    if image.scan_region is not None:
        return ExportRegion(SCAN_REGION, image.scan_region, image.original_size)
    if choice not in CHOICES:
        raise ExportNotConfirmedError(
            "this image states no scan region, so text burned into its pixels (names, IDs, dates) could be "
            f"exported; choose {BLANK_BANDS.replace('_', ' ')} or confirm the whole image shows no patient details"
        )
    return ExportRegion(choice, None, image.original_size)
