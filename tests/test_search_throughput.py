"""Search throughput: concurrent searches of one kind go to Lance as one batch (``app/store/coalesce.py``)
that answers each query exactly as a search of its own would, and folds keep an index to two deltas."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest

from app.store import Ref, Store
from app.store.coalesce import Coalescer
from app.store.vectors import IndexKeeper, _search_many, deltas_to_merge

DIM = 16


def test_calls_arriving_while_a_batch_runs_make_the_next_batch() -> None:
    gate = threading.Event()
    seen: list[list[int]] = []

    def answer(queries: list[int]) -> list[int]:
        seen.append(list(queries))
        if len(seen) == 1:
            assert gate.wait(10)
        return [q * 10 for q in queries]

    batcher = Coalescer(lanes=1)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batcher.run, "k", 1, answer)
        while not seen:  # the first call is being answered, alone: nothing waited for company
            time.sleep(0.01)
        rest = [pool.submit(batcher.run, "k", q, answer) for q in (2, 3, 4, 5)]
        other = pool.submit(batcher.run, "other key", 7, answer)  # another kind has its own lane
        assert other.result(10) == 70
        time.sleep(0.2)  # the four have joined one batch, its leader waiting for the lane
        gate.set()
        assert first.result(10) == 10
        assert [f.result(10) for f in rest] == [20, 30, 40, 50]
    assert seen[0] == [1] and [7] in seen and sorted(next(s for s in seen if len(s) > 1)) == [2, 3, 4, 5]
    assert batcher.batches == 3 and batcher.queries == 6


def test_an_error_reaches_every_call_of_its_batch() -> None:
    gate = threading.Event()

    def answer(queries: list[int]) -> list[int]:
        if queries == [0]:
            assert gate.wait(10)
            return [0]
        raise ValueError("bad batch")

    batcher = Coalescer(lanes=1)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.run, "k", 0, answer)
        time.sleep(0.1)
        rest = [pool.submit(batcher.run, "k", q, answer) for q in (1, 2, 3)]
        time.sleep(0.2)
        gate.set()
        assert first.result(10) == 0
        for f in rest:
            with pytest.raises(ValueError, match="bad batch"):
                f.result(10)


@pytest.fixture
def indexed(tmp_path: Path) -> Store:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 40, 4000)] + 0.8 * rng.normal(size=(4000, DIM)).astype(np.float32)
    store = Store(str(tmp_path / "root"), refresh_seconds=0.0)
    table = pa.table({"id": [f"r{i}" for i in range(len(x))],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), DIM)})
    lance.write_dataset(table, store.table_uri("v"), enable_stable_row_ids=True)
    IndexKeeper(store, min_rows=1000).fold("v")
    return store


def test_a_batch_answers_each_query_as_its_own_search_would(indexed: Store) -> None:
    ds = indexed.snapshot("v", Ref())._ds
    queries = list(np.random.default_rng(1).normal(size=(7, DIM)).astype(np.float32))
    spec = {"column": "vector", "k": 5, "metric": "L2", "nprobes": 3}
    batch = _search_many(ds, spec, ["id", "_distance"], queries)
    for query, got in zip(queries, batch, strict=True):
        alone = ds.to_table(columns=["id", "_distance"], nearest={**spec, "q": query}, with_row_id=True)
        assert got.column_names == alone.column_names
        assert got.column("id").to_pylist() == alone.column("id").to_pylist()
        assert np.allclose(got.column("_distance").to_numpy(), alone.column("_distance").to_numpy())


def test_concurrent_searches_equal_sequential_ones(indexed: Store) -> None:
    keeper = IndexKeeper(indexed, min_rows=1000)
    snap = indexed.snapshot("v", Ref())
    queries = np.random.default_rng(2).normal(size=(64, DIM)).astype(np.float32)

    def ids(q: np.ndarray) -> list[str]:
        return keeper.nearest(snap, "vector", q, 5, metric="l2", columns=["id"]).column("id").to_pylist()

    alone = [ids(q) for q in queries]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ids, queries))
    assert together == alone
    assert keeper.batches.queries == 2 * len(queries)  # every unfiltered search went through the batcher


def test_folds_merge_by_size() -> None:
    assert deltas_to_merge([20_000], 1000) == 0  # the first fold: a small delta of its own
    assert deltas_to_merge([20_000, 1000], 1000) == 1  # the next ones merge into it
    assert deltas_to_merge([20_000, 1000], 1500) == 3  # an eighth of the trained rows: all into one
    assert deltas_to_merge([20_000, 1000], 0, merge=True) == 3


def test_many_folds_leave_at_most_two_deltas(indexed: Store) -> None:
    keeper = IndexKeeper(indexed, min_rows=1000)
    rng = np.random.default_rng(3)
    for fold in range(4):
        x = rng.normal(size=(100, DIM)).astype(np.float32)
        rows = pa.table({"id": [f"n{fold}-{i}" for i in range(100)],
                         "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), DIM)})
        lance.write_dataset(rows, indexed.table_uri("v"), mode="append")
        indexed.invalidate("v")
        keeper.fold("v")
    stats = indexed.latest("v").stats.index_stats("vector_idx")
    assert stats["num_indexed_rows_per_delta"] == [4000, 400] and stats["num_unindexed_rows"] == 0
