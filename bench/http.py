"""Target 2 over HTTP: ``GET /api/v1/tables/{t}/rows/{id}/image`` against a minimal LMDB endpoint.

Both servers run at once as subprocesses, one uvicorn worker each, both writing an access log line per
request: ``lightbox serve`` (its own uvicorn config, ``app.serving``) on a table of small PNGs, and
bench/_lmdb_server.py (``uvicorn.run``, ``log_level="info"``) serving the same bytes by the same keys. ``wrk``
(one thread, keep-alive, random ids from a fixed seed, so both servers get the same sequence)
loads each in turn with 1 connection (latency) and 16 connections (throughput); the order
alternates between repetitions and the medians are reported. The server's CPU time per request
(from /proc, split into event-loop thread, Lance's threads and other threads) is recorded too:
it is much less sensitive to the noise of a shared machine than wall-clock figures.

``--production`` serves Lightbox as production runs it: API keys required (wrk sends one), the
JSON access log instead of uvicorn's (metrics, request ids and body limits are always on). The
ratios that matter are printed last: throughput at 16 connections (Lightbox / LMDB, goal >= 1.0)
and p50 at 1 connection (Lightbox / LMDB, goal <= 1.0); ``image_get_ratios`` returns them for a
combined benchmark.

Optional parts: ``--variants`` serves experimental versions of the image route from
bench/_lightbox_variant.py (app/ is never edited) in the same rotation; ``--ladder`` drives each
app in-process through ASGI, one request at a time without a network or a client, to attribute
the per-request cost (LMDB; Lightbox as served; with production's settings; with the FastAPI route
instead of the fast path); ``--profile`` samples the Lightbox server with py-spy under 16 connections.

    python -m bench.http [--quick] [--rows N] [--production] [--variants inline,lean-pread] [--ladder] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    DATA_DIR,
    PROJECT_DIR,
    cap_threads,
    machine,
    machine_line,
    md_table,
    scratch,
    verdict,
    write_section,
)

P50_TARGET_MS = 3.0
RPS_TARGET = 1000.0
THROUGHPUT_GOAL = 1.0  # Lightbox req/s / LMDB req/s at 16 connections: at least
P50_GOAL = 1.0  # Lightbox p50 / LMDB p50 at 1 connection: at most
LADDER = ("lmdb", "stock", "production", "routed")
LADDER_STEPS = {
    "lmdb": "the anchor: FastAPI route with one path parameter, LMDB get",
    "stock": "Lightbox as served: the image fast path (app.fast_image) before FastAPI, metrics, request ids, "
             "body limits",
    "production": "API keys required and the JSON access log",
    "routed": "the FastAPI route answers instead of the fast path",
}


@dataclass
class Contender:
    label: str
    server: Any  # bench._serving.Server
    script: Path


@dataclass
class Measured:
    label: str
    rep: int
    connections: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    cpu_ms: dict[str, float]  # CPU milliseconds per request, by thread group

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_ms.values())


# -- setup -------------------------------------------------------------------------------------------
def ensure_lmdb(table: Any) -> Path:
    """The same PNG bytes in LMDB under the same keys as the Lightbox ids (cached)."""
    from bench._lmdb_server import build_lmdb

    path = DATA_DIR / f"lmdb-mnist-{len(table.ids)}"
    marker = DATA_DIR / f"lmdb-mnist-{len(table.ids)}.json"
    if marker.is_file() and json.loads(marker.read_text()).get("count") == len(table.ids):
        return path
    shutil.rmtree(path, ignore_errors=True)
    total = build_lmdb(table.folder, table.ids, path)
    marker.write_text(json.dumps({"count": len(table.ids), "bytes": total}))
    return path


def check_same_bytes(lightbox: Any, lmdb: Any, table: Any, ids: Sequence[str], headers: dict[str, str]) -> None:
    import httpx

    with httpx.Client() as client:
        for key in ids:
            a = client.get(f"{lightbox.base}/api/v1/tables/{table.table}/rows/{key}/image", headers=headers)
            b = client.get(f"{lmdb.base}/img/{key}")
            if a.status_code != 200 or b.status_code != 200 or a.content != b.content:
                raise RuntimeError(f"{lightbox.name} and {lmdb.name} disagree on {key!r}: "
                                   f"{a.status_code} / {b.status_code}")


def git_state() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "app", "ingest", "lightbox"], cwd=PROJECT_DIR,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}{' + uncommitted changes in app/ingest/lightbox' if dirty else ''}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- load ----------------------------------------------------------------------------------------------
def measure(c: Contender, rep: int, connections: int, seconds: float) -> Measured:
    from bench._serving import cpu_delta, run_wrk, thread_cpu

    before = thread_cpu(c.server.pid)
    result = run_wrk(c.server.base, c.script, connections, seconds)
    spent = cpu_delta(before, thread_cpu(c.server.pid))
    per = {k: v * 1e3 / max(1, result.requests) for k, v in spent.items()}
    return Measured(c.label, rep, connections, result.rps, result.p50_ms, result.p90_ms, result.p99_ms, result.errors,
                    per)


def rotation(contenders: list[Contender], reps: int, seconds: float) -> list[Measured]:
    out: list[Measured] = []
    for rep in range(reps):
        order = contenders if rep % 2 == 0 else contenders[::-1]
        for c in order:
            for conns in (1, 16):
                m = measure(c, rep, conns, seconds)
                out.append(m)
                print(f"  rep {rep + 1} {c.label:22s} c={conns:<2d} {m.rps:7.0f} req/s  p50 {m.p50_ms:6.2f} ms  "
                      f"p99 {m.p99_ms:6.2f} ms  cpu {m.cpu_total:.2f} ms/req  errors {m.errors}", file=sys.stderr)
    return out


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(rows: list[Measured], label: str, conns: int) -> dict[str, float]:
    mine = [m for m in rows if m.label == label and m.connections == conns]
    groups = sorted({k for m in mine for k in m.cpu_ms})
    out = {"rps": med([m.rps for m in mine]), "p50": med([m.p50_ms for m in mine]),
           "p99": med([m.p99_ms for m in mine]), "cpu": med([m.cpu_total for m in mine]),
           "errors": float(sum(m.errors for m in mine))}
    out.update({f"cpu_{g}": med([m.cpu_ms.get(g, 0.0) for m in mine]) for g in groups})
    return out


def paired_ratio(rows: list[Measured], label: str, base: str, conns: int, key: str, invert: bool) -> tuple[float,
                                                                                                          list[float]]:
    """Median over repetitions of (label / base) for ``key``; ``invert`` gives base / label (throughput)."""
    ratios = []
    for rep in sorted({m.rep for m in rows}):
        a = next(m for m in rows if m.rep == rep and m.label == label and m.connections == conns)
        b = next(m for m in rows if m.rep == rep and m.label == base and m.connections == conns)
        x, y = getattr(a, key), getattr(b, key)
        ratios.append(y / x if invert else x / y)
    return med(ratios), ratios


# -- in-process ladder ------------------------------------------------------------------------------------
def ladder_child(variant: str, root: str, lmdb_path: str, ids_file: str, n: int) -> dict[str, float]:
    """Drive one app through ASGI, one request at a time, in this process: CPU and wall per request."""
    import asyncio

    from bench._lightbox_variant import BENCH_KEY

    if variant == "lmdb":
        from bench._lmdb_server import create_app

        app = create_app(lmdb_path)
        prefix, suffix = "/img/", ""
    else:
        from bench._lightbox_variant import build

        app = build(root, variant)
        prefix, suffix = "/api/v1/tables/images/rows/", "/image"
    ids = Path(ids_file).read_text().split()
    rng = random.Random(7)

    async def one(path: str) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                 "state": {}, "headers": [(b"host", b"bench"), (b"x-api-key", BENCH_KEY.encode())]}
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise RuntimeError(f"{variant}: {path} answered {status}")

    async def run() -> dict[str, float]:
        async with app.router.lifespan_context(app):
            for _ in range(300):  # warm: id index, handles, threadpool
                await one(prefix + rng.choice(ids) + suffix)
            paths = [prefix + rng.choice(ids) + suffix for _ in range(n)]
            wall, cpu = time.perf_counter(), time.process_time()
            for path in paths:
                await one(path)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"wall_ms": wall * 1e3 / n, "cpu_ms": cpu * 1e3 / n}

    return asyncio.run(run())


def ladder(root: Path, lmdb_path: Path, ids_file: Path, n: int, rounds: int) -> dict[str, dict[str, float]]:
    """Each variant in a fresh interpreter (the variants patch app.deps before the routes import it).

    A child's stderr (where access logs go) is a file, as a server's log is: a pipe to this process
    would charge the child for the reader's pace.
    """
    results: dict[str, list[dict[str, float]]] = {v: [] for v in LADDER}
    log = ids_file.parent / "ladder-child.log"
    for r in range(rounds):
        for variant in (LADDER if r % 2 == 0 else LADDER[::-1]):
            with open(log, "w") as stderr:
                proc = subprocess.run([sys.executable, "-m", "bench.http", "--ladder-child", variant, "--root",
                                       str(root), "--lmdb", str(lmdb_path), "--ids-file", str(ids_file),
                                       "--ladder-n", str(n)],
                                      cwd=PROJECT_DIR, stdout=subprocess.PIPE, stderr=stderr, text=True, check=False)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("LADDER ")), None)
            if line is None:
                raise RuntimeError(f"ladder child {variant} failed:\n{log.read_text()[-3000:]}")
            results[variant].append(json.loads(line[7:]))
            print(f"  ladder {variant:12s} {results[variant][-1]}", file=sys.stderr)
    return {v: {k: med([x[k] for x in xs]) for k in xs[0]} for v, xs in results.items()}


# -- py-spy -------------------------------------------------------------------------------------------------
# Where a sample's innermost frame is, by the file it is in: the first match wins.
PLACES = (
    (("app/fast_image.py", "app/routes/rows.py", "app/store/", "hashlib", "<built-in method posix.pread"),
     "the image: match, snapshot, id index, headers, pread + sha256 (app.fast_image, app.store)"),
    (("app/metrics.py", "logging/", "prometheus_client/", "orjson"), "metrics and the access log (app.metrics)"),
    (("app/middleware.py",), "request ids and body limits (app.middleware)"),
    (("app/auth.py", "hmac"), "API keys (app.auth)"),
    (("app/idempotency.py", "app/replica.py"), "idempotency keys (app.idempotency)"),
    (("starlette/", "fastapi/", "opentelemetry/", "anyio/"),
     "FastAPI/Starlette frames (error middleware, telemetry check, routing when taken)"),
    (("uvicorn/", "app/serving.py", "asyncio/", "uvloop/"), "HTTP protocol and event loop (uvicorn, uvloop)"),
)


def _bucket(stack: str) -> str:
    """What the sampled thread was doing, by its innermost frame in a file we know."""
    frames = stack.split(";")
    leaf = frames[-1]
    for files, place in PLACES:
        if any(f in leaf for f in files):
            return place
    for frame in reversed(frames):  # a frame of C code or the standard library: charge its nearest known caller
        for files, place in PLACES:
            if any(f in frame for f in files):
                return place
    return "other"


def profile(server: Any, script: Path, seconds: float, out_dir: Path, rate: int = 100) -> dict[str, Any] | None:
    """py-spy during a 16-connection wrk run: samples of threads on a CPU (idle ones are not sampled),
    as thread-milliseconds per request by where the innermost frame was."""
    from bench._serving import run_wrk

    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        print("  py-spy not installed: skipping the profile", file=sys.stderr)
        return None
    raw = out_dir / "pyspy-lightbox.txt"
    spy = subprocess.Popen([pyspy, "record", "-p", str(server.pid), "-d", f"{seconds + 1:.0f}", "-r", str(rate),
                            "-f", "raw", "-o", str(raw), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    result = run_wrk(server.base, script, 16, seconds)
    spy.wait(timeout=120)
    if not raw.is_file():
        print("  py-spy produced nothing (no ptrace permission?): skipping the profile", file=sys.stderr)
        return None
    buckets: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            buckets[_bucket(stack)] += int(count)
    per_request = {k: v / rate * 1e3 / max(1, result.requests) for k, v in buckets.items()}
    return {"requests": result.requests, "rps": result.rps, "seconds": seconds, "rate": rate,
            "thread_ms_per_request": dict(sorted(per_request.items(), key=lambda kv: -kv[1])), "raw": str(raw)}


# -- report -------------------------------------------------------------------------------------------------
def report(args: argparse.Namespace, info: dict[str, str], table: Any, avg_bytes: float, rows: list[Measured],
           labels: list[str], ladder_result: dict[str, dict[str, float]] | None, prof: dict[str, Any] | None,
           load_before: str, load_after: str, gitrev: str) -> str:
    lb1, lb16 = summarise(rows, "lightbox", 1), summarise(rows, "lightbox", 16)
    p50_ratio, p50_ratios = paired_ratio(rows, "lightbox", "lmdb", 1, "p50_ms", invert=False)
    rps_ratio, rps_ratios = paired_ratio(rows, "lightbox", "lmdb", 16, "rps", invert=False)
    ok_p50, ok_rps = lb1["p50"] <= P50_TARGET_MS, lb16["rps"] >= RPS_TARGET
    ok_ratio = p50_ratio <= P50_GOAL and rps_ratio >= THROUGHPUT_GOAL
    cmd = command_line(args)
    served = ("production settings: API keys required (wrk sends one), `LIGHTBOX_ACCESS_LOG=json` (so no uvicorn "
              "access log), metrics, request ids and body limits" if args.production else
              "default settings (no API keys; uvicorn's access log)")
    lines = [
        f"## HTTP fetch by id (target 2){' — quick' if args.quick else ''}",
        "",
        f"`{cmd}` — {info['date']}; {machine_line(info)}. Code: {gitrev}. "
        f"Load average before/after: {load_before} / {load_after} (other sessions share these 2 cores).",
        "",
        f"Table: {len(table.ids):,} PNGs (28x28 grayscale, {avg_bytes:.0f} B average) ingested with "
        f"`run_ingest` as versions {table.versions}; requests read latest. LMDB anchor: the same bytes under the "
        "same keys, `GET /img/{key:path}`, `async def`, `lmdb` read inline, `uvicorn.run(app, log_level=\"info\")` "
        f"(one worker, uvloop + httptools, uvicorn's access log on). Lightbox: `lightbox serve` with {served}. "
        "Load: `wrk -t1` keep-alive on "
        f"loopback, random ids from a fixed seed (same sequence for every server), {args.seconds:g} s per "
        f"measurement, {args.reps} repetitions in alternating order; medians. wrk itself needs about one of "
        "the two cores, the same for every server. CPU ms/req is the server process's CPU time "
        "(/proc) over the requests served: event-loop thread / other threads (threadpool) / Lance's threads.",
        "",
    ]
    head = ["server", "p50 1 conn (ms)", "p99 1 conn (ms)", "req/s 1 conn", "req/s 16 conn", "p50 16 conn (ms)",
            "p99 16 conn (ms)", "CPU ms/req (loop/threads/lance)", "errors"]
    body = []
    for label in labels:
        s1, s16 = summarise(rows, label, 1), summarise(rows, label, 16)
        split = "/".join(f"{s16.get('cpu_' + g, 0.0):.2f}" for g in ("loop", "threads", "lance"))
        body.append([label, f"{s1['p50']:.2f}", f"{s1['p99']:.2f}", f"{s1['rps']:,.0f}", f"{s16['rps']:,.0f}",
                     f"{s16['p50']:.2f}", f"{s16['p99']:.2f}", f"{s16['cpu']:.2f} ({split})",
                     f"{s1['errors'] + s16['errors']:.0f}"])
    lines += [md_table(head, body), ""]
    lines += [
        md_table(["target", "measured", "verdict"], [
            ["p50 ≤ 3 ms, 1 connection", f"{lb1['p50']:.2f} ms", verdict(ok_p50)],
            ["≥ 1,000 req/s, 16 connections", f"{lb16['rps']:,.0f} req/s", verdict(ok_rps)],
            [f"throughput at 16 connections, Lightbox / LMDB ≥ {THROUGHPUT_GOAL:g}",
             f"{rps_ratio:.2f}x (per repetition: {', '.join(f'{r:.2f}' for r in rps_ratios)})",
             verdict(rps_ratio >= THROUGHPUT_GOAL)],
            [f"p50 latency at 1 connection, Lightbox / LMDB ≤ {P50_GOAL:g}",
             f"{p50_ratio:.2f}x (per repetition: {', '.join(f'{r:.2f}' for r in p50_ratios)})",
             verdict(p50_ratio <= P50_GOAL)],
        ]),
        "",
        f"Overall: {verdict(ok_p50 and ok_rps and ok_ratio)}.",
        "",
    ]
    variants = [label for label in labels if label not in ("lightbox", "lmdb")]
    if variants:
        vrows = []
        for label in variants:
            pr, _ = paired_ratio(rows, label, "lmdb", 1, "p50_ms", invert=False)
            rr, _ = paired_ratio(rows, label, "lmdb", 16, "rps", invert=False)
            s1, s16 = summarise(rows, label, 1), summarise(rows, label, 16)
            vrows.append([label, f"{s1['p50']:.2f}", f"{s16['rps']:,.0f}", f"{pr:.2f}x", f"{rr:.2f}x",
                          verdict(s1["p50"] <= P50_TARGET_MS and s16["rps"] >= RPS_TARGET and pr <= P50_GOAL
                                  and rr >= THROUGHPUT_GOAL)])
        lines += ["Experimental variants of the image route (bench/_lightbox_variant.py; app/ untouched), measured "
                  "in the same rotation:", "",
                  md_table(["variant", "p50 1 conn (ms)", "req/s 16 conn", "p50 vs LMDB", "req/s vs LMDB",
                            "all four targets"], vrows), ""]
    if ladder_result:
        base = ladder_result["lmdb"]["cpu_ms"]
        lrows = []
        previous = None
        for name in LADDER:
            r = ladder_result[name]
            step = "" if previous is None else f"{r['cpu_ms'] - ladder_result[previous]['cpu_ms']:+.3f}"
            lrows.append([name, LADDER_STEPS[name], f"{r['wall_ms']:.3f}", f"{r['cpu_ms']:.3f}",
                          f"{r['cpu_ms'] / base:.1f}x", step])
            previous = name
        lines += [f"In-process ladder: each app driven through ASGI, one request at a time, no network or client "
                  f"({args.ladder_n} requests after 300 warm-up, median of {args.ladder_rounds} rounds, each in a "
                  "fresh interpreter). Each row adds one thing to the row above; the last answers through the "
                  "FastAPI route. CPU is the whole process (all threads).", "",
                  md_table(["app", "adds", "wall ms/req", "CPU ms/req", "CPU vs LMDB", "CPU step"], lrows), ""]
    if prof:
        prow = [[k, f"{v:.3f}"] for k, v in prof["thread_ms_per_request"].items() if v >= 0.0005]
        lines += [f"py-spy (`record --nonblocking -r {prof['rate']}`) on the Lightbox server under 16 connections "
                  f"({prof['rps']:,.0f} req/s while sampled, {prof['requests']:,} requests): on-CPU thread-time per "
                  "request by where the innermost frame was (C code and the standard library charged to the nearest "
                  "known caller). Sampling costs the server some throughput while it runs.", "",
                  md_table(["where", "thread-ms per request"], prow), ""]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Target 2 over HTTP: Lightbox image GET vs an LMDB endpoint.")
    parser.add_argument("--quick", action="store_true", help="10k rows, 2 s measurements (under a minute)")
    parser.add_argument("--rows", type=int, default=None, help="table size (default 100,000; quick 10,000)")
    parser.add_argument("--seconds", type=float, default=None, help="per measurement (default 10; quick 2)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--production", action="store_true",
                        help="serve Lightbox with API keys required and the JSON access log")
    parser.add_argument("--variants", type=lambda s: [v for v in s.split(",") if v], default=[],
                        help="comma-separated bench/_lightbox_variant.py variants to add to the rotation")
    parser.add_argument("--ladder", action="store_true", help="the in-process per-request cost ladder")
    parser.add_argument("--ladder-n", type=int, default=2000)
    parser.add_argument("--ladder-rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="py-spy on the Lightbox server under 16 connections")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    # internal: one in-process ladder measurement
    parser.add_argument("--ladder-child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--lmdb", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rows = args.rows or (10_000 if args.quick else 100_000)
    args.seconds = args.seconds or (2.0 if args.quick else 10.0)
    return args


def command_line(args: argparse.Namespace) -> str:
    return ("python -m bench.http" + (" --quick" if args.quick else "") +
            (f" --rows {args.rows}" if args.rows != (10_000 if args.quick else 100_000) else "") +
            (f" --seconds {args.seconds:g}" if args.seconds != (2.0 if args.quick else 10.0) else "") +
            (f" --reps {args.reps}" if args.reps != 3 else "") + (" --production" if args.production else "") +
            (f" --variants {','.join(args.variants)}" if args.variants else "") + (" --ladder" if args.ladder else "") +
            (" --profile" if args.profile else ""))


def ratios(rows: list[Measured]) -> dict[str, float]:
    """The two goals' ratios, medians of the per-repetition ratios: Lightbox / LMDB."""
    return {"throughput_16": paired_ratio(rows, "lightbox", "lmdb", 16, "rps", invert=False)[0],
            "p50_1": paired_ratio(rows, "lightbox", "lmdb", 1, "p50_ms", invert=False)[0]}


