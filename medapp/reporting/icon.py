"""The browser-tab icon, drawn here: a Material or emoji icon would be fetched from a font host outside the
hospital network (Streamlit turns them into links to one), and the app must fetch nothing from outside."""

from __future__ import annotations

from PIL import Image, ImageDraw


def app_icon() -> Image.Image:
    """An ultrasound sector on the app's dark surround, 64 px."""
    icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.rounded_rectangle((0, 0, 63, 63), radius=12, fill="#0e1117")
    draw.pieslice((-8, -34, 72, 58), start=55, end=125, fill="#58a6ff")
    return icon
