"""Load benchmark of the web app in a real browser (Playwright + Debian's Chromium).

Prints:
1. upload -> overlay: seconds from choosing a file to its Grad-CAM overlay being on screen, p50/p95 over
   ``--uploads`` different BUSI test images in one session, model warm (aim: p50 under 1.5 s on 2 cores);
2. memory: the server's RSS before and after ``--memory-uploads`` uploads in one session (aim: growth < 200 MB);
3. concurrency: ``--sessions`` browser sessions uploading different images at once; each must show its own
   file and the P(malignant) that medapp computes for that image directly, with no error;
4. worklist: ``--worklist`` BUSI test images (default 10) uploaded at once in a new session, ``--worklist-repeats``
   times (different images each time, model warm): seconds to the first "Analysed 1 of n" progress, to the worklist
   with every row listed and its P(malignant), and to the open case's heatmap; p50 over the repeats, side by side
   with the single-image upload -> overlay p50 of (1).

Starts `streamlit run app.py` on a free port (shipped model, or $MEDAPP_MODEL_DIR) unless ``--url`` names a
running server (then ``--pid`` gives its process for RSS).

    .venv/bin/python bench/app_load.py [--uploads 20] [--memory-uploads 50] [--sessions 4] [--worklist 10]
                                       [--worklist-repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.data.datasets import load_busi_records  # noqa: E402
from medapp.reporting.report import HEATMAP_CAPTION
from tests.app_fixtures import CHROMIUM, CHROMIUM_ARGS, AppServer  # noqa: E402

TIMEOUT_MS = 120_000
# The overlay <img> (found by its caption), or null; Streamlit's media URLs change with the picture.
OVERLAY_JS = f"""() => {{ const box = [...document.querySelectorAll('[data-testid=stImage]')]
    .find(b => b.innerText.includes({json.dumps(HEATMAP_CAPTION)})); return box ? box.querySelector('img') : null; }}"""
# The Diagnose page's worklist (pages/worklist_view.py): a progress bar "Analysed i of n: NAME" while new files are
# analysed, then an st.dataframe. Its canvas grid keeps an accessible <table role=grid> with the cells' values.
PROGRESS_JS = """() => { const m = document.body.innerText.match(/Analysed (\\d+) of (\\d+)/);
    if (m) return Number(m[1]);
    return document.querySelector('[data-testid=stDataFrame] table[role=grid]') ? -1 : false; }"""
WORKLIST_JS = """() => { const grid = document.querySelector('[data-testid=stDataFrame] table[role=grid]');
    if (!grid) return null;
    const col = [...grid.querySelectorAll('thead th')].map(h => h.innerText.trim()).indexOf('P(malignant)');
    const rows = [...grid.querySelectorAll('tbody tr')];
    const files = rows.map(r => r.children[1] ? r.children[1].innerText.trim() : '');
    const withP = rows.filter(r => col >= 0 && r.children[col]
        && /\\d/.test(r.children[col].innerText)).length;  // "88%", "<1%"
    return {listed: Number(grid.getAttribute('aria-rowcount')) - 1, visible: rows.length, withP, files}; }"""


async def open_session(browser, url: str):
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(url)
    await page.get_by_text("Decision support only").wait_for()
    await page.locator("[data-testid=stFileUploaderDropzoneInput]").wait_for(state="attached")
    return page


async def upload_and_wait(page, path: Path) -> tuple[float, bool]:
    """Replace the session's upload with ``path``; (seconds until its result is on screen, overlay shown).

    The result is the overlay image, loaded; or, for an image the scope gate refuses, the scope warning.
    """
    delete = page.locator("button[aria-label^=Remove]")
    if await delete.count():
        await delete.first.click()
        await page.get_by_text("Upload one or more images").wait_for()
    previous = await page.evaluate(f"() => {{ const i = ({OVERLAY_JS})(); return i ? i.src : ''; }}")
    t0 = time.perf_counter()
    await page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(path))
    await page.locator("h3", has_text=path.name).first.wait_for()
    overlay = await page.wait_for_function(
        f"""prev => {{ const i = ({OVERLAY_JS})();
            if (i && i.src !== prev && i.complete && i.naturalWidth > 0) return 'overlay';
            return document.body.innerText.includes("Outside the model's intended use") ? 'scope' : false; }}""",
        arg=previous)
    return time.perf_counter() - t0, await overlay.json_value() == "overlay"


async def shown_probability(page) -> str:
    return (await page.get_by_test_id("stMetricValue").first.inner_text()).strip()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def audit_entries(path: Path | None) -> list[dict]:
    from medapp.intake.privacy import AuditLog

    return AuditLog(path).read() if path else []


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


async def run(args: argparse.Namespace, url: str, pid: int | None) -> int:
    from playwright.async_api import async_playwright

    images = [r.path for r in load_busi_records("test")]
    failures = 0
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = await open_session(browser, url)
        await upload_and_wait(page, images[-1])  # warm-up: model load, first CAM, browser caches
        times, predict_ms, refused = [], [], 0
        for path in images:
            seconds, shown = await upload_and_wait(page, path)
            entry = audit_entries(args.audit_log)[-1] if args.audit_log else None
            if not shown:
                refused += 1
                continue
            times.append(seconds)
            if entry and "timing_ms" in entry["outputs"]:
                predict_ms.append(entry["outputs"]["timing_ms"]["total"])
            if len(times) == args.uploads:
                break
        print(f"upload -> overlay over {len(times)} uploads: p50 {statistics.median(times):.2f} s, "
              f"p95 {quantile(times, 0.95):.2f} s, max {max(times):.2f} s (aim: p50 < 1.5 s); "
              f"{refused} image(s) outside the scope gate skipped")
        if len(predict_ms) == len(times):
            overhead = [t - ms / 1000 for t, ms in zip(times, predict_ms, strict=True)]
            print(f"  of which the model (predict incl. TTA, scope, CAM, from the audit log): p50 "
                  f"{statistics.median(predict_ms) / 1000:.2f} s; app + browser (upload, intake, rendering, "
                  f"transfer): p50 {statistics.median(overhead):.2f} s")

        if pid is not None and args.memory_uploads:
            before = rss_mb(pid)
            for i in range(args.memory_uploads):
                await upload_and_wait(page, images[i % len(images)])
            after = rss_mb(pid)
            ok = after - before < 200
            failures += not ok
            print(f"server RSS: {before:.0f} MB before, {after:.0f} MB after {args.memory_uploads} uploads in one "
                  f"session: growth {after - before:+.0f} MB ({'ok' if ok else 'OVER'} the 200 MB budget)")
        await page.close()

        if args.worklist and args.worklist_repeats:
            single = statistics.median(times) if times else None
            failures += await worklist_scenario(browser, url, images, args, single)
        if args.sessions:
            failures += await concurrent_sessions(browser, url, images, args.sessions)
        await browser.close()
    return failures


async def upload_worklist(page, paths: list[Path]) -> dict:
    """Upload ``paths`` at once; seconds from choosing the files to the first progress line, to the worklist listing
    every file, and to the open case's heatmap (or its scope warning), and the rows shown with a P(malignant)."""
    t0 = time.perf_counter()
    await page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files([str(p) for p in paths])
    first = await (await page.wait_for_function(PROGRESS_JS, polling="raf")).json_value()
    t_progress = time.perf_counter() - t0 if first != -1 else None  # -1: the list came before any progress showed
    # the live table of finished results (pages/worklist_view.py) appears with the first result; its accessible copy,
    # which WORKLIST_JS reads, is filled later by the grid, so the table's own element marks the time
    await page.wait_for_function("() => !!document.querySelector('[data-testid=stDataFrame]')", polling="raf")
    t_first = time.perf_counter() - t0
    listed = await page.wait_for_function(
        f"n => {{ const w = ({WORKLIST_JS})(); return w && w.listed === n ? w : false; }}", arg=len(paths),
        polling="raf")
    t_list, shown = time.perf_counter() - t0, await listed.json_value()
    overlay = await page.wait_for_function(
        f"""() => {{ const i = ({OVERLAY_JS})(); if (i && i.complete && i.naturalWidth > 0) return 'overlay';
            return document.body.innerText.includes("Outside the model's intended use") ? 'scope' : false; }}""")
    t_open = time.perf_counter() - t0
    errors = await page.get_by_test_id("stException").count() + await page.get_by_test_id("stAlertContentError").count()
    return {"progress": t_progress, "first_index": first, "first": t_first, "all": t_list, "open": t_open, "with_p": shown["withP"],
            "visible": shown["visible"], "files": shown["files"], "open_kind": await overlay.json_value(),
            "errors": errors}


