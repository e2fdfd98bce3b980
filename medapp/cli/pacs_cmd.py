"""``python -m medapp pacs list|analyze|watch|upload|serve``: medapp against a PACS over DICOMweb.

- ``list [--since DATE | --study UID]``: studies, newest first (UID, date, modalities, instances; no patient field).
- ``analyze --study UID | --since DATE [--store]``: score each breast-ultrasound instance; ``--store`` writes the
  SR and PDF back into the study (nothing is written twice: a re-run stores nothing new).
- ``watch [--since DATE] [--store] [--interval S] [--max-polls N] [--state FILE]``: poll for new studies, bounded,
  resumable from the state file.
- ``upload FILE...``: store local DICOM files (trying medapp against the development PACS).
- ``serve [--dir DIR] [--port N]``: run the development PACS (Orthanc with DICOMweb; ``make pacs``) until Ctrl-C.

The PACS is ``--dicomweb URL`` or ``MEDAPP_PACS_URL``; credentials and TLS come only from the settings
(``MEDAPP_PACS_USER``, ``MEDAPP_PACS_PASSWORD_FILE``, ``MEDAPP_PACS_CA_BUNDLE``). Exit status 2 on an error (PACS
down, refused credentials, audit log unwritable), with one ``error:`` line; images refused by intake or the scope
gate are reported and are not errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from ..markup import one_line

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..pacs.client import PacsClient
    from ..pacs.workflow import InstanceOutcome, StudyAnalyzer

DEFAULT_SERVE_DIR = Path("artifacts") / "pacs"


def _date(text: str) -> dt.date:
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"{text!r} is not a date; write it as YYYY-MM-DD")


def _uid(text: str) -> str:
    from pydicom.uid import UID

    if not UID(text).is_valid:
        raise argparse.ArgumentTypeError(f"{one_line(text)!r} is not a DICOM UID (digits and dots, at most 64)")
    return text


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pacs", help="read studies from a PACS over DICOMweb, write results back as DICOM")
    commands = parser.add_subparsers(dest="pacs_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dicomweb", metavar="URL", help="DICOMweb base URL (default: $MEDAPP_PACS_URL)")

    def analysing(p: argparse.ArgumentParser) -> None:
        p.add_argument("--store", action="store_true", help="write the SR and PDF results back into the study")
        p.add_argument("--model", help="model folder (default: $MEDAPP_MODEL_DIR or the shipped model)")
        p.add_argument("--profile", metavar="NAME", help="a site profile saved beside the model")
        p.add_argument("--without-region", choices=["blank-bands", "whole-image"], default=None,
                       help="for images that state no scan region: blank the top and bottom bands of the PDF's "
                            "pictures, or keep them whole after you checked the images show no patient details; "
                            "without this their PDF is not stored (the SR is)")
        p.add_argument("--json", action="store_true", help="one JSON object per instance")

    p = commands.add_parser("list", help="list studies (no patient fields)")
    common(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--since", type=_date, metavar="DATE", help="studies on or after DATE (YYYY-MM-DD)")
    group.add_argument("--study", type=_uid, metavar="UID", help="one study")
    p.add_argument("--limit", type=int, default=None, help="at most this many studies")
    p.add_argument("--json", action="store_true", help="one JSON object per study")
    p.set_defaults(run=run_list)

    p = commands.add_parser("analyze", help="score a study's breast-ultrasound images (--store: write results back)")
    common(p)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--study", type=_uid, metavar="UID", help="the study to analyse")
    group.add_argument("--since", type=_date, metavar="DATE", help="every study on or after DATE, once")
    analysing(p)
    p.set_defaults(run=run_analyze)

    p = commands.add_parser("watch", help="poll for new studies and analyse them (bounded, resumable)")
    common(p)
    p.add_argument("--since", type=_date, metavar="DATE", help="only studies on or after DATE")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between polls (default 60)")
    p.add_argument("--max-polls", type=int, default=1, help="polls before exiting (default 1)")
    p.add_argument("--state", type=Path, default=None, metavar="FILE",
                   help="remember finished studies here (hashed UIDs only) to resume after a restart")
    analysing(p)
    p.set_defaults(run=run_watch)

    p = commands.add_parser("upload", help="store local DICOM files in the PACS")
    common(p)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.set_defaults(run=run_upload)

    p = commands.add_parser("serve", help="run the development PACS (Orthanc + DICOMweb) until Ctrl-C")
    p.add_argument("--dir", type=Path, default=DEFAULT_SERVE_DIR, help=f"its folder (default {DEFAULT_SERVE_DIR})")
    p.add_argument("--port", type=int, default=8042, help="HTTP port on 127.0.0.1 (default 8042)")
    p.set_defaults(run=run_serve)


def _client(args: argparse.Namespace) -> PacsClient:
    from ..pacs.client import PacsClient, PacsConfig

    return PacsClient(PacsConfig.from_settings(args.dicomweb))


def run_list(args: argparse.Namespace) -> int:
    studies = _client(args).search_studies(since=args.since, study_uid=args.study, limit=args.limit)
    for s in studies:
        if args.json:
            print(json.dumps({"study_uid": s.study_uid, "study_date": s.study_date, "modalities": list(s.modalities),
                              "instances": s.n_instances}))
        else:
            print(f"{one_line(s.study_uid)}  {one_line(s.study_date) or '-':8}  "
                  f"{one_line(','.join(s.modalities)) or '-':10}  {s.n_instances if s.n_instances is not None else '?'}"
                  " instances")
    if not args.json:
        print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}", file=sys.stderr)
    return 0


def _analyzer(args: argparse.Namespace) -> StudyAnalyzer:
    from ..pacs.workflow import StudyAnalyzer
    from ..serving.analysis import open_audit_log
    from ..serving.predict import Predictor
    from ..serving.signin import cli_user

    client = _client(args)
    predictor = Predictor.from_dir(args.model, profile=args.profile)
    return StudyAnalyzer(client, predictor, audit=open_audit_log(cli_user()), store=args.store,
                         without_region=args.without_region and args.without_region.replace("-", "_"))


def _printer(args: argparse.Namespace, counts: Counter) -> Callable[[InstanceOutcome], None]:
    studies: list[str] = []

    def show(outcome: InstanceOutcome) -> None:
        counts[outcome.status.value] += 1
        counts["objects stored"] += len(outcome.stored)
        if args.json:
            print(json.dumps(outcome.to_dict()), flush=True)
            return
        if not studies or studies[-1] != outcome.study_uid:
            studies.append(outcome.study_uid)
            print(f"study {one_line(outcome.study_uid)}", flush=True)
        line = f"{one_line(outcome.sop_uid)}: {outcome.status.value}"
        p = outcome.prediction
        if p is not None and p.in_scope:
            line += f": {p.decision_text}; {p.category.label}"
        elif outcome.message:
            line += f": {one_line(outcome.message)}"
        if outcome.stored:
            line += f"; stored {', '.join(outcome.stored)}"
        for note in outcome.notes:
            if note.startswith("no PDF"):
                line += f"; {one_line(note)}"
        print(line, flush=True)

    return show


def _summary(counts: Counter) -> None:
    parts = [f"{n} {k}" for k, n in sorted(counts.items()) if n]
    print("; ".join(parts) or "no instances", file=sys.stderr)


def run_analyze(args: argparse.Namespace) -> int:
    analyzer = _analyzer(args)
    counts: Counter = Counter()
    show = _printer(args, counts)
    studies = [args.study] if args.study else [s.study_uid for s in analyzer.client.search_studies(since=args.since)]
    for study in studies:
        analyzer.analyze(study, show)
    _summary(counts)
    return 0


def run_watch(args: argparse.Namespace) -> int:
    from ..pacs.workflow import watch

    analyzer = _analyzer(args)
    counts: Counter = Counter()
    watch(analyzer, since=args.since, interval=args.interval, max_polls=args.max_polls, state_path=args.state,
          on_outcome=_printer(args, counts))
    _summary(counts)
    return 0


def run_upload(args: argparse.Namespace) -> int:
    import pydicom

    from ..errors import InvalidImageError
    from ..intake.limits import IntakeLimits, read_regular_file
    from ..settings import get_settings

    client = _client(args)
    limits = IntakeLimits.from_settings(get_settings())
    stored = 0
    for path in args.files:
        data = read_regular_file(path, limits)
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except pydicom.errors.InvalidDicomError as e:
            raise InvalidImageError(f"{one_line(path)} is not a DICOM file; only DICOM can be stored") from e
        stored += len(client.store([ds], str(ds.StudyInstanceUID)))
        print(f"{one_line(path)}: stored in study {one_line(ds.StudyInstanceUID)}", flush=True)
    print(f"{stored} stored", file=sys.stderr)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from ..pacs.orthanc_server import OrthancServer, write_config

    config = write_config(args.dir, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with OrthancServer(config):
        print(f"Orthanc (development PACS) on {config.url}, storage in {config.work_dir}\n"
              f"  export MEDAPP_PACS_URL={config.dicomweb_url}\n"
              f"  export MEDAPP_PACS_USER={config.user}\n"
              f"  export MEDAPP_PACS_PASSWORD_FILE={config.password_path}\n"
              "Ctrl-C stops it.", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0
