"""The index type follows the column's size: IVF_FLAT under the keeper's flat limit, IVF_RQ past it, built
in segments that share one rotation, with the refine step tuned with the probes."""

from __future__ import annotations

from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest

from app.store import Ref, Store
from app.store.index_build import FLAT, QUANTIZED, fragment_groups, index_type_for
from app.store.vectors import IndexKeeper, vector_indexes

DIM = 32
ONE_VECTOR = 4 * DIM


def _rows(x: np.ndarray, first: int) -> pa.Table:
    return pa.table({"id": [f"r{first + i}" for i in range(len(x))],
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), DIM)})


def _mixture(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    return centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)


@pytest.fixture
def grown(tmp_path: Path) -> tuple[Store, np.ndarray, np.ndarray]:
    """A table of 3,000 rows in fragments of 500, and the generator's centres for more of the same."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, DIM)).astype(np.float32)
    x = _mixture(rng, centres, 3000)
    store = Store(str(tmp_path / "root"), refresh_seconds=0.0)
    lance.write_dataset(_rows(x, 0), store.table_uri("v"), max_rows_per_file=500, enable_stable_row_ids=True)
    return store, x, centres


def test_the_type_follows_the_size() -> None:
    assert index_type_for(1000, ONE_VECTOR, 1000 * ONE_VECTOR) == FLAT
    assert index_type_for(1001, ONE_VECTOR, 1000 * ONE_VECTOR) == QUANTIZED
    assert index_type_for(10**6, 1536, 0) == QUANTIZED


def test_a_column_past_the_limit_gets_rabitq_in_merged_segments_with_a_tuned_refine(grown) -> None:
    store, x, centres = grown
    budget = 1024**2  # segments of a few hundred rows: the build goes by several
    assert len(fragment_groups(store.latest("v"), ONE_VECTOR, budget)) > 1
    keeper = IndexKeeper(store, min_rows=1000, budget=budget, flat_limit=1000 * ONE_VECTOR)
    keeper.fold("v")
    ds = store.latest("v")
    found = vector_indexes(ds)["vector"]
    assert found["type"] == QUANTIZED and len(found["uuids"]) == 1  # one index, the segments merged
    tuning = keeper.tuning(ds, "vector", found)
    assert tuning is not None and tuning.refine_factor in (2, 5, 10, 20, 50) and tuning.recall >= 0.95

    # held-out queries at the tuned setting find their exact neighbours (a segment rotated on its own
    # would have scattered them: recall near 0.1)
    snap = store.snapshot("v", Ref())
    queries = _mixture(np.random.default_rng(1), centres, 50)
    recalls = []
    for q in queries:
        got = keeper.nearest(snap, "vector", q, 10, metric="l2", columns=["id"]).column("id").to_pylist()
        exact = np.argsort(((x - q) ** 2).sum(1))[:10]
        recalls.append(len({f"r{i}" for i in exact} & set(got)) / 10)
    assert np.mean(recalls) >= 0.9


def test_a_flat_index_is_rebuilt_as_rabitq_once_the_column_outgrows_the_limit(grown) -> None:
    store, _, centres = grown
    keeper = IndexKeeper(store, min_rows=1000, flat_limit=4000 * ONE_VECTOR)
    keeper.fold("v")
    assert vector_indexes(store.latest("v"))["vector"]["type"] == FLAT
    more = _mixture(np.random.default_rng(2), centres, 1500)
    lance.write_dataset(_rows(more, 3000), store.table_uri("v"), mode="append")
    store.invalidate("v")
    flat = store.latest("v")
    old = keeper.tuning(flat, "vector")
    assert old is not None and old.index_type == FLAT and old.refine_factor is None
    [step] = keeper.fold("v")
    assert step["action"] == "rebuilt"
    ds = store.latest("v")
    found = vector_indexes(ds)["vector"]
    assert found["type"] == QUANTIZED
    assert ds.stats.index_stats("vector_idx")["num_unindexed_rows"] == 0
    # the flat index's probe count means nothing for the new one: it is measured again, with a refine
    assert not old.fits(found, keeper._partitions(ds, found))
    tuning = keeper.tuning(ds, "vector")
    assert tuning is not None and tuning.index_type == QUANTIZED and tuning.refine_factor is not None


def test_a_quantized_index_is_held_whole_in_a_cache_sized_for_it(tmp_path: Path, grown) -> None:
    _, x, _ = grown
    store = Store(str(tmp_path / "small-cache"), refresh_seconds=0.0, index_cache_bytes=4096)
    lance.write_dataset(_rows(x, 0), store.table_uri("v"), max_rows_per_file=500)
    keeper = IndexKeeper(store, min_rows=1000, flat_limit=1000 * ONE_VECTOR)
    keeper.fold("v")
    ds = store.latest("v")
    [described] = ds.describe_indices()
    assert described.index_type == "IVF_RQ"
    # the table's session now caches the whole index (read in at once), not the 4 KB the store was given
    assert ds.session().index_cache_size_bytes() >= 0.9 * described.total_size_bytes
    # a process that does not fold (a replica) sizes the cache at its first search, without reading it in
    replica = Store(str(tmp_path / "small-cache"), refresh_seconds=0.0, index_cache_bytes=4096)
    IndexKeeper(replica, min_rows=1000).notice(("v", 1), "v")
    assert replica._index_caches["v"] >= described.total_size_bytes


def test_more_new_rows_than_the_budget_holds_are_indexed_by_a_rebuild_in_segments(grown) -> None:
    store, _, centres = grown
    keeper = IndexKeeper(store, min_rows=1000, budget=64 * 1024)  # 512 vectors of 128 B
    keeper.fold("v")
    rng = np.random.default_rng(4)
    first = 3000
    for count, action in ((100, "folded"), (1000, "rebuilt")):
        lance.write_dataset(_rows(_mixture(rng, centres, count), first), store.table_uri("v"), mode="append")
        first += count
        store.invalidate("v")
        [step] = keeper.fold("v")
        assert step["action"] == action
    assert store.latest("v").stats.index_stats("vector_idx")["num_unindexed_rows"] == 0
