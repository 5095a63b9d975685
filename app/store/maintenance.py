"""Indexes and housekeeping: Lance's own indexes, compaction and version retention.

Tagged versions are never pruned: cleanup runs with ``error_if_tagged_old_versions=False``, so a
tagged old version neither blocks the cleanup nor makes ``optimize`` fail (the lancedb wrappers
raise in that case and silently skip index maintenance).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from app.errors import BadRequest, Conflict, InvalidName
from app.store.catalog import Store, check_name
from app.store.commits import conflict_of, lost_race, retry_commit
from app.store.notes import write_note
from app.store.schema import is_vector
from app.store.vectors import LANCE_METRICS, VECTOR_TYPES
from app.store.writes import CLONE_TAG_PREFIX, default_author

SCALAR_TYPES = {"BTREE", "BITMAP", "LABEL_LIST", "FTS", "INVERTED", "NGRAM", "ZONEMAP", "BLOOMFILTER"}


def list_indexes(ds: Any) -> list[dict[str, Any]]:
    out = []
    stats = {d.name: d for d in ds.describe_indices()}
    total = ds.count_rows()
    for index in ds.list_indices():
        described = stats.get(index["name"])
        out.append({
            "name": index["name"],
            "type": index["type"],
            "columns": list(index["fields"]),
            "num_indexed_rows": getattr(described, "num_rows_indexed", None),
            "num_unindexed_rows": max(0, total - (getattr(described, "num_rows_indexed", 0) or 0)),
        })
    return out


def create_index(store: Store, name: str, column: str, index_type: str, params: dict[str, Any]) -> dict[str, Any]:
    """Build a Lance index on the latest version (one new version); returns its description."""
    ds = store.fresh(name)
    kind = index_type.upper()
    if column not in ds.schema.names:
        raise BadRequest(f"unknown column {column!r}", column=column)
    field = ds.schema.field(column)
    index_name = params.get("name") or f"{column}_idx"
    try:
        if kind in VECTOR_TYPES:
            if not is_vector(field):
                raise BadRequest(f"{kind} needs a vector column; {column!r} is {field.type}")
            metric = LANCE_METRICS.get(str(params.get("metric") or _recorded_metric(field)).lower(), "L2")
            options = {k: params[k] for k in ("num_partitions", "num_sub_vectors", "num_bits") if params.get(k)}
            ds.create_index(column, kind, name=index_name, metric=metric, replace=True, **options)
        elif kind in SCALAR_TYPES:
            if is_vector(field):
                raise BadRequest(f"{kind} is a scalar index; use a vector index type for {column!r}")
            from app.store.schema import is_blob  # here, not at the top: keeps this module's imports as they were

            if is_blob(field):
                raise BadRequest(f"{column!r} holds image bytes, which cannot be indexed; index a metadata "
                                 "or vector column", column=column)
            ds.create_scalar_index(column, kind, name=index_name, replace=True)
        else:
            raise BadRequest(f"unknown index type {index_type!r}; use one of {sorted(VECTOR_TYPES | SCALAR_TYPES)}")
    except (TypeError, OverflowError) as exc:  # the column's type or a parameter does not fit the index
        raise BadRequest(f"cannot build {kind} on {column!r}: {exc}", column=column) from exc
    except (ValueError, OSError) as exc:
        if conflict_of(exc):
            raise lost_race(name, f"building {kind} on {column!r}", exc) from exc
        if isinstance(exc, ValueError):  # Lance refused the parameters
            raise BadRequest(f"cannot build {kind} on {column!r}: {exc}", column=column) from exc
        raise Conflict(f"cannot build {kind} on {column!r}: {exc}") from exc
    store.invalidate(name)
    latest = store.latest(name)
    return {"name": index_name, "type": kind, "column": column, "version": latest.version}


def _recorded_metric(field: Any) -> str:
    return (field.metadata or {}).get(b"lightbox:metric", b"l2").decode()


def optimize(store: Store, name: str, retention: timedelta, *, message: str | None = None,
             author: str | None = None, fold_vectors: bool = True) -> dict[str, Any]:
    """Compact small files, fold new rows into indexes, prune untagged versions older than ``retention``.

    Each version it commits is logged as ``optimize`` (a version note: Lance records nothing for
    these commits), with zero row counts: compaction and index upkeep change no row."""
    props = {"lightbox:op": "optimize", "author": author or default_author(),
             "lightbox:inserted": "0", "lightbox:updated": "0", "lightbox:deleted": "0"}
    # each step plans on a fresh latest, again when a concurrent write preempted it (app.store.commits)
    before = store.fresh(name).version
    compaction = retry_commit(lambda: store.fresh(name).optimize.compact_files(), table=name, what="optimize")
    _note_range(store, name, before, {**props, "__lance_commit_message": message or "optimize: compact data files"})
    ds = store.fresh(name)
    # the service's index keeper folds vector indexes under its own lock (fold_vectors=False); a
    # command-line optimize has no keeper and folds them here
    names = [i["name"] for i in ds.list_indices() if fold_vectors or i["type"] not in VECTOR_TYPES]
    if names:
        before = ds.version
        retry_commit(lambda: store.fresh(name).optimize.optimize_indices(index_names=names), table=name,
                     what="optimize")
        _note_range(store, name, before,
                    {**props, "__lance_commit_message": message or "optimize: fold new rows into indexes"})
    ds = store.fresh(name)
    unguarded = unguarded_clones(store, name, ds)
    stats = None
    if not unguarded:
        stats = ds.cleanup_old_versions(older_than=retention, error_if_tagged_old_versions=False)
    store.invalidate(name)
    store.log.forget(name)
    store.forget_pinned(name)
    out = {
        "version": store.latest(name).version,
        "fragments_removed": getattr(compaction, "fragments_removed", 0),
        "fragments_added": getattr(compaction, "fragments_added", 0),
        "old_versions_removed": getattr(stats, "old_versions", 0),
        "bytes_removed": getattr(stats, "bytes_removed", 0),
    }
    if unguarded:
        out["retention_skipped"] = (f"table(s) {unguarded} read this table's files without a "
                                    f"{CLONE_TAG_PREFIX}<name> tag guarding them; no version was pruned")
    return out


def unguarded_clones(store: Store, name: str, ds: Any) -> list[str]:
    """Tables that read ``name``'s files (zero-copy clones) but have no guard tag on it.

    Lance's cleanup keeps tagged versions and the versions branches fork from, but knows nothing of
    clones: the guard tag ``clone`` leaves is what keeps their files. A clone without one (its guard
    removed outside Lightbox) means pruning could delete files it reads, so retention waits.
    """
    source = _location(store.table_uri(name))
    guarded = {tag.removeprefix(CLONE_TAG_PREFIX) for tag in ds.tags.list() if tag.startswith(CLONE_TAG_PREFIX)}
    through = {_location(store.table_uri(g)) for g in guarded if _valid(g)}
    out = []
    for other in store.names():
        if other == name or other in guarded:
            continue
        try:
            bases = {_location(b.path) for b in store.latest(other).base_paths().values()}
        except (ValueError, OSError):
            continue
        # a clone of a guarded clone reads only files that clone's guard already keeps
        if any(b == source or b.startswith(source + "/") for b in bases) and not bases & through:
            out.append(other)
    return out


def _valid(name: str) -> bool:
    try:
        check_name(name)
    except InvalidName:
        return False
    return True


def _location(uri: str) -> str:
    path = uri.removeprefix("file://")
    return os.path.realpath(path) if "://" not in path else path.rstrip("/")


def _note_range(store: Store, name: str, before: int, props: dict[str, str]) -> None:
    """Note ``props`` on the versions committed since ``before`` (compaction may commit two: one
    reserving fragment ids, one rewriting), except a concurrent write's, which carries its author."""
    head = store.fresh(name)
    for version in range(before + 1, head.version + 1):
        pinned = head if version == head.version else head.checkout_version(version)
        try:
            txn = pinned.get_transactions(1)[0]
        except (ValueError, OSError, IndexError, TypeError):  # pylance fails to decode some (RewrittenIndex)
            txn = None
        if txn is None or "author" not in (txn.transaction_properties or {}):
            write_note(store.table_uri(name), pinned, None, props, store.storage_options)
