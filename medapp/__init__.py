"""medapp: decision support for breast ultrasound. All logic lives here; the Streamlit pages only call into it."""

from __future__ import annotations

__version__ = "0.1.0"
