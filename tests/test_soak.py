"""A bounded soak: a real ``lightbox serve`` keeps a flat RSS while versions pile up under reads and writes.

The load is ``bench/soak.py``'s (image reads on 4 connections, a filtered search and a filtered query
every 0.5 s, an upload every 0.15 s: one new version each) for 36 s against a small table. Lance's
metadata cache is given a small byte budget (``LIGHTBOX_METADATA_CACHE_BYTES``), so it fills within
seconds and the second half of the run shows what keeps growing once every cache is full. Before
the caches were bounded by bytes, this load grew the server by +187 MB/min over the second half
(each version's manifest, listing every fragment, stayed cached), still rising at the end; bounded,
+20 to +29 MB/min in runs here.

The bound on the slope leaves room for what grows with the table itself (every upload adds a
fragment, which ``optimize`` compacts away) and for the allocator's noise on a shared machine.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from app.store import Ref, RowReader, Store
from app.store.history import VersionLog
from app.store.writes import append_stream
from bench.soak import build_root, run_load
from tests.serve_procs import ServeProcess

SECONDS = 36.0
SLOPE_BOUND_MB_PER_MIN = 60.0


@pytest.mark.long
def test_rss_stays_flat_while_versions_pile_up(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    ids = build_root(tmp_path / "root", 300)
    server = ServeProcess(str(tmp_path / "root"), env={"LIGHTBOX_METADATA_CACHE_BYTES": str(4 * 1024**2)},
                          log=tmp_path / "serve.log").wait_ready()
    try:
        process = psutil.Process(server.proc.pid)
        result = run_load(server.url, ids, SECONDS, lambda: process.memory_info().rss / 1024**2,
                          sample_every=1.5, image_threads=4, upload_every=0.15)
    finally:
        server.stop()
    assert not result.errors, (result.errors, result.failures)
    uploads = result.samples[-1][2]
    assert uploads > 100, result.statuses  # versions did pile up
    slope = result.slope_mb_per_min(SECONDS / 2)
    trail = [(round(t), round(mb)) for t, mb, _ in result.samples]
    print(f"RSS slope over the second half {slope:+.1f} MB/min; {uploads} uploads; RSS over time {trail}")
    assert slope < SLOPE_BOUND_MB_PER_MIN, (f"RSS grew {slope:+.1f} MB/min over the second half", trail)


def test_version_log_and_id_maps_are_bounded_by_bytes(store: Store) -> None:
    schema = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("x", pa.int64())])
    for i in range(30):
        append_stream(store, "t", schema, [pa.record_batch([[f"r{i}"], [i]], schema=schema)], message="m" * 50)
    log = VersionLog(store.table_uri, cache_bytes=4096)
    head = store.latest("t")
    first = [log.entry(head, "t", v) for v in log.numbers(head, "t")]
    assert len(first) == 30 and log._entry_bytes <= 4096 and len(log._entries) < 30  # the oldest were let go
    assert [log.entry(head, "t", v) for v in log.numbers(head, "t")] == first  # and are read again when asked
    reader = RowReader(cache_size=8, cache_bytes=1)  # each id map alone is over budget: only the newest stays
    for version in (28, 29, 30):
        assert reader.row(store.snapshot("t", Ref(version=version)), "r0")["x"] == 0
    assert len(reader._indexes) == 1
