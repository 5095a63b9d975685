"""The served half of bench/search.py: Lightbox loaded and searched over HTTP the way users do it, and
the anchor a user would put up instead (a FastAPI endpoint over faiss IVF-Flat, tuned to a recall).

- the table is loaded through the official LanceDB client into a running ``lightbox serve``, in
  batches (each a version), and the service's own index keeper builds and tunes the index;
- a restart is a new process over the same root: time to the first answered search, RSS across
  versions;
- the anchor is tuned on the same held-out queries: the smallest nprobe of its ladder whose recall@10
  reaches the target (0.95 by default), with 1,024 lists at 200k rows;
- QPS at 8 keep-alive connections from one async client process (an httpx client per connection: see
  ``_load``), and again with wrk as the load, rounds alternating which server goes first; each server is
  a whole process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench._serving import Server, free_port, lightbox_server
from bench.common import median

__all__ = ["anchor_server", "json_bodies", "load_through_service", "qps_rounds", "recall_over_http",
           "search_ids", "served", "tune_anchor", "wait_indexed", "wrk_rounds"]

LADDER = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
K = 10


def search_ids(client: Any, path: str, q: np.ndarray, params: dict[str, Any] | None = None) -> list[int]:
    """The row numbers (ids are ``r`` plus the number) of one query's top k over HTTP."""
    r = client.post(path, json={"vector": q.tolist(), "k": K, "columns": ["id"]}, params=params or {})
    r.raise_for_status()
    return [int(h["id"][1:]) for h in r.json()["hits"]]


def recall_over_http(client: Any, path: str, queries: np.ndarray, truth: np.ndarray,
                     params: dict[str, Any] | None = None) -> float:
    found = [search_ids(client, path, q, params) for q in queries]
    return float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))


def load_through_service(base: str, table: str, batches: Sequence[Any]) -> float:
    """Create ``table`` from the first batch and add the rest with the LanceDB client; seconds taken."""
    import lancedb

    started = time.perf_counter()
    db = lancedb.connect("db://lightbox", api_key="bench", host_override=base)
    tbl = db.create_table(table, batches[0])
    for batch in batches[1:]:
        tbl.add(batch)
    return time.perf_counter() - started


def wait_indexed(client: Any, table: str, column: str = "vector", timeout: float = 900) -> dict[str, Any]:
    """Poll the table's index listing until the keeper's index covers every row and is tuned."""
    deadline = time.monotonic() + timeout
    index: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = client.get(f"/api/v1/tables/{table}/indexes")
        answer.raise_for_status()
        index = next((i for i in answer.json()["indexes"] if i["columns"] == [column]), {})
        if index.get("tuned") and index.get("num_unindexed_rows") == 0:
            return index
        time.sleep(0.5)
    raise RuntimeError(f"the index of {table}.{column} was not built and tuned within {timeout:.0f} s: {index}")


def anchor_server(x: np.ndarray, tmp: Path, logs: Path, nlist: int) -> Server:
    """The FastAPI + faiss IVF-Flat endpoint over ``x`` (ids ``r`` + row number), ``nlist`` lists."""
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "x.npy", x)
    (tmp / "ids.txt").write_text("\n".join(f"r{i:07d}" for i in range(len(x))))
    port = free_port()
    argv = [sys.executable, "-m", "bench._faiss_server", "--vectors", str(tmp / "x.npy"), "--ids",
            str(tmp / "ids.txt"), "--port", str(port), "--nlist", str(nlist)]
    return Server("faiss", argv, port, logs / "faiss.log").start("/readyz", timeout=900)


def tune_anchor(client: Any, queries: np.ndarray, truth: np.ndarray, target: float) -> dict[str, Any]:
    """The smallest nprobe of the ladder whose held-out recall@10 reaches ``target`` (the anchor a user
    would tune: fewer probes is faster); every step tried is reported."""
    nlist = int(client.post("/nprobe", json={"nprobe": 1}).json()["nlist"])
    tried: dict[int, float] = {}
    for p in [p for p in LADDER if p < nlist] + [nlist]:
        client.post("/nprobe", json={"nprobe": p})
        tried[p] = round(recall_over_http(client, "/search", queries, truth), 4)
        if tried[p] >= target:
            break
    return {"nlist": nlist, "nprobe": p, "recall": tried[p], "ladder": tried}


async def _load(base: str, bodies: list[dict[str, Any]], connections: int, seconds: float,
                shared: bool = False) -> tuple[float, list[float]]:
    """``connections`` keep-alive connections, each an ``httpx.AsyncClient`` of its own, in one process
    (``shared``: one client whose pool holds them all, to show the difference).

    Not one client with a pool of ``connections``: httpcore's pool (1.0.x) can hand one idle connection
    to two waiting requests at once (encode/httpcore issue 822); the loser raises ``ConnectionNotAvailable``
    inside the pool and waits for the next release, and some waited 100-370 ms. With a shared pool of 8,
    70 of 70 requests over 100 ms in a round had lost that race (traced through the pool); the servers
    answered wrk, and a plain asyncio client, with no request over 25 ms at twice the rate."""
    import httpx

    latencies: list[float] = []
    done = 0
    stop = time.perf_counter() + seconds
    size = connections if shared else 1
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    pool = httpx.AsyncClient(base_url=base, limits=limits, timeout=30) if shared else None

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        async with contextlib.AsyncExitStack() as stack:
            client = pool or await stack.enter_async_context(httpx.AsyncClient(base_url=base, limits=limits,
                                                                               timeout=30))
            while time.perf_counter() < stop:
                t = time.perf_counter()
                body = bodies[i % len(bodies)]
                r = await client.post(body["path"], content=body["content"],
                                      headers={"content-type": "application/json"})
                r.raise_for_status()
                latencies.append((time.perf_counter() - t) * 1e3)
                done += 1
                i += connections

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in range(connections)))
    finally:
        if pool is not None:
            await pool.aclose()
    return done / (time.perf_counter() - started), latencies


