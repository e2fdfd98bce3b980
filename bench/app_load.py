"""Load benchmark of the web app in a real browser (Playwright + Debian's Chromium).

Prints:
1. upload -> overlay: seconds from choosing a file to its Grad-CAM overlay being on screen, p50/p95 over
   ``--uploads`` different BUSI test images in one session, model warm (aim: p50 under 1.5 s on 2 cores);
2. memory: the server's RSS before and after ``--memory-uploads`` uploads in one session (aim: growth < 200 MB);
3. concurrency: ``--sessions`` browser sessions uploading different images at once; each must show its own
   file and the P(malignant) that medapp computes for that image directly, with no error.

Starts `streamlit run app.py` on a free port (shipped model, or $MEDAPP_MODEL_DIR) unless ``--url`` names a
running server (then ``--pid`` gives its process for RSS).

    .venv/bin/python bench/app_load.py [--uploads 20] [--memory-uploads 50] [--sessions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medapp.data.datasets import load_busi_records  # noqa: E402
from tests.app_fixtures import CHROMIUM, CHROMIUM_ARGS, AppServer  # noqa: E402

TIMEOUT_MS = 120_000
# The overlay <img> (found by its caption), or null; Streamlit's media URLs change with the picture.
OVERLAY_JS = """() => { const box = [...document.querySelectorAll('[data-testid=stImage]')]
    .find(b => b.innerText.includes('Where the model looked')); return box ? box.querySelector('img') : null; }"""


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

        if args.sessions:
            failures += await concurrent_sessions(browser, url, images, args.sessions)
        await browser.close()
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
