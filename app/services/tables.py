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
        out.append({"name": name, "version": snap.version, "num_rows": snap.ds.count_rows()})
    return out


def table_info(store: Store, name: str, ref: Ref) -> tuple[Snapshot, dict[str, Any]]:
    snap = store.snapshot(name, ref)
    ds = snap.ds
    main = store.latest(name)
    info = {
        "name": name,
        "version": snap.version,
        "branch": snap.branch,
        "num_rows": ds.count_rows(),
        "schema": describe_schema(ds.schema),
        "tags": {k: {"version": v["version"], "branch": v.get("branch")} for k, v in main.tags.list().items()},
        "branches": {
            k: {"parent_branch": v.get("parent_branch"), "parent_version": v.get("parent_version")}
            for k, v in main.branches.list().items()
        },
        "indexes": [
            {"name": i["name"], "type": i["type"], "columns": i["fields"]} for i in ds.list_indices()
        ],
        "embeddings": embeddings_of(ds.schema),
    }
    return snap, info


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
    ds = store.create(name, schema or image_schema())
    return {"name": name, "version": ds.version, "num_rows": 0}


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
