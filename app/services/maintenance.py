"""Table upkeep: list and build indexes, optimize (compact, fold indexes, prune old versions).

Both HTTP doors (``/api/v1/.../indexes``, ``/optimize`` and the LanceDB ``create_index`` routes) and the
command line call these; the engine work itself is ``app.store.maintenance``'s and the index keeper's
(``app.store.vectors``).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pyarrow as pa

from app.errors import BadRequest, Conflict
from app.store import Ref, Snapshot, Store
from app.store import maintenance as upkeep
from app.store.vectors import IndexKeeper

MAX_RETENTION_SECONDS = 100 * 366 * 86400  # a century: longer is "keep everything", and must still fit Lance's int64


def list_indexes(store: Store, keeper: IndexKeeper | None, name: str,
                 ref: Ref) -> tuple[Snapshot, list[dict[str, Any]]]:
    """The version's indexes; a vector index the keeper tuned also reports the recall it was tuned to."""
    snap = store.snapshot(name, ref)
    return snap, indexes_of(snap, keeper)


def indexes_of(snap: Snapshot, keeper: IndexKeeper | None) -> list[dict[str, Any]]:
    """A snapshot's indexes, each vector index with the tuning the keeper recorded for it."""
    tunings = keeper.describe(snap) if keeper is not None else {}
    return [{**index, **tunings.get(index["name"], {})} for index in snap.indexes()]


def create_index(store: Store, name: str, column: str, kind: str, params: dict[str, Any], *,
                 replace: bool = True, sized_defaults: bool = False) -> dict[str, Any]:
    """Build a Lance index on main's latest version (one new version); returns its description.

    ``replace=False`` refuses (409) a name already taken. ``sized_defaults`` fills the IVF parameters a
    caller left out as LanceDB does (about sqrt(rows) partitions, dim/16 or dim/8 sub-vectors) rather
    than as Lance does."""
    head = store.snapshot(name)
    if sized_defaults and kind.upper().startswith("IVF") and column in head.schema.names:
        params = {**vector_defaults(kind.upper(), head.schema.field(column).type, head.count()), **params}
    index_name = params.get("name") or upkeep.default_index_name(column, kind)
    if not replace and any(i["name"] == index_name for i in head.indexes(coverage=False)):
        raise Conflict(f"index {index_name!r} already exists", index=index_name)
    return upkeep.create_index(store, name, column, kind, params)


def drop_index(store: Store, name: str, index_name: str) -> dict[str, Any]:
    """Drop an index from main's latest version (one new version); older versions and tags keep theirs."""
    store.snapshot(name)  # a missing table is a 404 before anything else
    return upkeep.drop_index(store, name, index_name)


def vector_defaults(kind: str, column_type: pa.DataType, num_rows: int) -> dict[str, int]:
    """LanceDB's defaults when the client leaves them out: sqrt(rows) partitions, dim/16 (or /8) sub-vectors."""
    out = {"num_partitions": max(1, min(num_rows, round(math.sqrt(num_rows))))}
    if kind == "IVF_PQ" and pa.types.is_fixed_size_list(column_type):
        dim = column_type.list_size
        out["num_sub_vectors"] = dim // 16 if dim % 16 == 0 else dim // 8 if dim % 8 == 0 else 1
    return out


def optimize(store: Store, keeper: IndexKeeper | None, name: str, retention_seconds: float, *,
             message: str | None = None, author: str | None = None) -> dict[str, Any]:
    """Compact, fold new rows into indexes, prune untagged versions older than ``retention_seconds``
    (tagged versions are never pruned); then the keeper builds, merges and tunes the vector indexes of
    the tables large enough for it (``keeper`` None: every index is folded by the optimize itself)."""
    if not 0 <= retention_seconds <= MAX_RETENTION_SECONDS:  # inf, nan, 1e308
        raise BadRequest(f"retention_seconds must be a number from 0 to {MAX_RETENTION_SECONDS}",
                         retention_seconds=str(retention_seconds))
    # the keeper folds the vector indexes of the tables it keeps, under its own lock; smaller tables'
    # (hand-made) vector indexes are folded by optimize itself
    kept = keeper is not None and store.snapshot(name).count() >= keeper.min_rows
    out = upkeep.optimize(store, name, timedelta(seconds=retention_seconds), message=message, author=author,
                          fold_vectors=not kept)
    folded = keeper.fold(name, merge=True) if keeper is not None else []
    if folded:
        out["vector_indexes"] = folded
        out["version"] = store.snapshot(name).version
    return out
