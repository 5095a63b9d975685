"""``query``: the LanceDB query body mapped onto Lightbox's searcher and query planner.

- a vector (or several) -> ``Searcher.search`` (prefiltered, exact below the ANN threshold), with
  ``_distance``; blob cells are read by row id afterwards, as the native fetch does;
- ``full_text_query`` -> the keyword service (``app.lancedb_compat.keywords``), with ``_score``;
- ``"vector": []`` -> ``plan_query``: a filter-only scan (``k`` >= 2^31 means no limit), which also
  serves ``take_offsets`` (``_rowoffset IN (...)``) and ``with_row_id``.

Filters go through ``check_filter`` inside both services; unknown columns are 400s there too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from app.errors import BadRequest, Conflict
from app.filters import META_COLUMNS, check_filter, filter_errors
from app.lancedb_compat.keywords import full_text, run_keywords
from app.lancedb_compat.request import body_ref, int_field, str_field
from app.services.query import QuerySpec, check_columns, plan_query
from app.services.search import Searcher, SearchSpec, vector_column
from app.store import Ref, RowReader, Snapshot, Store
from app.store.schema import is_blob, vector_meta

PREFETCH_BYTES = 64 * 1024**2
NO_LIMIT = 2**31  # the clients send 2^63-1 when no limit was set
METRIC_NAMES = {"l2": "l2", "euclidean": "l2", "cosine": "cosine", "dot": "dot"}


@dataclass
class CompatQuery:
    """One query body, normalised from either protocol's shape."""

    ref: Ref
    vectors: list[list[float]] = field(default_factory=list)
    k: int | None = 10
    offset: int = 0
    filter: str | None = None
    columns: list[str] | None = None  # source columns, in output order
    names: list[str] | None = None  # output names (aliases), same length as columns
    with_row_id: bool = False
    vector_column: str | None = None
    nprobes: int | None = None
    refine_factor: int | None = None
    distance_type: str | None = None
    bounds: tuple[float | None, float | None] = (None, None)
    order_by: list[str | dict[str, Any]] = field(default_factory=list)
    words: tuple[str, list[str] | None] | None = None  # full_text_query: the query string and its columns


def parse_query(body: dict[str, Any]) -> CompatQuery:
    k = int_field(body, "k", 10)
    q = CompatQuery(ref=body_ref(body), vectors=_vectors(body.get("vector")), filter=str_field(body, "filter"),
                    k=None if k is not None and k >= NO_LIMIT else k, offset=int_field(body, "offset", 0) or 0,
                    with_row_id=bool(body.get("with_row_id")), vector_column=str_field(body, "vector_column"),
                    refine_factor=int_field(body, "refine_factor", minimum=1),
                    distance_type=str_field(body, "distance_type"),
                    bounds=(_number(body, "lower_bound"), _number(body, "upper_bound")),
                    order_by=_order_by(body.get("order_by")))
    q.nprobes = int_field(body, "minimum_nprobes", minimum=1) or int_field(body, "nprobes", minimum=0) or None
    q.columns, q.names = _columns(body.get("columns"))
    q.words = full_text(body.get("full_text_query"))
    if q.words is not None and q.vectors:
        raise BadRequest("a query is a vector search or a full-text search: send hybrid as two queries, as the "
                         "LanceDB clients do, and fuse them on _rowid")
    return q


def _vectors(raw: Any) -> list[list[float]]:
    if isinstance(raw, dict):  # the namespace spec: {"single_vector": [..]} or {"multi_vector": [[..], ..]}
        raw = raw.get("multi_vector") or raw.get("single_vector") or []
    if raw is None or raw == []:
        return []
    if not isinstance(raw, list):
        raise BadRequest("vector must be a list of numbers (or a list of such lists)")
    rows = raw if all(isinstance(v, list) for v in raw) else [raw]
    for row in rows:
        if not row or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in row):
            raise BadRequest("vector must be a non-empty list of numbers")
    return [[float(x) for x in row] for row in rows]


