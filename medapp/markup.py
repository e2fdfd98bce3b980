"""User- and file-derived text shown on a page or printed on a terminal, made inert.

Streamlit renders the text of ``st.error``, ``st.warning``, ``st.caption``, ``st.subheader`` and ``st.markdown`` as
Markdown, so a file named ``[Open the full report](https:host).png`` became a clickable link in a red error box,
and ``![x](https:host/t.png)`` made the browser fetch from outside the hospital (issue 12). Every string that
comes from an upload (file names, DICOM values, CSV cells, messages that quote them) goes through :func:`plain`
before it reaches such an element; text medapp writes itself does not need to. On a terminal the danger is a
file name with a newline (it forged a line in ``predict``'s output) or an escape sequence: :func:`one_line`.
"""

from __future__ import annotations

import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def plain(text: object, max_chars: int = 500) -> str:
    """``text`` as literal Markdown: every ASCII punctuation character backslash-escaped (CommonMark's escape, so
    no link, image, emphasis, HTML, heading, table or Streamlit directive such as ``:red[...]`` can form), line
    breaks flattened to spaces (no forged lines), and at most ``max_chars`` characters (a header value cannot flood
    the page)."""
    s = _LINE_BREAKS.sub(" ", str(text))
    if len(s) > max_chars:
        s = s[: max_chars - 1] + "…"
    return _PUNCTUATION.sub(r"\\\1", s)


def one_line(text: object) -> str:
    """``text`` for one line of terminal output: control characters (newline, carriage return, the ESC that starts
    a terminal escape sequence ...) written as Python escapes (``\\n``, ``\\x1b``), everything printable kept, so
    accented names still read as they are."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
