"""Search at scale, measured: N x 384 vectors (10 million by default) loaded through the official LanceDB
client into a real ``lightbox serve``, the way users load them, then indexed by the service's own keeper.

    python -m bench.scale [--rows 10000000] [--batch 40000] [--queries 200] [--seconds 20] [--no-record]

Reports: the load's time and the server's peak RSS during it; the time from the end of the load until
the index covers every row and is tuned, the index's type and lists; the data root's size on disk; the
held-out recall@10 over ``--queries`` queries (exact neighbours computed here, chunk by chunk, over the
same vectors regenerated from their seed); QPS and p50 with 8 keep-alive connections; the first search
after a 1,000-row write; and a restart (process start to the first answered search). The data is an
overlapping Gaussian mixture (2,000 centres, noise 1.2; ``tests/bulk_load.py``), generated batch by
batch, so the client never holds more than a batch. The server runs without coverage; its RSS is
watched and it is killed past ``--rss-limit-gb`` rather than the machine.

The machine is shared (2 cores, 24 GiB): the load average is recorded at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import PROJECT_DIR, git_state, machine, machine_line, md_table, median, write_section

KEY = "scale"
DIM = 384
CENTRES = 2000
NOISE = 1.2
K = 10
APPEND = 1000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def batches(rows: int, batch: int, seed: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, vectors) of the data set, ``batch`` rows at a time, the same on every call."""
    centres = np.random.default_rng(seed).normal(size=(CENTRES, DIM)).astype(np.float32)
    for start in range(0, rows, batch):
        rng = np.random.default_rng([seed, start])
        n = min(batch, rows - start)
        yield start, centres[rng.integers(0, CENTRES, n)] + NOISE * rng.standard_normal((n, DIM), np.float32)


def queries(count: int, seed: int = 0) -> np.ndarray:
    """Held-out queries: the same mixture, other draws."""
    centres = np.random.default_rng(seed).normal(size=(CENTRES, DIM)).astype(np.float32)
    rng = np.random.default_rng([seed, 10**12])
    return centres[rng.integers(0, CENTRES, count)] + NOISE * rng.standard_normal((count, DIM), np.float32)


def exact_top(rows: int, batch: int, q: np.ndarray) -> np.ndarray:
    """The exact top-K row numbers of each query by L2 distance, over the regenerated data."""
    best_d = np.full((len(q), K), np.inf, np.float32)
    best_i = np.zeros((len(q), K), np.int64)
    qq = (q * q).sum(1, keepdims=True)
    for start, x in batches(rows, batch):
        d = qq - 2 * q @ x.T + (x * x).sum(1)[None, :]
        part = np.argpartition(d, K, axis=1)[:, :K]
        cand_d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], 1)
        cand_i = np.concatenate([best_i, part + start], 1)
        order = np.argsort(cand_d, 1)[:, :K]
        best_d, best_i = np.take_along_axis(cand_d, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def search_body(v: np.ndarray) -> dict[str, Any]:
    return {"vector": v.tolist(), "k": K, "columns": ["id"]}


def row_number(hit: dict[str, Any]) -> int:
    return int(str(hit["id"])[1:])


async def load_qps(base: str, path: str, bodies: list[dict[str, Any]], connections: int,
                   seconds: float) -> tuple[float, float]:
    """(queries a second, p50 ms) of ``connections`` keep-alive clients asking in turn for ``seconds``."""
    import httpx

    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        async def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < stop:
                t = time.perf_counter()
                answer = await client.post(path, json=bodies[i % len(bodies)])
                answer.raise_for_status()
                latencies.append((time.perf_counter() - t) * 1e3)
                i += connections

        began = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in range(connections)))
        return len(latencies) / (time.perf_counter() - began), float(np.median(latencies))


def add_once_more(tbl: Any, rows: Any, server: Any) -> None:
    """``tbl.add``, tried once more when the request failed but the server lives (a dropped connection);
    a server that died is reported."""
    try:
        tbl.add(rows)
    except Exception:
        if server.proc.poll() is not None:
            log(f"the server exited ({server.proc.returncode}): see its server.log")
            raise
        log("an append failed with the server alive: trying it once more")
        tbl.add(rows)