def image_get_ratios(rows: int = 20_000, seconds: float = 5.0, reps: int = 3, production: bool = True,
                     record: bool = False) -> dict[str, float]:
    """For a combined benchmark: Lightbox's image GET side by side with the LMDB endpoint, whole processes.

    Returns ``{"throughput_16": Lightbox req/s / LMDB req/s at 16 connections (goal >= 1.0),
    "p50_1": Lightbox p50 / LMDB p50 at 1 connection (goal <= 1.0)}``; ``record`` also writes the
    report to bench/RESULTS.md.
    """
    argv = ["--rows", str(rows), "--seconds", str(seconds), "--reps", str(reps)] + \
        (["--production"] if production else []) + ([] if record else ["--no-record"])
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> dict[str, float]:
    """Serve both, load them in turn, print (and record) the report; the ratios come back."""
    from bench._lightbox_variant import BENCH_KEY, PRODUCTION, VARIANTS
    from bench._serving import lightbox_server, lmdb_server, served_table, variant_server, write_wrk_script

    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    info, gitrev, load_before = machine(), git_state(), load_average()
    table = served_table(args.rows)
    lmdb_path = ensure_lmdb(table)
    avg_bytes = sum((table.folder / k).stat().st_size for k in table.ids[:2000]) / min(2000, len(table.ids))
    work = scratch("http-")
    ids_file = work / "ids.txt"
    lb_prefix = f"/api/v1/tables/{table.table}/rows/"
    key = {"x-api-key": BENCH_KEY}  # sent to every Lightbox (ignored where keys are off)
    servers = [("lightbox", lightbox_server(table.root, work, env=PRODUCTION if args.production else None)),
               ("lmdb", lmdb_server(lmdb_path, work))]
    servers += [(v, variant_server(table.root, v, work)) for v in args.variants]
    contenders: list[Contender] = []
    prof = None
    try:
        for label, server in servers:
            server.start(f"/img/{table.ids[0]}" if label == "lmdb" else "/healthz")
            prefix, suffix = ("/img/", "") if label == "lmdb" else (lb_prefix, "/image")
            script = write_wrk_script(work / f"{label}.lua", table.ids, ids_file, prefix, suffix,
                                      headers=None if label == "lmdb" else key)
            contenders.append(Contender(label, server, script))
        sample = random.Random(3).sample(table.ids, 50)
        for label, server in servers:
            if label != "lmdb":
                check_same_bytes(server, servers[1][1], table, sample, key)
        from bench._serving import run_wrk

        for c in contenders:  # warm: id index, handles, page cache, threadpool
            run_wrk(c.server.base, c.script, 16, min(3.0, args.seconds))
        rows = rotation(contenders, args.reps, args.seconds)
        if args.profile:
            prof = profile(contenders[0].server, contenders[0].script, max(5.0, args.seconds), DATA_DIR)
    finally:
        for _, server in servers:
            server.stop()
    ladder_result = ladder(table.root, lmdb_path, ids_file, args.ladder_n, args.ladder_rounds) if args.ladder \
        else None
    text = report(args, info, table, avg_bytes, rows, [c.label for c in contenders], ladder_result, prof,
                  load_before, load_average(), gitrev)
    found = ratios(rows)
    text += (f"\nRatios (Lightbox / LMDB): throughput at 16 connections {found['throughput_16']:.2f}x "
             f"(goal ≥ {THROUGHPUT_GOAL:g}), p50 at 1 connection {found['p50_1']:.2f}x (goal ≤ {P50_GOAL:g}).\n")
    print(text)
    if not args.no_record:
        write_section("bench.http-quick" if args.quick else "bench.http", text)
    shutil.rmtree(work, ignore_errors=True)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cap_threads()
    if args.ladder_child:
        result = ladder_child(args.ladder_child, args.root, args.lmdb, args.ids_file, args.ladder_n)
        print("LADDER " + json.dumps(result), flush=True)
        return 0
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
