"""Row writes over HTTP: patch a row, delete a row, delete by filter. Each is one version."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from app.errors import Conflict, RowNotFound, Unprocessable
from app.filters import check_filter
from app.store import Store
from app.store.column_fit import conform, plan_columns
from app.store.ids import check_id_column
from app.store.schema import STANDARD_NAMES, is_blob
from app.store.upserts import delete_where, keyed_write, write_turn
from app.store.writes import append_stream, check_tag_name, tag_version

# Columns that describe the stored bytes: changing them by hand would make them lie.
IMMUTABLE = STANDARD_NAMES - {"source"}


class UnknownColumns(Unprocessable):
    code = "unknown_column"


def commit_meta(store: Store, name: str, version: int | None, tag: str | None, branch: str | None) -> None:
    """Tag the version a write made, when the write asked for it."""
    if tag and version is not None:
        tag_version(store, name, tag, version, branch=branch)


def check_tag_free(store: Store, name: str, tag: str | None, branch: str | None) -> None:
    """Refuse, before writing, a tag the new version could not take (a bad or reserved name, or a tag
    already on an older version): a refused write must leave the table as it was."""
    if not tag:
        return
    check_tag_name(tag)
    info = store.tags(name).get(tag)
    head = store.head(name, branch).version
    if info is not None and (info.get("branch") != branch or int(info["version"]) != head):
        raise Conflict(f"tag {tag!r} already points at version {info['version']}; nothing was written",
                       tag=tag, version=info["version"])


def patch_row(store: Store, name: str, row_id: str, values: dict[str, Any], *, branch: str | None = None,
              message: str | None = None, author: str | None = None, tag: str | None = None) -> dict[str, Any]:
    schema = store.head(name, branch).schema
    unknown = sorted(set(values) - set(schema.names))
    if unknown:
        hints = {c: m[0] for c in unknown if (m := difflib.get_close_matches(c, schema.names, n=1))}
        said = ", ".join(f"{c!r}" + (f" (did you mean {hints[c]!r}?)" if c in hints else "") for c in unknown)
        raise UnknownColumns(f"unknown column(s) {said}", unknown=unknown, suggestions=hints, columns=schema.names)
    fixed = sorted(c for c in values if c in IMMUTABLE or is_blob(schema.field(c)))
    if fixed:
        raise Unprocessable(f"column(s) {fixed} describe the stored image and cannot be patched; "
                            "upload the image again instead", columns=fixed)
    if not values:
        raise Unprocessable("nothing to patch: give at least one column")
    fields = [schema.field("id"), *(schema.field(c) for c in values)]
    try:
        arrays = [pa.array([row_id], pa.string()), *(pa.array([values[f.name]]).cast(f.type) if values[f.name]
                  is not None else pa.nulls(1, f.type) for f in fields[1:])]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError) as exc:
        raise Unprocessable(f"a value does not fit its column's type: {exc}") from exc
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    check_tag_free(store, name, tag, branch)
    version, counts = keyed_write(store, name, table, mode="update", branch=branch, message=message, author=author)
    if not counts.get("updated") and not counts.get("unchanged"):
        raise RowNotFound(f"no row with id {row_id!r} in table {name!r}", id=row_id)
    commit_meta(store, name, version, tag, branch)  # values equal to the stored ones write no version
    return {"version": version or store.head(name, branch).version, "updated": counts.get("updated", 0),
            "unchanged": counts.get("unchanged", 0)}


def delete_rows(store: Store, name: str, *, ids: list[str] | None = None, filter_text: str | None = None,
                branch: str | None = None, message: str | None = None, author: str | None = None,
                tag: str | None = None) -> dict[str, Any]:
    """Delete rows by id (404 when a single id is missing) or by a validated filter."""
    head = store.head(name, branch)
    predicate = check_filter(head, filter_text) if filter_text is not None else None
    if filter_text is not None and predicate is None:
        raise Unprocessable("give a filter; to delete every row use filter 'true'")
    check_tag_free(store, name, tag, branch)
    if predicate is not None:
        version, counts = delete_where(store, name, predicate, branch=branch, message=message, author=author)
    else:
        version, counts = keyed_write(store, name, None, mode="update", branch=branch, delete_ids=ids or [],
                                      message=message, author=author)
        if ids and len(ids) == 1 and not counts.get("deleted"):
            raise RowNotFound(f"no row with id {ids[0]!r} in table {name!r}", id=ids[0])
    commit_meta(store, name, version, tag, branch)
    return {"deleted": counts.get("deleted", 0), "version": version or head.version}


def append_rows(store: Store, name: str, rows: pa.Table, *, mode: str = "insert", branch: str | None = None,
                message: str | None = None, author: str | None = None, tag: str | None = None,
                delete_ids: Callable[[set[str]], list[str]] | None = None) -> dict[str, Any]:
    """Add rows to a table that is not an image table, in the table's schema.

    Columns the table lacks are added (older rows read null) in the same version; values for the
    others must fit their column (``app.store.column_fit``). Every row is fitted before anything is
    written, so rows that do not fit change nothing. ``delete_ids`` (given the ids written, the ids
    to remove) deletes rows in the same version.
    """
    current = store.head(name, branch).schema
    if any(is_blob(f) for f in current):
        raise Unprocessable("this is an image table: upload images (multipart, or Arrow rows with an 'image' column)")
    if "id" in rows.column_names and "id" in current.names and pa.types.is_string(current.field("id").type):
        check_id_column(rows.column("id"))
    schema = plan_columns(name, current, rows.schema)
    table = conform(name, rows, schema)
    check_tag_free(store, name, tag, branch)
    if "id" in schema.names:
        if table.column("id").null_count:
            raise Unprocessable("every row needs an id")
        table = _first_per_id(table)
        with write_turn(store, name):  # the ids to delete are read in the same turn as the write
            stale = delete_ids(set(table.column("id").to_pylist())) if delete_ids else None
            version, counts = keyed_write(store, name, table, mode="upsert" if mode == "upsert" else "insert",
                                          branch=branch, delete_ids=stale, message=message, author=author)
    elif delete_ids is not None:
        raise Unprocessable("this write replaces rows by id, and the table has no id column")
    else:
        version = append_stream(store, name, schema, table.to_batches(), message=message, author=author,
                                branch=branch)
        counts = {"inserted": table.num_rows if version else 0, "updated": 0}
    commit_meta(store, name, version, tag, branch)
    return {"version": version or store.head(name, branch).version, "inserted": counts.get("inserted", 0),
            "updated": counts.get("updated", 0), "unchanged": counts.get("unchanged", 0),
            **({"deleted": counts.get("deleted", 0)} if delete_ids else {}), "skipped": []}


def _first_per_id(table: pa.Table) -> pa.Table:
    """Duplicate ids inside one upload: the first wins (the engine would insert them all)."""
    seen: dict[str, int] = {}
    for i, key in enumerate(table.column("id").to_pylist()):
        seen.setdefault(key, i)
    return table.take(sorted(seen.values())) if len(seen) < table.num_rows else table
