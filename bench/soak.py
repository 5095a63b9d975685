"""Soak: does ``lightbox serve``'s memory stay flat while reads and writes go on and versions pile up?

A table of PNGs with label/split metadata and a ``builtin`` vector column is served by a real
``lightbox serve``. For the whole run, 8 keep-alive threads fetch random images; one thread sends
a filtered similarity search and a filtered query every 0.5 s; one uploads a new image every 0.3 s
(a new version each time). The server's RSS is sampled on its pid every few seconds and printed as
it goes. The verdict is on the slope of RSS over the second half of the run (a least-squares line
through those samples), when the caches have had time to fill and should hold. At 10,000 rows with
default settings they take 2-3 minutes to fill (Lance's index cache above all: the index keeper
folds every upload into the vector index, and each fold's partitions are cached anew until the
128 MiB budget evicts the old ones), so the default run is 6 minutes. ``LIGHTBOX_*`` cache settings
in the environment reach the server and are recorded with the result (a separate section).

    python -m bench.soak [--quick] [--seconds N] [--optimize-every S]

``--quick`` runs 45 s on a 1,000-row table (the caches are still filling: a smoke run, not a
verdict). ``tests/test_soak.py`` runs the same load for a shorter, bounded time in ``make test``.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import cap_threads, git_state, machine, machine_line, md_table, scratch, verdict, write_section

TABLE = "soak"
SLOPE_TARGET_MB_PER_MIN = 10.0  # over the second half; a leak of one cached version per upload is far above it


@dataclass
class SoakResult:
    """RSS samples (seconds since the start, MB, uploads so far) and every status per kind of request."""

    samples: list[tuple[float, float, int]] = field(default_factory=list)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def slope_mb_per_min(self, since: float) -> float:
        """Least-squares slope of RSS over the samples taken at or after ``since`` seconds."""
        points = [(t, mb) for t, mb, _ in self.samples if t >= since]
        if len(points) < 3:
            return 0.0
        mean_t = sum(t for t, _ in points) / len(points)
        mean_mb = sum(mb for _, mb in points) / len(points)
        var = sum((t - mean_t) ** 2 for t, _ in points)
        cov = sum((t - mean_t) * (mb - mean_mb) for t, mb in points)
        return 60.0 * cov / var if var else 0.0

    @property
    def errors(self) -> dict[tuple[str, int], int]:
        return {k: n for k, n in self.statuses.items() if k[1] >= 500}


def png(seed: int) -> bytes:
    """A small grayscale PNG unlike the others (so every upload is new bytes)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def build_root(root: Path, rows: int) -> list[str]:
    """A data root beside ``root``'s own folder of ``rows`` PNGs, ingested with label/split metadata and
    given a ``builtin`` vector column; returns the ids."""
    from app.services.embed import embed_table
    from app.store import Store
    from embeddings.registry import Registry
    from ingest.pipeline import IngestOptions, run_ingest

    images = root.parent / f"{root.name}-images"
    ids, lines = [], ["file,label,split"]
    for i in range(rows):
        key = f"{i % 10}/{i:06d}.png"
        (images / key).parent.mkdir(parents=True, exist_ok=True)
        (images / key).write_bytes(png(10**6 + i))
        ids.append(key)
        lines.append(f"{key},{i % 10},{'test' if i % 5 == 0 else 'train'}")
    (images.parent / f"{root.name}-labels.csv").write_text("\n".join(lines) + "\n")
    store = Store(str(root))
    run_ingest(store, IngestOptions(table=TABLE, sources=[str(images)], key="file", progress=False,
                                    metadata=str(images.parent / f"{root.name}-labels.csv")))
    embed_table(store, TABLE, Registry().get("builtin"))
    return ids


