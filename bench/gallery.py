"""The gallery's first screen, measured in a browser: the first 100 thumbnails of the demo ``digits``
table, or (``--photos``) of 150 photo-sized JPEGs.

``lightbox serve`` runs as a child process over a fresh copy of the demo tables (``lightbox.demo``),
and Debian's Chromium, driven by Playwright, opens ``/#/t/digits``. The time is the page's own clock
(``performance.now()``, from navigation start) when the grid holds 100 thumbnails that have all
loaded and decoded. Cold: a new browser context (empty HTTP cache) each run; the first cold run is
also the server's first sight of the table (its caches empty). Warm: the same context going to the
page again (a new navigation, as when coming back later). The digits are 8x8 PNGs, smaller than
a thumbnail would be, so the grid gets a page's originals in one ``POST /fetch`` rather than 100
image requests; the server's access log counts both kinds of request per run. Medians of the runs.

``--photos``: a ``photos`` table of 150 distinct 1024x768 JPEGs (crops of scikit-image's samples,
``tests.gallery_data.write_photos``), so each of the 100 tiles is a thumbnail: the ingest renders
the gallery's two sizes of each photo and keeps them beside the table (``app.services.thumbnails``),
and the grid asks for its first screen's 100 in one ``POST .../thumbnails`` (later pages by pinned,
immutable URLs). Cold there is cold on both sides: every cold run starts a new ``lightbox serve``
(empty thumbnail cache in memory, empty snapshot caches) and a new browser context. The ingest's
time is reported too (rendering the kept thumbnails is part of it).

    python -m bench.gallery [--quick] [--photos]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import PROJECT_DIR, git_state, machine, md_table, scratch, verdict, write_section

TARGET_S = 1.0
CHROMIUM = os.environ.get("LIGHTBOX_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY = """() => {
  const imgs = [...document.querySelectorAll('#grid img')].slice(0, 100);
  return imgs.length === 100 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(uri: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR), "LANCE_LOG": "error"}
    proc = subprocess.Popen([sys.executable, "-m", "lightbox.cli", "serve", "--uri", uri, "--port", str(port)],
                            cwd=PROJECT_DIR, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("lightbox serve did not start; see " + str(log))


def first_screen(page: object, url: str, table: str) -> float:
    page.goto(url + f"/#/t/{table}")
    page.wait_for_function(READY, polling="raf", timeout=30_000)
    return page.evaluate("performance.now()") / 1000


def requests_seen(log: Path) -> tuple[int, int]:
    """Access-log lines so far: (a row's image or thumbnail, batch requests: fetch and thumbnails)."""
    lines = log.read_text(errors="replace").splitlines()
    images = sum("/rows/" in line and ("/thumbnail" in line or "/image" in line) for line in lines)
    return images, sum("/fetch" in line or "/thumbnails" in line for line in lines)


def build_photos(uri: str, sources: Path, count: int = 150) -> float:
    """Write the photos and ingest them; the ingest's seconds (thumbnails rendered and kept included)."""
    from app.store import Store
    from ingest.pipeline import IngestOptions, run_ingest
    from tests.gallery_data import write_photos

    write_photos(sources, count)
    started = time.perf_counter()
    run_ingest(Store(uri), IngestOptions(table="photos", sources=[str(sources)], message="photos", progress=False))
    return time.perf_counter() - started


def measure(uri: str, root: Path, table: str, runs: int, server_per_run: bool) -> dict[str, list]:
    """Cold and warm first screens (seconds) and the requests each made (images, batch fetches)."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list] = {"cold": [], "warm": [], "browser_cold": [], "cold_requests": [], "warm_requests": [],
                            "browser_cold_requests": []}
    log = root / "serve.log"
    proc, url = (None, "") if server_per_run else start_server(uri, log)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for _ in range(runs):
                if server_per_run:
                    proc, url = start_server(uri, log)
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                start = requests_seen(log)
                out["cold"].append(first_screen(page, url, table))
                middle = requests_seen(log)
                page.goto("about:blank")
                out["warm"].append(first_screen(page, url, table))
                end = requests_seen(log)
                out["cold_requests"].append((middle[0] - start[0], middle[1] - start[1]))
                out["warm_requests"].append((end[0] - middle[0], end[1] - middle[1]))
                context.close()
                if server_per_run:  # the browser cold again, the server now warm (its thumbnails cached)
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    before = requests_seen(log)
                    out["browser_cold"].append(first_screen(context.new_page(), url, table))
                    after = requests_seen(log)
                    out["browser_cold_requests"].append((after[0] - before[0], after[1] - before[1]))
                    context.close()
                    proc.terminate()
                    proc.wait(timeout=20)
                    proc = None
            browser.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs each instead of 7")
    parser.add_argument("--photos", action="store_true", help="150 photo-sized JPEGs instead of the 8x8 digits")
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    from app.store import Store
    from lightbox.demo import build_demo

    info, code = machine(), git_state()
    root = scratch("gallery-")
    table = "photos" if args.photos else "digits"
    ingest_seconds = 0.0
    try:
        uri = str(root / "data")
        if args.photos:
            ingest_seconds = build_photos(uri, root / "sources" / "photos")
        else:
            build_demo(Store(uri), root / "sources")
        found = measure(uri, root, table, runs, server_per_run=args.photos)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cold, warm = found["cold"], found["warm"]
    cold_requests, warm_requests = found["cold_requests"], found["warm_requests"]
    cold_med, warm_med = statistics.median(cold), statistics.median(warm)
    def most(pairs: list[tuple[int, int]]) -> list[str]:
        return [str(max(p[0] for p in pairs)), str(max(p[1] for p in pairs))]

    cold_label = ("cold (a new server and an empty browser cache each run)" if args.photos
                  else "cold (empty browser cache; run 1 also a cold server)")
    rows = [[cold_label, f"{cold_med:.3f}",
             " / ".join(f"{v:.3f}" for v in cold), *most(cold_requests)],
            ["warm (same browser, a new visit)", f"{warm_med:.3f}", " / ".join(f"{v:.3f}" for v in warm),
             *most(warm_requests)]]
    if found["browser_cold"]:
        again = found["browser_cold"]
        rows.insert(1, ["empty browser cache, server's thumbnails cached in memory", f"{statistics.median(again):.3f}",
                        " / ".join(f"{v:.3f}" for v in again), *most(found["browser_cold_requests"])])
    flags = (" --quick" if args.quick else "") + (" --photos" if args.photos else "")
    what = ("150 distinct 1024x768 JPEGs (`photos`, ingested in "
            f"{ingest_seconds:.2f} s with their thumbnails rendered and kept): 100 thumbnails" if args.photos
            else "the demo tables (`digits`: 8x8 PNGs, one batch fetch)")
    body = "\n".join([
        f"## Gallery first screen{' of photos' if args.photos else ''}{' (quick)' if args.quick else ''}: "
        f"`python -m bench.gallery{flags}`",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; code: {code}",
        f"- machine: {info['nproc']} cores ({info['cpu']}), {info['ram']} RAM; load average at start {info['load']}",
        f"- method: `lightbox serve` (child process) on {what}; Debian Chromium via Playwright opens "
        f"`/#/t/{table}`; time = `performance.now()` when the grid holds 100 loaded thumbnails; "
        f"{runs} runs, medians.",
        "",
        md_table(["run", "median s", "runs s", "image requests (max)", "batch requests (max)"], rows),
        "",
        md_table(["target", "measured", "result"], [
            [f"first 100 thumbnails <= {TARGET_S:.0f} s, cold", f"{cold_med:.3f} s", verdict(cold_med <= TARGET_S)],
            [f"first 100 thumbnails <= {TARGET_S:.0f} s, warm", f"{warm_med:.3f} s", verdict(warm_med <= TARGET_S)],
            *([] if args.photos else [["no request per image", f"{max(p[0] for p in cold_requests + warm_requests)}",
                                       verdict(max(p[0] for p in cold_requests + warm_requests) == 0)]]),
        ]),
    ])
    print(body)
    write_section("bench.gallery" + (".photos" if args.photos else "") + (".quick" if args.quick else ""), body)


if __name__ == "__main__":
    main()