async def worklist_scenario(browser, url: str, images: list[Path], args: argparse.Namespace,
                            single: float | None) -> int:
    """``--worklist-repeats`` worklists of ``--worklist`` images, each in a new session with images not used before
    in it; prints p50s beside the single-image baseline. Returns the number of failed repeats."""
    from playwright.async_api import TimeoutError as PlaywrightTimeoutError

    n, failures, runs, model_s = args.worklist, 0, [], []
    for r in range(args.worklist_repeats):
        paths = images[60 + r * n: 60 + (r + 1) * n] or images[:n]  # past the single-image and memory uploads
        before = len(audit_entries(args.audit_log))
        page = await open_session(browser, url)
        try:
            result = await upload_worklist(page, paths)
        except PlaywrightTimeoutError as e:  # names what never showed
            print(f"  worklist repeat {r + 1}: ERROR {type(e).__name__}: {str(e).splitlines()[0]}")
            failures += 1
            continue
        finally:
            await page.close()
        ok = sorted(result["files"]) == sorted(p.name for p in paths) and not result["errors"]
        failures += not ok
        runs.append(result)
        entries = audit_entries(args.audit_log)[before:]
        model_s.append(sum(e["outputs"]["timing_ms"]["total"] for e in entries if "timing_ms" in e.get("outputs", {}))
                       / 1000)
        progress = f"{result['progress']:.2f} s" if result["progress"] is not None else "not seen"
        print(f"  worklist repeat {r + 1}: first progress {progress} ({result['first_index']} of {n}), all {n} rows "
              f"{result['all']:.2f} s ({result['with_p']} of {result['visible']} shown rows with a P(malignant)), "
              f"open case {result['open_kind']} {result['open']:.2f} s, model {model_s[-1]:.2f} s "
              f"({len(entries)} audit entries){'' if ok else ': WRONG (files or errors)'}")
    if not runs:
        return failures

    def p50(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return statistics.median(values) if values else None

    def row(label: str, value: float | None, per_image: bool = False) -> str:
        if value is None:
            return f"  {label:42s} {'n/a':>8s}"
        ratio = f"{value / single:5.2f}x" if single else "  n/a"
        text = f"  {label:42s} {value:6.2f} s   {ratio} the single-image p50"
        return text + (f"; per image {value / n:.2f} s = {value / n / single:.2f}x" if per_image and single else "")

    base = f"{single:.2f} s" if single else "not measured (--uploads 0)"
    print(f"{n}-image worklist, p50 over {len(runs)} repeat(s), new session each, model warm "
          f"(single-image upload -> overlay p50: {base}):")
    print(row(f"first progress line (1 of {n} analysed)", p50("progress")))
    print(row(f"all {n} rows listed with P(malignant)", p50("all"), per_image=True))
    print(row("open case's heatmap on screen", p50("open")))
    print(row("first P(malignant) on screen (live table)", p50("first")))
    print(f"  of which the model (from the audit log, {n} analyses without heatmap + the open case's): p50 "
          f"{statistics.median(model_s):.2f} s")
    return failures


async def concurrent_sessions(browser, url: str, images: list[Path], n: int) -> int:
    from medapp.formatting import format_probability
    from medapp.intake.imaging import load_image
    from medapp.serving.predict import Predictor

    chosen = images[1 : 1 + n * 7 : 7][:n]
    predictor = Predictor.from_dir()
    direct = [predictor.predict(load_image(p), explain=False) for p in chosen]
    expected = [format_probability(d.p_malignant) if d.in_scope else "no probability (outside scope)" for d in direct]
    pages = await asyncio.gather(*(open_session(browser, url) for _ in chosen))
    t0 = time.perf_counter()
    results = await asyncio.gather(*(upload_and_wait(pg, p) for pg, p in zip(pages, chosen, strict=True)),
                                   return_exceptions=True)
    wall = time.perf_counter() - t0
    failures = 0
    for i, (pg, path, result, want) in enumerate(zip(pages, chosen, results, expected, strict=True)):
        if isinstance(result, BaseException):
            print(f"  session {i + 1}: ERROR {type(result).__name__}: {str(result).splitlines()[0]}")
            failures += 1
            continue
        seconds, overlay_shown = result
        shown = await shown_probability(pg) if overlay_shown else "no probability (outside scope)"
        errors = await pg.get_by_test_id("stException").count() + await pg.get_by_test_id("stAlertContentError").count()
        own = await pg.locator("h3", has_text=path.name).count() == 1
        ok = shown == want and own and not errors
        failures += not ok
        print(f"  session {i + 1}: {seconds:.2f} s, shows {shown} for its own file "
              f"(expected {want}): {'ok' if ok else 'WRONG'}")
    print(f"{n} concurrent sessions: all done in {wall:.2f} s, {n - failures} of {n} correct, no errors"
          if not failures else f"{n} concurrent sessions: {failures} FAILED")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--memory-uploads", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--worklist", type=int, default=10, help="images uploaded at once (0: skip)")
    parser.add_argument("--worklist-repeats", type=int, default=3)
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--pid", type=int, help="the running server's process id, for RSS")
    parser.add_argument("--audit-log", type=Path, help="the running server's audit log, for the model's share")
    args = parser.parse_args()
    if not CHROMIUM.is_file():
        print(f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y chromium`", file=sys.stderr)
        return 2
    print(f"machine: {os.cpu_count()} CPUs; browser: {CHROMIUM}")
    if args.url:
        return int(bool(asyncio.run(run(args, args.url, args.pid))))
    with tempfile.TemporaryDirectory() as tmp:
        args.audit_log = Path(tmp) / "audit.jsonl"
        env = {"MEDAPP_AUDIT_LOG": str(args.audit_log)}
        with AppServer(env, log_path=Path(tmp) / "streamlit.log") as server:
            print(f"server: {server.url} (pid {server.pid}), RSS at start {rss_mb(server.pid):.0f} MB")
            return int(bool(asyncio.run(run(args, server.url, server.pid))))


if __name__ == "__main__":
    sys.exit(main())