def run_load(base: str, ids: Sequence[str], seconds: float, rss_mb: Callable[[], float], *,
             sample_every: float = 5.0, image_threads: int = 8, search_every: float = 0.5,
             upload_every: float = 0.3, optimize_every: float | None = None,
             echo: Callable[[str], None] | None = None) -> SoakResult:
    """The soak's load against a server at ``base`` for ``seconds``, sampling ``rss_mb()`` as it goes
    (and an ``optimize`` every ``optimize_every`` seconds when given: compaction keeps the fragment
    count, and so what grows with it, in check)."""
    import httpx

    result = SoakResult()
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + seconds
    uploads = [0]
    path = f"/api/v1/tables/{TABLE}"

    def count(kind: str, response: httpx.Response | None, error: str = "") -> None:
        with lock:
            status = response.status_code if response is not None else 599
            result.statuses[(kind, status)] += 1
            if status >= 500 and len(result.failures) < 20:
                text = error or (response.text[:300] if response is not None else "")
                result.failures.append(f"{kind} {status} {text}")

    def call(client: httpx.Client, kind: str, method: str, url: str, **kw: object) -> None:
        try:
            response = client.request(method, url, **kw)  # type: ignore[arg-type]
            _ = response.content
            count(kind, response)
        except httpx.HTTPError as exc:
            count(kind, None, repr(exc))

    def images(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=60) as client:
            while time.monotonic() < deadline:
                call(client, "image", "GET", f"{path}/rows/{rng.choice(ids)}/image")

    def every(period: float, step: Callable[[httpx.Client, int], None]) -> Callable[[], None]:
        def loop() -> None:
            with httpx.Client(base_url=base, timeout=60) as client:
                n = 0
                while time.monotonic() < deadline:
                    began = time.monotonic()
                    step(client, n)
                    n += 1
                    time.sleep(max(0.0, min(period - (time.monotonic() - began), deadline - time.monotonic())))
        return loop

    def search(client: httpx.Client, n: int) -> None:
        rng = random.Random(n)
        call(client, "search", "POST", f"{path}/search",
             json={"image_id": rng.choice(ids), "k": 10, "filter": f"label = {rng.randrange(10)}"})
        call(client, "query", "POST", f"{path}/query",
             json={"filter": f"label = {rng.randrange(10)} AND split = 'train'", "limit": 50})

    def upload(client: httpx.Client, n: int) -> None:
        key = f"up/{n:06d}.png"
        call(client, "upload", "POST", f"{path}/rows", files=[("files", (key, png(n), "image/png"))])
        with lock:
            uploads[0] += 1

    def optimize(client: httpx.Client, n: int) -> None:
        if n:  # not at the start
            call(client, "optimize", "POST", f"{path}/optimize", timeout=600)  # folds and retunes the index

    threads = [threading.Thread(target=images, args=(i,), daemon=True) for i in range(image_threads)]
    threads += [threading.Thread(target=every(search_every, search), daemon=True),
                threading.Thread(target=every(upload_every, upload), daemon=True)]
    if optimize_every:
        threads.append(threading.Thread(target=every(optimize_every, optimize), daemon=True))
    for thread in threads:
        thread.start()
    while True:
        now = time.monotonic()
        sample = (round(now - start, 1), rss_mb(), uploads[0])
        result.samples.append(sample)
        if echo is not None:
            echo(f"  t={sample[0]:6.1f} s  rss={sample[1]:7.1f} MB  uploads={sample[2]}")
        if now >= deadline:
            break
        time.sleep(min(sample_every, max(0.0, deadline - now)))
    for thread in threads:
        thread.join(timeout=120)
    return result


