"""Target 5, service memory: RSS of ``lightbox serve`` before and after 10,000 mixed requests.

``--quick`` serves a 10,000-row table and sends 5,000 requests, to stay under a minute.

The served table is bench/_serving.py's PNG table (100,000 rows; quick 10,000) committed as four
versions. A fixed-seed mix of requests (image bytes, row JSON, a filtered query, a filtered
count, a fetch of 100 ids, thumbnails, and image/row reads pinned with ``?version=``) is sent
from a few keep-alive client threads; the server's RSS (psutil on its pid) is sampled before the
first request, every 1,000 requests, and every 0.2 s for the peak.

    python -m bench.service_memory [--quick]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.common import cap_threads, machine, machine_line, md_table, scratch, verdict, write_section

RSS_TARGET_MB = 1024.0
MIX = (  # (kind, weight)
    ("image", 30), ("row", 15), ("query", 10), ("count", 10), ("fetch100", 10), ("thumbnail", 10),
    ("image@version", 8), ("row@version", 7),
)


@dataclass(frozen=True)
class Call:
    kind: str
    method: str
    path: str
    body: dict[str, Any] | None = None


def plan(n: int, table: str, ids: Sequence[str], old_ids: Sequence[str], old_versions: Sequence[int],
         seed: int = 5) -> list[Call]:
    rng = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    base = f"/api/v1/tables/{table}"
    calls = []
    for kind in rng.choices(kinds, weights, k=n):
        key = rng.choice(ids)
        if kind == "image":
            calls.append(Call(kind, "GET", f"{base}/rows/{key}/image"))
        elif kind == "row":
            calls.append(Call(kind, "GET", f"{base}/rows/{key}"))
        elif kind == "query":
            body = {"filter": f"label = {rng.randrange(10)} AND split = 'train'", "limit": 100,
                    "offset": rng.randrange(0, 2000)}
            calls.append(Call(kind, "POST", f"{base}/query", body))
        elif kind == "count":
            calls.append(Call(kind, "GET", f"{base}/count?filter=label%20%3E%3D%20{rng.randrange(10)}"))
        elif kind == "fetch100":
            calls.append(Call(kind, "POST", f"{base}/fetch", {"ids": rng.sample(list(ids), 100)}))
        elif kind == "thumbnail":
            calls.append(Call(kind, "GET", f"{base}/rows/{key}/thumbnail?size={rng.choice((64, 128))}"))
        else:
            version, old = rng.choice(old_versions), rng.choice(old_ids)
            suffix = "/image" if kind == "image@version" else ""
            calls.append(Call(kind, "GET", f"{base}/rows/{old}{suffix}?version={version}"))
    return calls


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0.0
        self._halt = threading.Event()

    def rss_mb(self) -> float:
        return float(self.proc.memory_info().rss) / 1024**2

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.peak = max(self.peak, self.rss_mb())
            except Exception:  # the server went away: the main thread reports it
                return
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def send_all(base: str, calls: list[Call], clients: int, sampler: RssSampler,
             checkpoint: int = 1000) -> tuple[Counter[tuple[str, int]], list[tuple[int, float]], float]:
    """Send every call from ``clients`` threads; (kind, status) counts, RSS at checkpoints, seconds."""
    import httpx

    local = threading.local()
    statuses: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    done = 0
    checkpoints: list[tuple[int, float]] = []

    def one(call: Call) -> None:
        nonlocal done
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=base, timeout=60.0)
        response = client.request(call.method, call.path, json=call.body)
        _ = response.content
        with lock:
            statuses[(call.kind, response.status_code)] += 1
            done += 1
            if done % checkpoint == 0:
                checkpoints.append((done, sampler.rss_mb()))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in pool.map(one, calls):
            pass
    return statuses, checkpoints, time.perf_counter() - started


def report(args: argparse.Namespace, info: dict[str, str], table: Any, idle: float, after: float, peak: float,
           checkpoints: list[tuple[int, float]], statuses: Counter[tuple[str, int]], seconds: float,
           after_idle: float) -> str:
    cmd = "python -m bench.service_memory" + (" --quick" if args.quick else "")
    kinds = [k for k, _ in MIX]
    rows = []
    for kind in kinds:
        total = sum(v for (k, _), v in statuses.items() if k == kind)
        bad = sum(v for (k, s), v in statuses.items() if k == kind and s != 200)
        rows.append([kind, f"{total:,}", f"{bad:,}"])
    errors = sum(v for (_, s), v in statuses.items() if s != 200)
    ok = after <= RSS_TARGET_MB and errors == 0
    trail = ", ".join(f"{n:,}: {mb:.0f}" for n, mb in checkpoints)
    lines = [
        f"## Service memory (target 5){' — quick' if args.quick else ''}",
        "",
        f"`{cmd}` — {info['date']}; {machine_line(info)}.",
        "",
        f"`lightbox serve` (default settings) on a {len(table.ids):,}-row table of 28x28 PNGs committed as versions "
        f"{table.versions}. {args.requests:,} requests from {args.clients} keep-alive client threads in "
        f"{seconds:.1f} s ({args.requests / seconds:,.0f} req/s), a fixed-seed mix: "
        + ", ".join(f"{k} {w}%" for k, w in MIX) + ". `query` is `label = k AND split = 'train'` with limit 100 at "
        "a random offset; `count` is `label >= k`; `fetch100` posts 100 random ids; thumbnails are 64 or 128 px; "
        f"`@version` reads pin one of versions {table.versions[:-1]}.",
        "",
        md_table(["request", "sent", "non-200"], rows),
        "",
        md_table(["server RSS", "MB"], [
            ["after start-up, before any request", f"{idle:.0f}"],
            [f"after {args.requests:,} requests", f"{after:.0f}"],
            ["peak while serving (sampled every 0.2 s)", f"{peak:.0f}"],
            ["after 5 s idle", f"{after_idle:.0f}"],
        ]),
        "",
        f"RSS (MB) every 1,000 requests: {trail}.",
        "",
        md_table(["target", "measured", "verdict"], [
            [f"RSS ≤ 1 GB after {args.requests:,} mixed requests (and no errors)", f"{after:.0f} MB, {errors} errors",
             verdict(ok)]]),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Target 5: server RSS after 10,000 mixed requests.")
    parser.add_argument("--quick", action="store_true", help="a 10,000-row table (under a minute)")
    parser.add_argument("--rows", type=int, default=None, help="table size (default 100,000; quick 10,000)")
    parser.add_argument("--requests", type=int, default=None, help="default 10,000; quick 5,000")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args(argv)
    args.rows = args.rows or (10_000 if args.quick else 100_000)
    args.requests = args.requests or (5_000 if args.quick else 10_000)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cap_threads()
    from bench._serving import ids_at, lightbox_server, served_table

    info = machine()
    table = served_table(args.rows)
    old_ids = ids_at(table.root, table.table, table.versions[0])
    calls = plan(args.requests, table.table, table.ids, old_ids, table.versions[:-1])
    work = scratch("service-memory-")
    server = lightbox_server(table.root, work)
    try:
        server.start("/api/v1/tables")
        time.sleep(1.0)
        sampler = RssSampler(server.pid)
        idle = sampler.rss_mb()
        sampler.start()
        statuses, checkpoints, seconds = send_all(server.base, calls, args.clients, sampler)
        after = sampler.rss_mb()
        sampler.stop()
        peak = max(sampler.peak, after)
        time.sleep(5.0)
        after_idle = sampler.rss_mb()
    finally:
        server.stop()
    errors = {k: v for k, v in statuses.items() if k[1] != 200}
    if errors:
        print(f"  non-200 answers: {errors}; see {server.log_path}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)  # only the server's log
    text = report(args, info, table, idle, after, peak, checkpoints, statuses, seconds, after_idle)
    print(text)
    if not args.no_record:
        write_section("bench.service_memory-quick" if args.quick else "bench.service_memory", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
