"""Text from uploads is shown literally: no link, image, emphasis, directive or forged line can form (issue 12)."""

from __future__ import annotations

import re
import string

from medapp.markup import plain

HOSTILE = "[Open the full report](https:host/x) ![t](https:host/t.png) :red[alert] <img src=x> **b** # h | t\nforged"


def test_every_markdown_punctuation_is_escaped_and_lines_are_flattened():
    out = plain(HOSTILE)
    assert "\n" not in out and "forged" in out
    # every ASCII punctuation character is preceded by a backslash, so CommonMark shows it literally
    unescaped = re.findall(r"(?<!\\)[" + re.escape(string.punctuation.replace("\\", "")) + "]", out)
    assert unescaped == []
    assert re.sub(r"\\(.)", r"\1", out) == HOSTILE.replace("\n", " ")  # nothing lost: it reads the same


def test_long_values_are_cut_and_plain_text_is_unchanged():
    assert plain("x" * 10_000, max_chars=100) == "x" * 99 + "…"
    assert plain("benign lesion 12 mm") == "benign lesion 12 mm"
    assert plain(ValueError("bad value")) == "bad value"


def test_a_newline_or_escape_in_a_file_name_cannot_forge_terminal_lines(tmp_path):
    """Issue 12, item 9: ``inspect`` and ``predict`` print each name on its one line, control characters escaped."""
    import subprocess
    import sys
    from pathlib import Path

    from medapp.markup import one_line

    assert one_line("scan\nerror: forged.png\x1b[31m é") == "scan\\nerror: forged.png\\x1b[31m é"
    name = tmp_path / "scan\nerror: forged\x1b[2J.png"
    name.write_bytes(b"not an image")
    root = Path(__file__).resolve().parents[1]
    for command in ("inspect", "predict"):
        result = subprocess.run([sys.executable, "-m", "medapp", command, str(name)], capture_output=True, text=True,
                                timeout=300, cwd=root, check=False)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0 and len(lines) == 1, (command, result.stderr)
        assert lines[0].startswith("error: ") and "\\nerror: forged\\x1b[2J.png" in lines[0]


def test_a_truncated_jpeg2000_dicom_is_one_clear_line_without_tracebacks(tmp_path):
    """Issue 12, item 9: pydicom logged a traceback per failed decoder; the refusal is one line, exit 2."""
    import subprocess
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from intake_fixtures import compressed_dicom_declaring

    path = tmp_path / "cut.dcm"
    path.write_bytes(compressed_dicom_declaring("j2k", 256, truncate=True))
    result = subprocess.run([sys.executable, "-m", "medapp", "inspect", str(path)], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).resolve().parents[1], check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        line for line in result.stderr.splitlines() if line.startswith("error: ")] and "truncated" in result.stderr