def report(args: argparse.Namespace, info: dict[str, str], rows: int, result: SoakResult, commit: str) -> str:
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("LIGHTBOX_"))
    cmd = (env + " " if env else "") + "python -m bench.soak"
    cmd += " --quick" if args.quick else f" --seconds {args.seconds:g}"
    cmd += f" --optimize-every {args.optimize_every:g}" if args.optimize_every else ""
    half = args.seconds / 2
    slope = result.slope_mb_per_min(half)
    first, last = result.samples[0], result.samples[-1]
    at_half = min(result.samples, key=lambda s: abs(s[0] - half))
    kinds = sorted({k for k, _ in result.statuses})
    rows_out = [[k, f"{sum(n for (kk, _), n in result.statuses.items() if kk == k):,}",
                 f"{sum(n for (kk, s), n in result.statuses.items() if kk == k and s >= 400):,}"] for k in kinds]
    trail = ", ".join(f"{t:.0f} s: {mb:.0f}" for t, mb, _ in result.samples)
    errors = sum(result.errors.values())
    ok = slope <= SLOPE_TARGET_MB_PER_MIN and errors == 0
    return "\n".join([
        "## Soak: memory while versions pile up" + "".join(
            label for on, label in ((args.quick, " — quick"), (args.optimize_every, " — with optimize"),
                                    (env, " — smaller caches")) if on),
        "",
        f"`{cmd}` at commit {commit} — {info['date']}; {machine_line(info)}.",
        "",
        f"`lightbox serve` ({'the settings above, the rest default' if env else 'default settings'}) on a"
        f" {rows:,}-row table of 28x28 PNGs with a `builtin` vector column, "
        f"for {args.seconds:g} s: 8 keep-alive threads fetch random images; every 0.5 s a filtered similarity "
        "search (`image_id`, `label = k`) and a filtered query; every 0.3 s an upload of one new image (one "
        f"new version each: {last[2]} in all)"
        + (f"; every {args.optimize_every:g} s an optimize (compaction)" if args.optimize_every else "")
        + f". RSS sampled on the server's pid every {args.sample_every:g} s.",
        "",
        md_table(["request", "sent", "4xx/5xx"], rows_out),
        "",
        md_table(["server RSS", "MB"], [
            ["at the first request", f"{first[1]:.0f}"],
            [f"at {at_half[0]:.0f} s (half-way)", f"{at_half[1]:.0f}"],
            [f"at the end ({last[0]:.0f} s)", f"{last[1]:.0f}"],
            ["slope over the second half (least squares), MB/min", f"{slope:+.1f}"],
        ]),
        "",
        f"RSS (MB) over time: {trail}.",
        "",
        md_table(["target", "measured", "verdict"], [
            [f"RSS slope over the second half ≤ {SLOPE_TARGET_MB_PER_MIN:g} MB/min, no 5xx",
             f"{slope:+.1f} MB/min, {errors} 5xx", verdict(ok)]]),
        "",
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Server RSS over time under reads, searches and uploads.")
    parser.add_argument("--quick", action="store_true", help="45 s on a 1,000-row table")
    parser.add_argument("--seconds", type=float, default=None, help="default 360; quick 45")
    parser.add_argument("--rows", type=int, default=None, help="default 10,000; quick 1,000")
    parser.add_argument("--sample-every", type=float, default=None, help="seconds between RSS samples")
    parser.add_argument("--optimize-every", type=float, default=None,
                        help="also POST /optimize this often (compaction bounds what grows per fragment)")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (45.0 if args.quick else 360.0)
    args.rows = args.rows or (1_000 if args.quick else 10_000)
    args.sample_every = args.sample_every or (2.0 if args.quick else 5.0)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cap_threads()
    from bench._serving import lightbox_server

    info, commit = machine(), git_state()  # what is measured: the code as it was at the start
    work = scratch("soak-")
    try:
        ids = build_root(work / "root", args.rows)
        server = lightbox_server(work / "root", work)
        server.start("/readyz")
        try:
            print(f"soak: {args.seconds:g} s against {server.base}", file=sys.stderr)
            result = run_load(server.base, ids, args.seconds, server.rss_mb, sample_every=args.sample_every,
                              optimize_every=args.optimize_every,
                              echo=lambda line: print(line, file=sys.stderr, flush=True))
        finally:
            server.stop()
        if result.errors:
            print(f"  5xx answers: {result.errors}: {result.failures[:5]}; see {server.log_path}", file=sys.stderr)
            print(Path(server.log_path).read_text()[-3000:], file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(args, info, args.rows, result, commit)
    print(text)
    if not args.no_record:
        key = "bench.soak" + ("-quick" if args.quick else "") + ("-optimize" if args.optimize_every else "") + \
            ("-tuned" if any(k.startswith("LIGHTBOX_") for k in os.environ) else "")
        write_section(key, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
