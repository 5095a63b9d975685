"""A bulk load through the official LanceDB client into a real ``lightbox serve``, with the server's
resident memory and index listing watched (``tests/test_bulk_load.py`` and ``bench/bulk_load.py``)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pyarrow as pa

from tests.serve_procs import ServeProcess


class RssWatch:
    """Samples a process's RSS every 50 ms; kills it past ``limit`` so a regression fails a test
    instead of taking the machine down."""

    def __init__(self, pid: int, limit: int) -> None:
        self.process = psutil.Process(pid)
        self.limit = limit
        self.peak = self.process.memory_info().rss
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            if rss > self.limit:
                self.killed = True
                self.process.kill()
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def mixture_batches(batches: int, rows: int, dim: int, seed: int = 0) -> Iterator[pa.Table]:
    """An overlapping Gaussian mixture (2,000 centres, noise 1.2), ``batches`` tables of ``rows``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, dim)).astype(np.float32)
    for b in range(batches):
        x = centres[rng.integers(0, len(centres), rows)] + 1.2 * rng.normal(size=(rows, dim)).astype(np.float32)
        yield pa.table({"id": [f"b{b}-{i}" for i in range(rows)],
                        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), dim)})


def builds(client: httpx.Client) -> float:
    """Background builds, folds and merges the server counted (``/metrics``)."""
    found = re.search(r"^lightbox_vector_index_builds_total (\S+)$", client.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def settled(index: dict[str, Any]) -> bool:
    """The index covers every row and is tuned. (When writes come slowly, as on a busy machine, the
    keeper may build on the first batches and fold the rest in later: tuned alone is not the end.)"""
    return bool(index.get("tuned")) and index.get("num_unindexed_rows") == 0


@dataclass
class BulkLoad:
    """What one load saw: memory, time, the listing's slowest answer and the index it ended with."""

    raw: int
    start_rss: int
    limit: int
    peak_rss: int = 0
    settled_rss: int = 0
    killed: bool = False
    load_seconds: float = 0.0
    indexed_seconds: float = 0.0
    slowest_listing: float = 0.0
    builds: float = 0.0
    index: dict[str, Any] = field(default_factory=dict)


def bulk_load(root: Path, batches: int, rows: int, dim: int, limit: Any, log: Path | None = None,
              timeout: float = 240) -> BulkLoad:
    """Start a server on ``root``, load the batches, then poll ``GET .../indexes`` until the index is
    tuned and covers every row. ``limit(start_rss, raw)`` is the RSS past which the server is killed."""
    import lancedb

    # a measurement, not a test of lines: the server is never traced (coverage would slow its writes and
    # indexing and add to its memory), whatever the test process measures
    server = ServeProcess(str(root), log=log, env={"COVERAGE_PROCESS_CONFIG": "", "COVERAGE_PROCESS_START": ""})
    server.wait_ready()
    try:
        start = psutil.Process(server.proc.pid).memory_info().rss
        raw = batches * rows * dim * 4
        out = BulkLoad(raw=raw, start_rss=start, limit=int(limit(start, raw)))
        watch = RssWatch(server.proc.pid, out.limit)
        began = time.perf_counter()
        db = lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url)
        data = mixture_batches(batches, rows, dim)
        try:
            tbl = db.create_table("bulk", next(data))
            for batch in data:
                tbl.add(batch)
        except Exception:
            if watch.killed:
                out.killed, out.peak_rss = True, watch.peak
                return out
            raise
        out.load_seconds = time.perf_counter() - began
        with httpx.Client(base_url=server.url, timeout=60) as client:
            deadline = time.monotonic() + timeout
            while not settled(out.index) and not watch.killed and time.monotonic() < deadline:
                asked = time.perf_counter()
                answer = client.get("/api/v1/tables/bulk/indexes")
                out.slowest_listing = max(out.slowest_listing, time.perf_counter() - asked)
                answer.raise_for_status()
                out.index = next((i for i in answer.json()["indexes"] if i["columns"] == ["vector"]), {})
                time.sleep(0.25)
            out.indexed_seconds = time.perf_counter() - began - out.load_seconds
            if not watch.killed:
                out.builds = builds(client)
                time.sleep(2)
                out.settled_rss = psutil.Process(server.proc.pid).memory_info().rss
        watch.stop()
        out.killed, out.peak_rss = watch.killed, watch.peak
        return out
    finally:
        server.stop()
