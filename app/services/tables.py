"""Table-level services: list, describe, create, drop."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from app.errors import Conflict
from app.store import Ref, Snapshot, Store
from app.store.schema import describe_schema, image_schema, is_vector, vector_meta


def list_tables(store: Store) -> list[dict[str, Any]]:
    out = []
    for name in store.names():
        snap = store.snapshot(name)
        out.append({"name": name, "version": snap.version, "num_rows": snap.count()})
    return out


def table_info(store: Store, name: str, ref: Ref) -> tuple[Snapshot, dict[str, Any]]:
    snap = store.snapshot(name, ref)
    info = {
        "name": name,
        "version": snap.version,
        "branch": snap.branch,
        "num_rows": snap.count(),
        "schema": describe_schema(snap.schema),
        "tags": {k: {"version": v["version"], "branch": v.get("branch")} for k, v in store.tags(name).list().items()},
        "branches": {
            k: {"parent_branch": v.get("parent_branch"), "parent_version": v.get("parent_version")}
            for k, v in store.branches(name).list().items()
        },
        "indexes": snap.indexes(coverage=False),
        "embeddings": embeddings_of(snap.schema),
    }
    return snap, info


def table_stats(store: Store, name: str, ref: Ref) -> tuple[Snapshot, dict[str, Any]]:
    """How a version is stored: rows, indexes, data fragments (their live rows, sorted) and bytes on disk."""
    snap = store.snapshot(name, ref)
    fragments = snap.fragments()
    return snap, {"num_rows": snap.count(), "num_indices": len(snap.indexes(coverage=False)),
                  "num_fragments": len(fragments), "total_bytes": sum(size for _, size in fragments),
                  "fragment_rows": sorted(rows for rows, _ in fragments)}


def embeddings_of(schema: pa.Schema) -> list[dict[str, Any]]:
    """Vector columns and what their field metadata records about how they were made."""
    out = []
    for f in schema:
        if is_vector(f):
            meta = vector_meta(f)
            out.append({"column": f.name, "model": meta.get("model"), "dim": f.type.list_size,
                        "source": meta.get("source"), "metric": meta.get("metric", "l2")})
    return out


def create_table(store: Store, name: str, schema: pa.Schema | None) -> dict[str, Any]:
    version = store.create(name, schema or image_schema())
    return {"name": name, "version": version, "num_rows": 0}


def drop_table(store: Store, name: str) -> None:
    """Drop a table; a clone's protecting tag on its source goes with it.

    A table that clones still read from cannot be dropped (409): its data files are theirs too, and
    deleting them would leave every clone unreadable.
    """
    from app.services.clones import clones_of, release_clone

    clones = clones_of(store, name)
    if clones:
        raise Conflict(f"table {name!r} has clones that read its data files: {clones}; drop them first",
                       table=name, clones=clones)
    store.drop(name)
    release_clone(store, name)