def _columns(raw: Any) -> tuple[list[str] | None, list[str] | None]:
    if isinstance(raw, dict) and ("column_names" in raw or "column_aliases" in raw):
        raw = raw.get("column_names") if raw.get("column_names") is not None else raw.get("column_aliases")
    if raw is None:
        return None, None
    if isinstance(raw, list) and all(isinstance(c, str) for c in raw):
        return list(raw), list(raw)
    if isinstance(raw, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        # {alias: expression}: Lightbox serves plain column references, renamed
        return [v.strip().strip("`") for v in raw.values()], list(raw)
    raise BadRequest("columns must be a list of names or an object of {alias: column}")


def _order_by(raw: Any) -> list[str | dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise BadRequest("order_by must be a list of {column_name, ascending}")
    return list(raw)


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{key} must be a number")
    return float(value)


# -- running -----------------------------------------------------------------------------------
def run_query(store: Store, searcher: Searcher, reader: RowReader, name: str,
              q: CompatQuery) -> tuple[Snapshot, pa.Schema, Iterator[pa.RecordBatch]]:
    """The answer's snapshot, schema and batches."""
    if q.vectors or q.words:
        snap, table = _vector_search(store, searcher, reader, name, q) if q.vectors else run_keywords(
            store, name, q.ref, q.words, k=q.k, offset=q.offset, filter=q.filter, columns=q.columns,  # type: ignore[arg-type]
            names=q.names, with_row_id=q.with_row_id)
        return snap, table.schema, iter(table.to_batches())
    return _scan(store, name, q)


def _scan(store: Store, name: str, q: CompatQuery) -> tuple[Snapshot, pa.Schema, Iterator[pa.RecordBatch]]:
    real = [c for c in q.columns or [] if c not in META_COLUMNS]
    spec = QuerySpec(filter=q.filter, columns=real or None, limit=q.k, offset=q.offset or None, order_by=q.order_by)
    plan = plan_query(store, name, q.ref, spec, max_rows=None)
    if q.columns is None:  # LanceDB answers every column by default: blobs as bytes, vectors too
        wanted = list(plan.snap.schema.names)
        names = list(wanted)
    else:
        wanted, names = list(q.columns), list(q.names or q.columns)
    if q.with_row_id and "_rowid" not in wanted:
        wanted.append("_rowid")
        names.append("_rowid")
    renames = dict(zip(wanted, names, strict=True))
    plan.columns = list(renames)  # meta columns (_rowoffset, _rowid) are Lance's to produce
    reader = plan.stream()
    batches = prefetch(reader, plan.filter)
    if all(k == v for k, v in renames.items()):
        return plan.snap, reader.schema, batches
    schema = pa.schema([f.with_name(renames.get(f.name, f.name)) for f in reader.schema])
    return plan.snap, schema, (pa.RecordBatch.from_arrays(b.columns, schema=schema) for b in batches)


def prefetch(reader: pa.RecordBatchReader, predicate: str | None) -> Iterator[pa.RecordBatch]:
    """Read the answer's first ``PREFETCH_BYTES`` before answering, so a filter that fails on the data
    (``CAST(s AS INT)`` over 'abc') is a 400, not a cut connection; a larger answer streams the rest."""
    batches = iter(reader)
    head: list[pa.RecordBatch] = []
    size, done = 0, False
    with filter_errors(predicate):
        while size <= PREFETCH_BYTES:
            batch = next(batches, None)
            if batch is None:
                done = True
                break
            head.append(batch)
            size += batch.nbytes
    return itertools.chain(head, () if done else batches)


@dataclass
class _Projection:
    """What a vector query returns and how: the searcher's columns, blob columns read by row id after."""

    wanted: list[str]  # output columns in order (source names), before _distance
    names: dict[str, str]  # source name -> output name (aliases)
    blobs: list[str]
    fetch: list[str]  # what the searcher reads
    by_id: bool  # blobs or _rowid: rows are found again by id


def _projection(schema: pa.Schema, q: CompatQuery) -> _Projection:
    wanted = [c for c in (q.columns if q.columns is not None else schema.names) if c != "_distance"]
    if q.with_row_id and "_rowid" not in wanted:
        wanted.append("_rowid")
    check_columns(schema, [c for c in wanted if c not in META_COLUMNS] or None)
    unknown_meta = [c for c in wanted if c in META_COLUMNS and c != "_rowid"]
    if unknown_meta:
        raise BadRequest(f"a vector query can return _rowid, not {unknown_meta}")
    blobs = [c for c in wanted if c in schema.names and is_blob(schema.field(c))]
    by_id = bool(blobs) or "_rowid" in wanted
    if by_id and "id" not in schema.names:
        raise BadRequest("blob columns and _rowid come back by id, and this table has no id column")
    fetch = [c for c in wanted if c not in blobs and c not in META_COLUMNS]
    if by_id and "id" not in fetch:
        fetch.append("id")
    names = dict(zip(q.columns or [], q.names or [], strict=True))
    return _Projection(wanted, names, blobs, fetch or ["id"], by_id)


def _vector_search(store: Store, searcher: Searcher, reader: RowReader, name: str,
                   q: CompatQuery) -> tuple[Snapshot, pa.Table]:
    if q.k is None:
        raise BadRequest("a vector query needs a limit (k)")
    snap = store.snapshot(name, q.ref)
    _check_metric(snap.schema, q)
    shape = _projection(snap.schema, q)
    check_filter(snap, q.filter)  # type errors are 400s before the searcher reads anything
    parts = []
    for i, vector in enumerate(q.vectors):
        table = _one_vector(searcher, reader, snap, q, shape, vector, q.k)
        if len(q.vectors) > 1:
            table = table.append_column("query_index", pa.array(np.full(table.num_rows, i, np.int32)))
        parts.append(table)
    return snap, pa.concat_tables(parts)


def _one_vector(searcher: Searcher, reader: RowReader, snap: Snapshot, q: CompatQuery, shape: _Projection,
                vector: list[float], k: int) -> pa.Table:
    spec = SearchSpec(vector=vector, k=k + q.offset, filter=q.filter, columns=shape.fetch,
                      column=q.vector_column, nprobes=q.nprobes, refine_factor=q.refine_factor)
    pinned = Ref(version=snap.version, branch=snap.branch)  # every vector reads the same version
    with filter_errors(q.filter):
        _, hits = searcher.search(snap.name, pinned, spec)
    hits = _bounded(hits.slice(q.offset), q.bounds)
    row_ids = _row_ids(reader, snap, hits) if shape.by_id else []
    columns = {c: hits.column(c) for c in hits.column_names}
    for c in shape.blobs:
        columns[c] = pa.array(RowReader.blobs(snap, row_ids, c), pa.large_binary())
    if "_rowid" in shape.wanted:
        columns["_rowid"] = pa.array(row_ids, pa.uint64())
    # Lance's order: the columns, _distance, then _rowid (the clients' hybrid fusion lines the two
    # result sets up by position, against the full-text side's columns, _score, _rowid)
    tail = ["_distance", "_rowid"] if "_rowid" in shape.wanted else ["_distance"]
    order = [c for c in shape.wanted if c != "_rowid"] + tail
    return pa.table({shape.names.get(c, c): columns[c] for c in order})


def _check_metric(schema: pa.Schema, q: CompatQuery) -> None:
    if q.distance_type is None:
        return
    asked = METRIC_NAMES.get(q.distance_type.lower())
    column = vector_column(schema, q.vector_column)
    recorded = vector_meta(column).get("metric", "l2")
    if asked != recorded:
        raise BadRequest(f"column {column.name!r} is searched by {recorded} distance; distance_type "
                         f"{q.distance_type!r} is not available for it", column=column.name, metric=recorded)


def _bounded(hits: pa.Table, bounds: tuple[float | None, float | None]) -> pa.Table:
    lower, upper = bounds
    if lower is None and upper is None:
        return hits
    distances = hits.column("_distance").to_numpy()
    keep = np.ones(len(distances), bool)
    if lower is not None:
        keep &= distances >= lower
    if upper is not None:
        keep &= distances < upper
    return hits.filter(pa.array(keep))


def _row_ids(reader: RowReader, snap: Snapshot, hits: pa.Table) -> list[int]:
    index = reader.index(snap)
    found = [index.row_id(key) for key in hits.column("id").to_pylist()]
    if any(rid is None for rid in found):
        raise Conflict("some hits could not be found again by id in this version; retry the query")
    return [int(rid) for rid in found if rid is not None]
