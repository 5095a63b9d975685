"""Small IVF_FLAT indexes searched from memory (``app/store/resident.py``): the same hits and distances as
Lance's own search of the same version, through deletes, updates, appends and folds, for each metric;
only what fits the budget is held; the service answers from memory once the copy is made."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest

from app.store import Ref, Store
from app.store.schema import vector_field
from app.store.vectors import IndexKeeper
from tests.conftest import InProcess

DIM = 16


def _rows(x: np.ndarray, first: int, metric: str) -> pa.Table:
    field = vector_field("vector", DIM, model="none", source="none", metric=metric)
    return pa.table({"id": pa.array([f"r{first + i}" for i in range(len(x))]),
                     "n": pa.array(np.arange(first, first + len(x))),
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), DIM)},
                    schema=pa.schema([pa.field("id", pa.string()), pa.field("n", pa.int64()), field]))


def _wait(keeper: IndexKeeper, snap, metric: str = "l2") -> None:
    """Until the resident copy of this snapshot's index is made (it is built off the request path)."""
    deadline = time.monotonic() + 60
    while not keeper.held(snap, "vector", 10, metric, None, None):
        assert time.monotonic() < deadline, "the resident copy was not made"
        time.sleep(0.05)


def _lance(snap, q: np.ndarray, k: int, nprobes: int, metric: str) -> pa.Table:
    """Lance's own answer for the same search of the same version."""
    return snap._ds.to_table(columns=["id", "n", "_distance"], with_row_id=True,
                             nearest={"column": "vector", "q": q, "k": k, "nprobes": nprobes, "metric": metric})


def _same(mine: pa.Table, theirs: pa.Table) -> None:
    """Equal hits in the same order (rows at equal distances may come in either order) and distances."""
    a, b = mine.column("_distance").to_numpy(), theirs.column("_distance").to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    tied = np.isclose(b[:, None], b[None, :], rtol=1e-5).sum(1) > 1
    for x, y, t in zip(mine.column("id").to_pylist(), theirs.column("id").to_pylist(), tied, strict=True):
        assert t or x == y
    assert sorted(mine.column("n").to_pylist()) == sorted(theirs.column("n").to_pylist()) or tied.any()


@pytest.fixture(params=["l2", "cosine", "dot"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, IndexKeeper, str, np.ndarray]:
    """3,000 rows in fragments of 500 indexed by the keeper (IVF_FLAT), then changed every way a table
    changes: rows deleted, rows updated far away (stable row ids: they move to a new fragment), rows
    appended and not indexed yet."""
    metric = request.param
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(20, DIM)).astype(np.float32) * 3
    x = centres[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, DIM)).astype(np.float32)
    store = Store(str(tmp_path / "root"), refresh_seconds=0.0)
    uri = store.table_uri("v")
    lance.write_dataset(_rows(x, 0, metric), uri, max_rows_per_file=500, enable_stable_row_ids=True)
    keeper = IndexKeeper(store, min_rows=1000, resident=64 * 1024**2)
    keeper.fold("v")
    ds = lance.dataset(uri)
    ds.delete("n % 11 = 0")
    far = "[" + ",".join(["40.0"] * DIM) + "]"
    for n in (1, 2, 3, 500, 1500):
        lance.dataset(uri).update({"vector": far}, where=f"n = {n}")
    lance.write_dataset(_rows(rng.normal(size=(300, DIM)).astype(np.float32) * 3, 3000, metric), uri, mode="append")
    store.invalidate("v")
    return store, keeper, metric, centres


def test_the_same_hits_as_lances_search_of_the_version(table) -> None:
    store, keeper, metric, centres = table
    snap = store.snapshot("v", Ref())
    assert keeper.nearest(snap, "vector", centres[0], 10, metric=metric, columns=["id"]) is not None  # Lance
    _wait(keeper, snap, metric)
    rng = np.random.default_rng(4)
    queries = [c + rng.normal(size=DIM).astype(np.float32) for c in centres] + [np.full(DIM, 40.0, np.float32)]
    before = keeper.resident.searches
    for nprobes in (1, 3, 8):
        mine = keeper.nearest_many(snap, "vector", queries, 10, metric=metric, nprobes=nprobes, columns=["id", "n"])
        for q, got in zip(queries, mine, strict=True):
            _same(got, _lance(snap, q, 10, nprobes, metric))
    assert keeper.resident.searches - before == 3 * len(queries)  # from memory, not through Lance
    # the rows updated far away are found where they are now, once each, and the deleted ones never
    far = keeper.nearest(snap, "vector", np.full(DIM, 40.0, np.float32), 5, metric=metric, columns=["id"])
    ids = far.column("id").to_pylist()
    assert len(set(ids)) == len(ids) == 5
    if metric != "dot":  # (by dot, anything long in that direction is near)
        assert set(ids) == {"r1", "r2", "r3", "r500", "r1500"}
    everything = keeper.nearest_many(snap, "vector", queries, 50, metric=metric, nprobes=100, columns=["n"])
    assert not any(n < 3000 and n % 11 == 0 for t in everything for n in t.column("n").to_pylist())


