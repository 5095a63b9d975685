"""Every row's nearest rows, from the column's vector index, a batch of query vectors at a time.

The queries go through the index keeper's ``nearest`` (Lance's ANN search on the pinned version, the
probe count the keeper tuned for its recall target, unindexed rows searched exactly and merged), with
``QUERY_BATCH`` vectors per call: Lance answers a batch of queries in one scan of the probed partitions
(0.2 ms a query at 100k x 224 against 2-4 ms one at a time, measured here). Only the vectors of one batch
are held at once; what is kept is ``rows x m`` positions and distances.

A column with no vector index is searched exactly (every query reads every vector), which is fine for
up to ``FLAT_LIMIT`` rows; a larger one first gets its index from the keeper (the same build the
background keeper would make), and without one the request is refused rather than left to run for hours.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.errors import Conflict
from app.services.curate.method import Neighbours
from app.store import Snapshot
from app.store.schema import vector_meta
from app.store.vectors import VECTOR_TYPES, IndexKeeper

__all__ = ["FLAT_LIMIT", "QUERY_BATCH", "has_index", "nearest_rows"]

FLAT_LIMIT = 20_000  # rows a column without a vector index may be searched exactly for
QUERY_BATCH = 512  # query vectors per Lance call


class NeedsIndex(Conflict):
    code = "needs_vector_index"


def has_index(snap: Snapshot, column: str) -> bool:
    return any(i["type"] in VECTOR_TYPES and i["columns"] == [column] for i in snap.indexes(coverage=False))


def check_searchable(snap: Snapshot, column: str) -> None:
    """A column past ``FLAT_LIMIT`` rows must have a vector index (the caller asked the keeper first)."""
    if snap.count() > FLAT_LIMIT and not has_index(snap, column):
        raise NeedsIndex(f"column {column!r} has no vector index and the table has more than {FLAT_LIMIT} rows, "
                         f"too many to compare exactly; build one (POST .../indexes, or lower the "
                         "index_min_rows setting and run `lightbox optimize`) and run curate again",
                         column=column, limit=FLAT_LIMIT)


def nearest_rows(snap: Snapshot, keeper: IndexKeeper, field: pa.Field, row_ids: np.ndarray, m: int) -> Neighbours:
    """The ``m`` nearest other rows of every row (rows in the order of ``row_ids``, their stable row
    ids); a row without a vector has none, and is nobody's neighbour."""
    rows = len(row_ids)
    order = np.argsort(row_ids, kind="stable")
    sorted_ids = row_ids[order]
    positions = np.full((rows, m), -1, np.int32 if rows < 2**31 else np.int64)
    distances = np.full((rows, m), np.inf, np.float32)
    metric = vector_meta(field).get("metric", "l2")
    want = min(m + 1, max(rows, 1))  # the row itself comes back first
    for batch in snap.scan([field.name], with_row_id=True, batch_size=QUERY_BATCH):
        present = batch.column(field.name).is_valid()
        if not pc.any(present).as_py():
            continue
        batch = batch.filter(present)
        dim = field.type.list_size
        queries = batch.column(field.name).flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        queries = queries.reshape(-1, dim)
        own = _positions(batch.column("_rowid").to_numpy(), sorted_ids, order)
        found = keeper.nearest(snap, field.name, queries, want, metric=metric)
        _place(found, own, sorted_ids, order, positions, distances, metric)
    return Neighbours(positions, distances)


def _place(found: pa.Table, own: np.ndarray, sorted_ids: np.ndarray, order: np.ndarray, positions: np.ndarray,
           distances: np.ndarray, metric: str) -> None:
    """Write one batch's answers into the rows' slots, nearest first, the row itself left out."""
    if found.num_rows == 0:
        return
    query = (found.column("query_index").to_numpy().astype(np.int64) if "query_index" in found.column_names
             else np.zeros(found.num_rows, np.int64))
    hit = _positions(found.column("_rowid").to_numpy(), sorted_ids, order)
    dist = _api_distance(found.column("_distance").to_numpy(zero_copy_only=False), metric)
    keep = (hit >= 0) & (hit != own[query])
    query, hit, dist = query[keep], hit[keep], dist[keep]
    sort = np.lexsort((hit, dist, query))
    query, hit, dist = query[sort], hit[sort], dist[sort]
    starts = np.searchsorted(query, query, side="left")
    slot = np.arange(len(query)) - starts
    fits = slot < positions.shape[1]
    positions[own[query[fits]], slot[fits]] = hit[fits]
    distances[own[query[fits]], slot[fits]] = dist[fits]


def _positions(row_ids: np.ndarray, sorted_ids: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Stable row ids -> positions in the curated rows (-1 for a row not among them)."""
    at = np.searchsorted(sorted_ids, row_ids)
    at = np.minimum(at, len(sorted_ids) - 1)
    return np.where(sorted_ids[at] == row_ids, order[at], -1)


def _api_distance(distance: np.ndarray, metric: str) -> np.ndarray:
    """Lance's ``_distance`` in the API's terms (squared L2, or 1 - similarity), as search reports it."""
    distance = np.asarray(distance, np.float64)
    return np.maximum(1.0 + distance if metric == "dot" else distance, 0.0).astype(np.float32)