def disk_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def measure(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    import lancedb
    import psutil
    import pyarrow as pa

    from tests.bulk_load import RssWatch, settled
    from tests.serve_procs import ServeProcess

    env = {"COVERAGE_PROCESS_CONFIG": "", "COVERAGE_PROCESS_START": ""}
    out: dict[str, Any] = {"rows": args.rows, "raw_gib": args.rows * DIM * 4 / 2**30}
    path = "/api/v1/tables/vectors/search"
    server = ServeProcess(str(root), log=root.parent / "server.log", env=env).wait_ready()
    try:
        out["start_rss_mib"] = psutil.Process(server.proc.pid).memory_info().rss / 2**20
        watch = RssWatch(server.proc.pid, int(args.rss_limit_gb * 2**30))
        db = lancedb.connect("db://lightbox", api_key="bench", host_override=server.url)
        began = time.perf_counter()
        tbl = None
        for start, x in batches(args.rows, args.batch):
            rows = pa.table({"id": [f"r{start + i:08d}" for i in range(len(x))],
                             "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), DIM)})
            if tbl is None:
                tbl = db.create_table("vectors", rows)
            else:
                add_once_more(tbl, rows, server)
            if start // args.batch % 10 == 0:
                log(f"loaded {start + len(x):,} rows, server RSS {watch.peak / 2**20:,.0f} MiB at most so far")
        out["load_s"] = time.perf_counter() - began
        log(f"load done in {out['load_s']:.0f} s")
        index: dict[str, Any] = {}
        with httpx.Client(base_url=server.url, timeout=120) as client:
            deadline = time.monotonic() + args.index_timeout
            while not settled(index) and not watch.killed and time.monotonic() < deadline:
                answer = client.get("/api/v1/tables/vectors/indexes")
                answer.raise_for_status()
                index = next((i for i in answer.json()["indexes"] if i["columns"] == ["vector"]), {})
                time.sleep(5)
            out["indexed_after_load_s"] = time.perf_counter() - began - out["load_s"]
            out["index"] = index
            out["peak_rss_mib"] = watch.peak / 2**20
            out["killed"] = watch.killed
            watch.stop()
            if not settled(index):
                raise RuntimeError(f"the index did not settle: {index}")
            log(f"indexed {out['indexed_after_load_s']:.0f} s after the load: {index}")
            out["disk_gib"] = disk_bytes(root) / 2**30
            q = queries(args.queries)
            t = time.perf_counter()
            truth = exact_top(args.rows, args.batch, q)
            out["truth_s"] = time.perf_counter() - t
            found = []
            for v in q:
                answer = client.post(path, json=search_body(v))
                answer.raise_for_status()
                found.append([row_number(h) for h in answer.json()["hits"]])
            out["recall"] = float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth,
                                                                                              strict=True)]))
            log(f"held-out recall@{K}: {out['recall']:.3f}")
            bodies = [search_body(v) for v in q]
            rounds = [asyncio.run(load_qps(server.url, path, bodies, 8, args.seconds)) for _ in range(args.rounds)]
            out["qps"], out["p50_ms"] = median([r[0] for r in rounds]), median([r[1] for r in rounds])
            out["rss_after_queries_mib"] = psutil.Process(server.proc.pid).memory_info().rss / 2**20
            log(f"QPS {out['qps']:.0f}, p50 {out['p50_ms']:.1f} ms")
            extra = queries(APPEND, seed=7)
            rows = pa.table({"id": [f"r{args.rows + i:08d}" for i in range(APPEND)],
                             "vector": pa.FixedSizeListArray.from_arrays(pa.array(extra.ravel(), pa.float32()), DIM)})
            tbl.add(rows)  # type: ignore[union-attr]
            t = time.perf_counter()
            answer = client.post(path, json=search_body(extra[0]))
            out["after_write_ms"] = (time.perf_counter() - t) * 1e3
            answer.raise_for_status()
            out["after_write_found"] = row_number(answer.json()["hits"][0]) == args.rows
            log(f"first search after a {APPEND}-row write: {out['after_write_ms']:.0f} ms")
    finally:
        server.stop()
    t = time.perf_counter()
    server = ServeProcess(str(root), log=root.parent / "server.log", env=env).wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            client.post(path, json=search_body(queries(1, seed=3)[0])).raise_for_status()
            out["restart_first_search_s"] = time.perf_counter() - t
            t = time.perf_counter()
            client.post(path, json=search_body(queries(1, seed=4)[0])).raise_for_status()
            out["restart_second_search_ms"] = (time.perf_counter() - t) * 1e3
        out["restart_rss_mib"] = psutil.Process(server.proc.pid).memory_info().rss / 2**20
    finally:
        server.stop()
    log(f"restart to the first search: {out['restart_first_search_s']:.1f} s")
    return out