def test_a_fold_keeps_the_lists_until_they_fall_behind_and_an_old_version_is_lances(table) -> None:
    store, keeper, metric, _ = table
    old = store.snapshot("v", Ref())
    _wait(keeper, old, metric)
    keeper.fold("v")  # the appended rows go into a delta: same centroids
    new = store.snapshot("v", Ref())
    assert new.version > old.version
    _wait(keeper, new, metric)
    assert keeper.resident.reads == 1  # 300 new rows are under REFRESH_ROWS: searched exactly beside the lists
    # the rows the fold indexed are searched exactly beside the lists: each is its own nearest at one probe
    appended = new._ds.to_table(columns=["id", "vector"], filter="n >= 3000 AND n < 3010")
    before = keeper.resident.searches
    for row_id, vector in zip(appended.column("id").to_pylist(), appended.column("vector").to_pylist(), strict=True):
        got = keeper.nearest(new, "vector", np.asarray(vector, np.float32), 3, metric=metric, nprobes=1,
                             columns=["id"])
        if metric != "dot":  # (by dot a longer vector in the same direction comes first)
            assert got.column("id")[0].as_py() == row_id
    assert keeper.resident.searches - before == 10
    # a version from before the index was made is searched by Lance, exactly
    first = store.snapshot("v", Ref(version=1))
    assert not keeper.held(first, "vector", 10, metric, None, None)


def test_only_what_fits_the_budget_is_held(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    store = Store(str(tmp_path / "root"), refresh_seconds=0.0)
    lance.write_dataset(_rows(rng.normal(size=(2000, DIM)).astype(np.float32), 0, "l2"), store.table_uri("v"))
    keeper = IndexKeeper(store, min_rows=1000, resident=2000 * DIM)  # less than the vectors
    keeper.fold("v")
    snap = store.snapshot("v", Ref())
    got = keeper.nearest(snap, "vector", np.zeros(DIM, np.float32), 5, metric="l2", columns=["id"])
    assert got.num_rows == 5
    deadline = time.monotonic() + 10
    while keeper.resident._pending or keeper.resident._worker is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not keeper.held(snap, "vector", 5, "l2", None, None) and keeper.resident.held_bytes() == 0
    off = IndexKeeper(store, min_rows=1000)  # resident=0: every search is Lance's
    assert not off.held(snap, "vector", 5, "l2", None, None)


def test_the_service_answers_from_memory_as_lance_would(in_process: Callable[..., InProcess], tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    root = tmp_path / "data"
    x = rng.normal(size=(3000, DIM)).astype(np.float32)
    lance.write_dataset(_rows(x, 0, "l2"), str(root / "v.lance"), enable_stable_row_ids=True)
    held = in_process(str(root), index_min_rows=1000, index_quiet_seconds=0.0)
    plain = in_process(str(root), index_min_rows=1000, background_indexing=False, resident_index_bytes=0)
    with held.http() as a, plain.http() as b:
        assert a.get("/api/v1/tables/v").status_code == b.get("/api/v1/tables/v").status_code == 200
        keeper = held.app.state.searcher.indexes  # (the app starts with its first request)
        keeper.fold("v")
        body = {"vector": x[7].tolist(), "k": 5, "columns": ["id", "n"]}
        first = a.post("/api/v1/tables/v/search", json=body)
        assert first.status_code == 200 and first.json()["hits"][0]["id"] == "r7"
        snap = held.app.state.store.snapshot("v", Ref())
        _wait(keeper, snap)
        before = keeper.resident.searches
        for i in range(0, 3000, 300):
            body = {"vector": x[i].tolist(), "k": 5, "columns": ["id", "n"]}
            mine, theirs = a.post("/api/v1/tables/v/search", json=body), b.post("/api/v1/tables/v/search", json=body)
            assert mine.status_code == theirs.status_code == 200
            assert mine.headers["x-lightbox-version"] == theirs.headers["x-lightbox-version"]
            assert [h["id"] for h in mine.json()["hits"]] == [h["id"] for h in theirs.json()["hits"]]
            np.testing.assert_allclose([h["_distance"] for h in mine.json()["hits"]],
                                       [h["_distance"] for h in theirs.json()["hits"]], rtol=1e-4, atol=1e-4)
        assert keeper.resident.searches - before == 10
        [mine] = [i for i in a.get("/api/v1/tables/v/indexes").json()["indexes"] if i["name"] == "vector_idx"]
        [theirs] = [i for i in b.get("/api/v1/tables/v/indexes").json()["indexes"] if i["name"] == "vector_idx"]
        assert mine["in_memory"] is True and theirs["in_memory"] is False
        metrics = a.get("/metrics").text
        assert re.search(r"^lightbox_resident_searches_total (\d+)", metrics, re.M).group(1) != "0"
        held_bytes = float(re.search(r"^lightbox_resident_index_bytes (\S+)", metrics, re.M).group(1))
        assert 3000 * DIM * 4 <= held_bytes <= 2 * 3000 * (DIM * 4 + 16)
