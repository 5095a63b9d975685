"""Object storage beside local disk: ingest throughput, and fetch by id over HTTP.

The S3 side is moto's S3 server on loopback, run as its own process (``python -m moto.server``), so
it does not share the benchmark's interpreter. Ingest is ``run_ingest`` of the same folder of small
PNGs into a fresh local root and a fresh ``s3://`` root, interleaved, medians of ``--repeat`` runs.
Fetch is ``GET /api/v1/tables/{t}/rows/{id}/image`` against a ``lightbox serve`` process over each
root, one keep-alive client, random ids, after a warm-up pass.

moto keeps objects in memory and answers from Python: it is slower than a real object store's
per-request service time but has no network latency, so these figures describe Lightbox's request
pattern on object storage, not a cloud's latency.

    python -m bench.s3 [--n 10000] [--repeat 3] [--fetches 500]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    PROJECT_DIR,
    cap_threads,
    git_state,
    machine,
    machine_line,
    make_pngs,
    md_table,
    median,
    percentile,
    verdict,
    write_section,
)

INGEST_RATIO_TARGET = 0.7


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    import boto3

    from tests.serve_procs import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="lightbox")
            return proc, endpoint
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fetches", type=int, default=500)
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave RESULTS.md alone")
    args = parser.parse_args(argv)
    cap_threads()
    sys.path.insert(0, str(PROJECT_DIR))
    import httpx

    from app.store import Store
    from ingest.pipeline import IngestOptions, run_ingest
    from tests.serve_procs import ServeProcess

    info = machine()
    data = make_pngs(args.n)
    moto, endpoint = start_moto()
    options = {"endpoint": endpoint, "region": "us-east-1", "allow_http": "true", "access_key_id": "testing",
               "secret_access_key": "testing"}
    scratch = Path(tempfile.mkdtemp(prefix="lightbox-s3-bench-"))
    seconds: dict[str, list[float]] = {"local": [], "s3": []}
    roots: dict[str, str] = {}
    fetch_ms: dict[str, list[float]] = {}
    try:
        for rep in range(args.repeat):
            for kind in (("local", "s3") if rep % 2 == 0 else ("s3", "local")):
                uri = str(scratch / f"local-{rep}") if kind == "local" else f"s3://lightbox/run-{rep}"
                store = Store(uri, storage_options=options if kind == "s3" else None)
                started = time.perf_counter()
                report = run_ingest(store, IngestOptions(table="pngs", sources=[str(data.folder)],
                                                         labels_from_dirs=True, progress=False))
                seconds[kind].append(time.perf_counter() - started)
                assert report.added == args.n, report.to_dict()
                roots[kind] = uri
        ids = [str(p.relative_to(data.folder)) for p in sorted(data.folder.rglob("*.png"))]
        rng = random.Random(7)
        sample = [rng.choice(ids) for _ in range(args.fetches)]
        env = {"LIGHTBOX_LATEST_REFRESH_SECONDS": "1.0"}
        for kind, uri in roots.items():
            flags = [a for k, v in options.items() for a in ("--storage-option", f"{k}={v}")] if kind == "s3" else []
            server = ServeProcess(uri, flags=flags, env=env, log=scratch / f"{kind}.log").wait_ready()
            try:
                with httpx.Client(base_url=server.url, timeout=60) as client:
                    for row_id in sample[: max(50, args.fetches // 5)]:  # warm-up: handles, id map, connections
                        client.get(f"/api/v1/tables/pngs/rows/{row_id}/image").raise_for_status()
                    times = []
                    for row_id in sample:
                        started = time.perf_counter()
                        client.get(f"/api/v1/tables/pngs/rows/{row_id}/image").raise_for_status()
                        times.append((time.perf_counter() - started) * 1000)
                    fetch_ms[kind] = times
            finally:
                server.stop()
    finally:
        moto.terminate()
        moto.wait(timeout=15)
        shutil.rmtree(scratch, ignore_errors=True)

    rate = {k: args.n / median(v) for k, v in seconds.items()}
    ratio = rate["s3"] / rate["local"]
    body = "\n".join([
        "## Object storage beside local disk: `python -m bench.s3`",
        "",
        f"- date: {info['date']}",
        f"- machine: {machine_line(info)}",
        f"- code: {git_state()}",
        f"- data: {args.n:,} synthetic 28x28 grayscale PNGs ({data.bytes / args.n:.0f} B average) in `0..9/` folders",
        "- S3: moto's S3 server (`python -m moto.server`) on 127.0.0.1 in its own process: objects in memory, "
        "no network latency, Python request handling; not a cloud's latency",
        f"- ingest: `run_ingest` (labels from folders) into a fresh root each run, local and `s3://` interleaved, "
        f"{args.repeat} runs each, medians; fetch: `GET .../rows/{{id}}/image` on a `lightbox serve` process over "
        f"each root, one keep-alive client, {args.fetches} random ids after a warm-up pass",
        "",
        md_table(["root", "ingest img/s (median)", "ingest s (runs)", "fetch p50 ms", "fetch p90 ms", "fetch max ms"],
                 [[k, f"{rate[k]:,.0f}", " / ".join(f"{s:.2f}" for s in seconds[k]), f"{median(fetch_ms[k]):.2f}",
                   f"{percentile(fetch_ms[k], 90):.2f}", f"{max(fetch_ms[k]):.1f}"] for k in ("local", "s3")]),
        "",
        "| target | measured | result |\n|---|---|---|\n"
        f"| ingest to `s3://` ≥ {INGEST_RATIO_TARGET}x local disk | {ratio:.2f}x at {args.n:,} PNGs | "
        f"{verdict(ratio >= INGEST_RATIO_TARGET)} |\n"
        f"| fetch by id p50 over HTTP, S3 beside local | {median(fetch_ms['s3']):.2f} ms vs "
        f"{median(fetch_ms['local']):.2f} ms | (reported) |",
    ])
    print(body)
    if not args.no_write:
        write_section("bench.s3", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