def report(out: dict[str, Any], args: argparse.Namespace, command: str, loads: tuple[str, str]) -> str:
    index = out["index"]
    rows = [
        ["vectors", f"{out['rows']:,} x {DIM} float32 ({out['raw_gib']:.1f} GiB raw)"],
        ["load through the LanceDB client", f"{out['load_s']:.0f} s ({out['rows'] / out['load_s']:,.0f} rows/s, "
                                            f"batches of {args.batch:,})"],
        ["index built and tuned, after the load", f"{out['indexed_after_load_s']:.0f} s"],
        ["index", f"{index.get('index_type') or index.get('type')}, "
                  f"{index.get('num_partitions') or index.get('partitions')} lists, nprobes {index.get('nprobes')}, "
                  f"refine {index.get('refine_factor')}"],
        ["server RSS: start / peak during load and build / after queries",
         f"{out['start_rss_mib']:,.0f} / {out['peak_rss_mib']:,.0f} / {out['rss_after_queries_mib']:,.0f} MiB"],
        ["data root on disk", f"{out['disk_gib']:.1f} GiB"],
        [f"held-out recall@{K} ({args.queries} queries)", f"{out['recall']:.3f}"],
        [f"QPS, 8 connections ({args.rounds} x {args.seconds:g} s, median)",
         f"{out['qps']:.0f} (p50 {out['p50_ms']:.1f} ms)"],
        [f"first search after a {APPEND:,}-row write", f"{out['after_write_ms']:.0f} ms (new row found first: "
                                                       f"{out['after_write_found']})"],
        ["restart: process start to the first answered search",
         f"{out['restart_first_search_s']:.1f} s (second search {out['restart_second_search_ms']:.0f} ms, "
         f"RSS {out['restart_rss_mib']:,.0f} MiB)"],
    ]
    sha = git_state()
    return "\n".join([
        f"## Search at scale: `{command}`", "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; code: {sha}",
        f"- machine: {machine_line({**machine(), 'load': loads[0]})}; at the end: {loads[1]}", "",
        md_table(["measure", "value"], rows), "",
        f"Index as listed: `{index}`", ""])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=40_000)  # 61 MB a request: under the 64 MiB body limit
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--index-timeout", type=float, default=4 * 3600.0)
    parser.add_argument("--rss-limit-gb", type=float, default=16.0)
    parser.add_argument("--root", type=Path, default=None, help="where the data root goes (default: a temp dir)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(PROJECT_DIR))
    command = "python -m bench.scale" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    start_load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    parent = Path(tempfile.mkdtemp(prefix="lightbox-scale-", dir=args.root))
    try:
        out = measure(parent / "root", args)
    except BaseException:
        log(f"kept for a look: {parent} (the data root and server.log)")
        raise
    shutil.rmtree(parent, ignore_errors=True)
    text = report(out, args, command, (start_load, " / ".join(f"{v:.1f}" for v in os.getloadavg())))
    print(text)
    if not args.no_record:
        write_section(KEY, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