def qps_rounds(contenders: Sequence[tuple[str, Server, list[dict[str, Any]]]], rounds: int, seconds: float,
               connections: int = 8, log: Callable[[str], None] | None = None, shared: bool = False) -> dict[str, Any]:
    """QPS and p50 of each contender over ``rounds`` rounds, the order alternating each round; the
    median of the first contender's per-round ratios to the second's. ``shared``: the connections are
    one httpx client's pool (see ``_load``), and the result counts the requests over 100 ms."""
    slow: dict[str, list[int]] = {name: [] for name, _, _ in contenders}

    def measure(name: str, server: Server, bodies: list[dict[str, Any]]) -> tuple[float, float]:
        got, latencies = asyncio.run(_load(server.base, bodies, connections, seconds, shared))
        slow[name].append(sum(1 for ms in latencies if ms > 100))
        return got, float(np.median(latencies))

    result = _rounds(contenders, rounds, measure, connections, seconds, log, "shared pool " if shared else "")
    return {**result, "over_100ms": slow}


def _rounds(contenders: Sequence[tuple[str, Server, list[dict[str, Any]]]], rounds: int,
            measure: Callable[[str, Server, list[dict[str, Any]]], tuple[float, float]], connections: int,
            seconds: float, log: Callable[[str], None] | None, label: str) -> dict[str, Any]:
    """``measure`` (QPS, p50 ms) each contender ``rounds`` times, the order alternating each round."""
    qps: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    p50: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    for r in range(rounds):
        for name, server, bodies in contenders[:: 1 if r % 2 else -1]:
            got, middle = measure(name, server, bodies)
            qps[name].append(got)
            p50[name].append(middle)
            if log:
                log(f"{label}round {r + 1} {name}: {got:.0f} QPS, p50 {middle:.1f} ms")
    first, second = (name for name, _, _ in contenders[:2])
    return {"qps": {n: median(v) for n, v in qps.items()}, "p50_ms": {n: median(v) for n, v in p50.items()},
            "rounds": {n: [round(q, 1) for q in v] for n, v in qps.items()},
            "p50_rounds": {n: [round(q, 2) for q in v] for n, v in p50.items()},
            "ratio": median([a / b for a, b in zip(qps[first], qps[second], strict=True)]),
            "connections": connections, "seconds": seconds}


WRK_POST = r"""
-- Generated by bench/_search_served.py: POST each body of a file in turn (one JSON a line) to one path.
local bodies = {}
for line in io.lines(%(bodies)s) do bodies[#bodies + 1] = line end
local n = #bodies
local i = 0
function request()
  i = i + 1
  return wrk.format("POST", %(path)s, {["content-type"] = "application/json"}, bodies[(i %% n) + 1])
end
%(done)s"""


def wrk_rounds(contenders: Sequence[tuple[str, Server, list[dict[str, Any]]]], rounds: int, seconds: float,
               folder: Path, connections: int = 8, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``qps_rounds`` with wrk as the load: a C client spends a few hundredths of a CPU-ms a request, where
    the async httpx client spends about one, on the same 2 cores as both servers (and has stalls of its own
    of 0.1-1.8 s that neither server's event loop shows)."""
    import json

    from bench._serving import WRK_DONE, run_wrk

    scripts = {}
    for name, _, bodies in contenders:
        lines = folder / f"wrk-{name}.bodies"
        lines.write_text("\n".join(b["content"].decode() for b in bodies) + "\n")
        script = folder / f"wrk-{name}.lua"
        script.write_text(WRK_POST % {"bodies": json.dumps(str(lines)), "path": json.dumps(bodies[0]["path"]),
                                      "done": WRK_DONE})
        scripts[name] = script

    def measure(name: str, server: Server, bodies: list[dict[str, Any]]) -> tuple[float, float]:
        got = run_wrk(server.base, scripts[name], connections, seconds)
        if got.errors:
            raise RuntimeError(f"{name}: {got.errors} failed requests under wrk")
        return got.rps, got.p50_ms

    return _rounds(contenders, rounds, measure, connections, seconds, log, "wrk ")


def json_bodies(path: str, queries: np.ndarray, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Request bodies, encoded once (the client's JSON encoding is not what is measured)."""
    import orjson

    return [{"path": path, "content": orjson.dumps({"vector": q.tolist(), "k": K, **(extra or {})})}
            for q in queries]


def served(root: Path, logs: Path, env: dict[str, str] | None = None) -> Server:
    """``lightbox serve`` over ``root`` as a user runs it, ready."""
    return lightbox_server(root, logs, env=env).start("/readyz")
