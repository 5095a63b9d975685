"""Query, count and batch fetch over one snapshot of a table.

Paging uses a cursor that pins the version the first page read, so a client walking 25,000 rows
sees every row exactly once even while other writers append: a version never changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from app.errors import BadRequest, InvalidRef
from app.filters import check_filter, filter_errors
from app.store import Ref, RowReader, Snapshot, Store
from app.store.schema import column_order, is_blob, scalar_columns

MAX_JSON_ROWS = 10_000
MAX_FETCH_IDS = 10_000
MAX_POSITION = 2**63 - 2  # limits and offsets are int64 in Lance (and a page reads limit + 1 rows)


class UnknownColumn(BadRequest):
    code = "unknown_column"


class InvalidCursor(BadRequest):
    code = "invalid_cursor"


@dataclass
class QuerySpec:
    filter: str | None = None
    columns: list[str] | None = None
    limit: int | None = 100
    offset: int | None = None
    cursor: str | None = None
    order_by: list[str | dict[str, Any]] = field(default_factory=list)


@dataclass
class QueryPlan:
    """A validated query bound to one snapshot, ready to run as a table or a stream."""

    snap: Snapshot
    columns: list[str]
    filter: str | None
    limit: int | None
    offset: int
    order: list[Any]
    fingerprint: str

    @property
    def scan_columns(self) -> list[str]:
        """The projection plus the ordering columns it lacks: Lance cannot sort by a column it does not read."""
        return list(dict.fromkeys([*self.columns, *(o.column_name for o in self.order)]))

    def options(self, limit: int | None) -> dict[str, Any]:
        return {"filter": self.filter, "limit": limit, "offset": self.offset, "order_by": self.order,
                "blobs_as_bytes": True}

    def page(self) -> tuple[pa.Table, str | None]:
        """One page of rows and the cursor of the next page (None at the end)."""
        extra = None if self.limit is None else self.limit + 1
        with filter_errors(self.filter):
            table = self.snap.read(self.scan_columns, **self.options(extra)).select(self.columns)
        if self.limit is not None and table.num_rows > self.limit:
            # limit 0 gets no next page: its cursor would point at this same place forever
            next_cursor = encode_cursor(self.snap, self.offset + self.limit, self.fingerprint) if self.limit else None
            return table.slice(0, self.limit), next_cursor
        return table, None

    def stream(self) -> pa.RecordBatchReader:
        reader = self.snap.scan(self.scan_columns, **self.options(self.limit))
        if len(self.scan_columns) == len(self.columns):
            return reader
        schema = pa.schema([reader.schema.field(c) for c in self.columns])
        return pa.RecordBatchReader.from_batches(schema, (b.select(self.columns) for b in reader))


def plan_query(store: Store, name: str, ref: Ref, spec: QuerySpec, *, max_rows: int | None) -> QueryPlan:
    if spec.cursor and spec.offset:
        raise BadRequest("give either offset or cursor, not both")
    if spec.limit is not None and not 0 <= spec.limit <= MAX_POSITION:
        raise BadRequest(f"limit must be between 0 and {MAX_POSITION}")
    if spec.offset is not None and not 0 <= spec.offset <= MAX_POSITION:
        raise BadRequest(f"offset must be between 0 and {MAX_POSITION}")
    if max_rows is not None and (spec.limit is None or spec.limit > max_rows):
        raise BadRequest(f"limit must be at most {max_rows} for JSON answers; ask for Arrow to stream more",
                         limit=spec.limit, max=max_rows)
    fingerprint = _fingerprint(spec)
    offset = spec.offset or 0
    if spec.cursor:
        version, branch, offset = decode_cursor(spec.cursor, fingerprint)
        if ref != Ref() and (ref.version, ref.branch) != (version, branch):
            raise InvalidRef("the cursor already pins a version; do not give a ref with it")
        ref = Ref(version=version, branch=branch)
    snap = store.snapshot(name, ref)
    schema = snap.schema
    return QueryPlan(
        snap=snap,
        columns=check_columns(schema, spec.columns),
        filter=check_filter(snap, spec.filter),
        limit=spec.limit,
        offset=offset,
        order=_ordering(schema, spec.order_by),
        fingerprint=fingerprint,
    )


def count(store: Store, name: str, ref: Ref, filter_text: str | None) -> tuple[Snapshot, int]:
    snap = store.snapshot(name, ref)
    predicate = check_filter(snap, filter_text)
    with filter_errors(predicate):
        return snap, snap.count(predicate)


def fetch(store: Store, reader: RowReader, name: str, ref: Ref, ids: list[str], columns: list[str] | None,
          with_images: bool) -> tuple[Snapshot, pa.Table, list[str]]:
    """Rows for ``ids`` in the order asked (repeats kept), plus the ids that are not there."""
    if len(ids) > MAX_FETCH_IDS:
        raise BadRequest(f"at most {MAX_FETCH_IDS} ids per fetch, got {len(ids)}")
    snap = store.snapshot(name, ref)
    schema = snap.schema
    wanted = [c for c in check_columns(schema, columns) if not is_blob(schema.field(c))]
    if not wanted and "id" in schema.names:  # only blob columns asked: their bytes come with with_images
        wanted = ["id"]
    index = reader.index(snap)
    found = [(key, index.row_id(key)) for key in ids]
    missing = [key for key, rid in found if rid is None]
    row_ids = [rid for _, rid in found if rid is not None]
    table = snap.take(row_ids, wanted)
    if with_images and "image" in schema.names:
        blobs = RowReader.blobs(snap, row_ids)
        table = table.append_column("image", pa.array(blobs, pa.large_binary()))
    return snap, table, missing


def check_columns(schema: pa.Schema, columns: list[str] | None) -> list[str]:
    """The projection: the asked columns (all must exist), or every non-blob, non-vector column."""
    if not columns:
        return scalar_columns(schema)
    unknown = [c for c in columns if c not in schema.names]
    if unknown:
        raise UnknownColumn(f"unknown column(s) {unknown}", unknown=unknown, columns=schema.names)
    return list(dict.fromkeys(columns))


def _ordering(schema: pa.Schema, order_by: list[str | dict[str, Any]]) -> list[Any]:
    out = []
    for item in order_by or []:
        if isinstance(item, str):
            name, _, direction = item.strip().partition(" ")
            ascending = direction.strip().lower() not in ("desc", "descending")
        else:
            name = str(item.get("column") or item.get("column_name") or "")
            ascending = bool(item.get("ascending", True))
        if name not in schema.names:
            raise UnknownColumn(f"cannot order by unknown column {name!r}", unknown=[name])
        out.append(column_order(name, ascending=ascending))
    if out and "id" in schema.names and all(o.column_name != "id" for o in out):
        out.append(column_order("id"))  # ties broken by id, so offset paging is deterministic
    return out


def _fingerprint(spec: QuerySpec) -> str:
    raw = json.dumps([spec.filter, spec.columns, spec.order_by, spec.limit], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode_cursor(snap: Snapshot, offset: int, fingerprint: str) -> str:
    raw = json.dumps({"v": snap.version, "b": snap.branch, "o": offset, "q": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> tuple[int, str | None, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        version, branch, offset, query = int(raw["v"]), raw["b"], int(raw["o"]), raw["q"]
        if not 1 <= version <= MAX_POSITION or not 0 <= offset <= MAX_POSITION or not isinstance(branch, str | None):
            raise ValueError("cursor fields out of range")
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidCursor("cursor is not one this service issued") from exc
    if query != fingerprint:
        raise InvalidCursor("cursor belongs to a different query (filter, columns, order or limit changed)")
    return version, branch, offset

