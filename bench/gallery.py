"""The gallery's first screen, measured in a browser: the first 100 thumbnails of the demo ``digits`` table.

``lightbox serve`` runs as a child process over a fresh copy of the demo tables (``lightbox.demo``),
and Debian's Chromium, driven by Playwright, opens ``/#/t/digits``. The time is the page's own clock
(``performance.now()``, from navigation start) when the grid holds 100 thumbnails that have all
loaded and decoded. Cold: a new browser context (empty HTTP cache) each run; the first cold run is
also the server's first sight of the table (its caches empty). Warm: the same context going to the
page again (a new navigation, as when coming back later). The digits are 8x8 PNGs, smaller than
a thumbnail would be, so the grid gets a page's originals in one ``POST /fetch`` rather than 100
image requests; the server's access log counts both kinds of request per run. Medians of the runs.

    python -m bench.gallery [--quick]
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


def first_screen(page: object, url: str) -> float:
    page.goto(url + "/#/t/digits")
    page.wait_for_function(READY, polling="raf", timeout=30_000)
    return page.evaluate("performance.now()") / 1000


def requests_seen(log: Path) -> tuple[int, int]:
    """Access-log lines so far: (a row's image or thumbnail, batch fetches)."""
    lines = log.read_text(errors="replace").splitlines()
    images = sum("/rows/" in line and ("/thumbnail" in line or "/image" in line) for line in lines)
    return images, sum("/fetch" in line for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs each instead of 7")
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    from playwright.sync_api import sync_playwright

    from app.store import Store
    from lightbox.demo import build_demo

    info, code = machine(), git_state()
    root = scratch("gallery-")
    try:
        uri = str(root / "data")
        build_demo(Store(uri), root / "sources")
        log = root / "serve.log"
        proc, url = start_server(uri, log)
        cold: list[float] = []
        warm: list[float] = []
        cold_requests: list[tuple[int, int]] = []
        warm_requests: list[tuple[int, int]] = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                for _ in range(runs):
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    start = requests_seen(log)
                    cold.append(first_screen(page, url))
                    middle = requests_seen(log)
                    page.goto("about:blank")
                    warm.append(first_screen(page, url))
                    end = requests_seen(log)
                    cold_requests.append((middle[0] - start[0], middle[1] - start[1]))
                    warm_requests.append((end[0] - middle[0], end[1] - middle[1]))
                    context.close()
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cold_med, warm_med = statistics.median(cold), statistics.median(warm)
    def most(pairs: list[tuple[int, int]]) -> list[str]:
        return [str(max(p[0] for p in pairs)), str(max(p[1] for p in pairs))]

    rows = [["cold (empty browser cache; run 1 also a cold server)", f"{cold_med:.3f}",
             " / ".join(f"{v:.3f}" for v in cold), *most(cold_requests)],
            ["warm (same browser, a new visit)", f"{warm_med:.3f}", " / ".join(f"{v:.3f}" for v in warm),
             *most(warm_requests)]]
    body = "\n".join([
        f"## Gallery first screen{' (quick)' if args.quick else ''}: `python -m bench.gallery"
        f"{' --quick' if args.quick else ''}`",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; code: {code}",
        f"- machine: {info['nproc']} cores ({info['cpu']}), {info['ram']} RAM; load average at start {info['load']}",
        "- method: `lightbox serve` (child process) on the demo tables; Debian Chromium via Playwright opens "
        "`/#/t/digits`; time = `performance.now()` when the grid holds 100 loaded thumbnails; "
        f"{runs} runs, medians.",
        "",
        md_table(["run", "median s", "runs s", "image requests (max)", "batch fetches (max)"], rows),
        "",
        md_table(["target", "measured", "result"], [
            [f"first 100 thumbnails <= {TARGET_S:.0f} s, cold", f"{cold_med:.3f} s", verdict(cold_med <= TARGET_S)],
            [f"first 100 thumbnails <= {TARGET_S:.0f} s, warm", f"{warm_med:.3f} s", verdict(warm_med <= TARGET_S)],
            ["no request per image", f"{max(p[0] for p in cold_requests + warm_requests)}",
             verdict(max(p[0] for p in cold_requests + warm_requests) == 0)],
        ]),
    ])
    print(body)
    write_section("bench.gallery" + (".quick" if args.quick else ""), body)


if __name__ == "__main__":
    main()
