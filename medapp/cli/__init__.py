"""``python -m medapp <command>``: one module per command, each with ``register(subparsers)``.

The CLI is the only place that prints; it turns every :class:`MedAppError` into one ``error: ...`` line on stderr
and exit status 2, never a traceback, and a library's warning into one ``warning: ...`` line.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from ..errors import MedAppError
from ..markup import one_line
from . import (
    calibrate_cmd,
    evaluate_cmd,
    inspect_cmd,
    pacs_cmd,
    predict_cmd,
    train_cmd,
    train_outline_cmd,
    validate_cmd,
)

COMMANDS = (train_cmd, train_outline_cmd, calibrate_cmd, evaluate_cmd, inspect_cmd, predict_cmd, validate_cmd, pacs_cmd)
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m medapp", description="Breast-ultrasound decision support.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: object = None,
                 line: str | None = None) -> None:
    """``warnings.showwarning`` for a terminal: one ``warning: ...`` line, without the library's file, line number
    and source line (pydicom warns so on a header value with an unknown escape sequence: issue 12's battery)."""
    print(f"warning: {one_line(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    previous, warnings.showwarning = warnings.showwarning, show_warning  # for this command's run only
    try:
        return int(args.run(args) or 0)
    except MedAppError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        warnings.showwarning = previous
