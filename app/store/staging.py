"""Staged writes: data files written ahead of the one commit that publishes them (upload sessions).

An upload session writes each batch's rows as Lance fragments that no version names yet, beside
the data of the table (or of its branch), and publishes them all in one commit at the end: an
``Append``; an ``Update`` when it also replaces rows (their old copies marked deleted in their
fragments, a fragment left with no rows dropped); the evolve path's ``Merge`` when the rows bring
new columns; or, for a table that did not exist, the ``Overwrite`` that creates it as version 1.
Until then nothing is visible, and an abandoned session's files are removed by name (the
session's record, ``{table}/_lightbox/uploads/{id}.json``, lists them), so a restart can clean up
what a dead process staged.

The commit is made under the table's write turn, on the branch's latest: rows written since the
session began by anyone else are checked first, and an id this session writes that another writer
added, replaced or deleted meanwhile makes the commit a 409 with nothing committed, as any other
commit conflict.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import lance
import pyarrow as pa
import pyarrow.compute as pc
from lance.fragment import FragmentMetadata

from app.errors import Conflict
from app.store.catalog import Store
from app.store.evolve import delete_at, merge_operation, pause, try_commit, version_props, widened_schema
from app.store.files import filesystem
from app.store.fragments import NEW_TABLE_STORAGE_VERSION
from app.store.snapshot import Snapshot
from app.store.uncommitted import write_uncommitted
from app.store.upserts import RETRIES, write_turn

UPLOADS_DIR = "_lightbox/uploads"
DeleteIds = Callable[[set[str]], list[str]]
# A staged batch: data files beside the table that no version names until ``publish``
Staged = FragmentMetadata


def stage(store: Store, name: str, dest: Snapshot | None, schema: pa.Schema,
          batches: Iterable[pa.RecordBatch], *, new_columns: bool) -> list[FragmentMetadata]:
    """Write ``batches`` as fragments of ``name`` that no version names yet: beside the data of ``dest``
    (the handle of the branch written to), or of the table about to be created when ``dest`` is None."""
    if dest is None:
        return write_uncommitted(store.table_uri(name), schema, batches, storage_options=store.storage_options,
                                 data_storage_version=NEW_TABLE_STORAGE_VERSION)
    return write_uncommitted(dest._ds, schema, batches, storage_options=store.storage_options,
                             data_storage_version=dest._ds.data_storage_version, new_columns=new_columns)


def staged_files(store: Store, name: str, branch: str | None, fragments: Iterable[FragmentMetadata]) -> list[str]:
    """The data files of staged fragments, as paths under the table's location."""
    base = store.table_uri(name) + (f"/tree/{branch}" if branch else "")
    return [f"{base}/data/{file.path}" for fragment in fragments for file in fragment.data_files()]


def remove_files(store: Store, paths: Iterable[str]) -> None:
    """Delete staged data files (a file already gone is no error)."""
    for path in paths:
        fs, inner = filesystem(path, store.storage_options)
        with contextlib.suppress(OSError):  # FileNotFoundError included
            fs.delete_file(inner)


def stored_values(snap: Snapshot | None, column: str) -> set[str]:
    """Every non-null value of one text column of a snapshot (the ids, or the digests, it stores)."""
    if snap is None or column not in snap.schema.names:
        return set()
    return {v for v in snap._ds.to_table(columns=[column]).column(column).to_pylist() if v is not None}


def remove_unborn(store: Store, name: str) -> None:
    """After an upload that would have created ``name`` is dropped: the folders its files were written in,
    if the table still does not exist and they are empty (a local root; object stores have no folders)."""
    if not store.is_local or store.exists(name):
        return
    folder = store.table_uri(name).removeprefix("file://")
    for sub in ("data", UPLOADS_DIR, UPLOADS_DIR.split("/")[0], ""):
        with contextlib.suppress(OSError):  # not empty (another upload), or already gone
            os.rmdir(os.path.join(folder, sub) if sub else folder)


# -- session records -------------------------------------------------------------------------
def save_record(store: Store, name: str, upload_id: str, body: dict[str, Any]) -> None:
    """Write (or replace) one session's record beside the table."""
    fs, root = filesystem(f"{store.table_uri(name)}/{UPLOADS_DIR}", store.storage_options)
    fs.create_dir(root, recursive=True)
    final = f"{root}/{upload_id}.json"
    # on a local disk a reader (the janitor, another server) could see the file half written: write it
    # aside and rename it into place; an object store's PUT is already whole or absent
    path = f"{final}.part" if fs.type_name == "local" else final
    with fs.open_output_stream(path) as out:
        out.write(json.dumps(body).encode())
    if path != final:
        fs.move(path, final)


def drop_record(store: Store, name: str, upload_id: str) -> None:
    fs, root = filesystem(f"{store.table_uri(name)}/{UPLOADS_DIR}", store.storage_options)
    with contextlib.suppress(OSError):
        fs.delete_file(f"{root}/{upload_id}.json")


def records(store: Store, name: str) -> list[dict[str, Any]]:
    """Every session record of a table (an unreadable one is skipped: it is rewritten or expires)."""
    from pyarrow import fs as pafs

    fs, root = filesystem(f"{store.table_uri(name)}/{UPLOADS_DIR}", store.storage_options)
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except OSError:
        return []
    out = []
    for info in infos:
        if not info.path.endswith(".json"):
            continue
        try:
            with fs.open_input_stream(info.path) as handle:
                body = json.loads(handle.read())
        except (OSError, ValueError):
            continue
        if isinstance(body, dict):
            out.append(body)
    return out


def record_tables(store: Store) -> list[str]:
    """Tables (or names about to be tables) of the root that hold session records."""
    from pyarrow import fs as pafs

    fs, root = filesystem(store.uri, store.storage_options)
    try:
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    except OSError:
        return []
    names = []
    for entry in entries:
        base = entry.path.rstrip("/").rsplit("/", 1)[-1]
        if base.endswith(".lance") and fs.get_file_info(f"{entry.path}/{UPLOADS_DIR}").type != pafs.FileType.NotFound:
            names.append(base.removesuffix(".lance"))
    return names


# -- the one commit --------------------------------------------------------------------------
def publish(store: Store, name: str, *, branch: str | None, read: Snapshot | None, schema: pa.Schema,
            fragments: list[FragmentMetadata], new_columns: bool, inserted: set[str], replaced: set[str],
            delete_ids: DeleteIds | None, props: dict[str, str],
            kept: set[str] | None = None) -> tuple[int | None, dict[str, int]]:
    """Publish staged ``fragments`` (rows whose ids are ``inserted`` or ``replaced``) as one version of the
    branch, deleting the stored copies of ``replaced`` ids and the ids ``delete_ids`` names (given the ids
    the upload holds, written or ``kept`` as they were; called under the turn). ``read`` is the snapshot the
    session began on (None: the table did not exist, and this commit creates it). Returns (the version, or
    None when nothing changed; the counts)."""
    with write_turn(store, name):
        if read is None:
            return _create(store, name, schema, fragments, inserted, props)
        for attempt in range(RETRIES):
            head = store.fresh(name, branch)
            lineage = _lineage(head) if (replaced or delete_ids or head.version != read.version) else None
            if lineage is not None and head.version != read.version:
                _refuse_clashes(name, read, lineage, inserted, replaced)
            held = inserted | replaced | (kept or set())
            doomed = set(delete_ids(held)) - held if delete_ids else set()
            where = _addresses(lineage, replaced | doomed) if lineage is not None else []
            counts = {"inserted": len(inserted), "updated": len(replaced), "deleted": len(where) - len(replaced)}
            if not fragments and not where:
                return None, counts
            committed = try_commit(head, _operation(name, head, schema, fragments, where, new_columns),
                                   version_props(props, counts, schema, head.schema))
            if committed is not None:
                store.invalidate(name)
                return committed, counts
            pause(attempt)
    raise Conflict(f"table {name!r} kept changing; nothing was written", table=name)


def _create(store: Store, name: str, schema: pa.Schema, fragments: list[FragmentMetadata], inserted: set[str],
            props: dict[str, str]) -> tuple[int | None, dict[str, int]]:
    counts = {"inserted": len(inserted), "updated": 0, "deleted": 0}
    if store.exists(name):
        raise Conflict(f"table {name!r} was created by another writer during this upload; nothing was committed",
                       table=name)
    if not fragments:
        return None, counts
    recorded = {"lightbox:op": "create", **props, **{f"lightbox:{k}": str(v) for k, v in counts.items()}}
    txn = lance.Transaction(0, lance.LanceOperation.Overwrite(schema, fragments), str(uuid.uuid4()),
                            transaction_properties=recorded)
    try:
        ds = lance.LanceDataset.commit(store.table_uri(name), txn, read_version=None, enable_stable_row_ids=True,
                                       storage_options=store.storage_options, max_retries=0)
    except (OSError, ValueError, RuntimeError) as exc:
        if "conflict" in str(exc).lower() or "exist" in str(exc).lower():
            raise Conflict(f"table {name!r} was created by another writer during this upload; nothing was "
                           "committed", table=name) from exc
        raise
    store.forget(name)
    return ds.version, counts


def _operation(name: str, head: lance.LanceDataset, schema: pa.Schema, fragments: list[FragmentMetadata],
               where: list[int], new_columns: bool) -> lance.LanceOperation.BaseOperation:
    """The one Lance operation that adds ``fragments`` and deletes the rows at ``where``."""
    if new_columns:  # the rows bring columns: "add columns or rows", old rows kept as they are
        lance_schema = widened_schema(name, head, schema)
        if where and len(where) == head.count_rows():  # every stored row goes: the table becomes the rows
            return lance.LanceOperation.Overwrite(schema, fragments)
        return merge_operation(delete_at(name, head, where) + fragments, lance_schema)
    if not where:
        return lance.LanceOperation.Append(fragments)
    offsets: dict[int, list[int]] = {}
    for address in where:
        offsets.setdefault(address >> 32, []).append(address & 0xFFFFFFFF)
    removed, updated = [], []
    for fragment in head.get_fragments():
        doomed = offsets.get(fragment.fragment_id)
        if doomed:
            meta = fragment.delete_rows(doomed)
            (removed.append(fragment.fragment_id) if meta is None else updated.append(meta))
    return lance.LanceOperation.Update(removed_fragment_ids=removed, updated_fragments=updated,
                                       new_fragments=fragments)


def _lineage(ds: lance.LanceDataset) -> pa.Table:
    """Every live row's id, row id, row address and last update: what a commit checks and deletes by."""
    return ds.to_table(columns=["id", "_row_last_updated_at_version"], with_row_id=True,
                       with_row_address=True).combine_chunks()


def _addresses(lineage: pa.Table, ids: set[str]) -> list[int]:
    if not ids:
        return []
    hit = pc.is_in(lineage.column("id"), value_set=pa.array(list(ids), pa.string()))
    return lineage.column("_rowaddr").filter(hit).to_pylist()


def _refuse_clashes(name: str, read: Snapshot, head: pa.Table, inserted: set[str],
                    replaced: set[str]) -> None:
    """409 when another writer, since the session began, added an id it inserts or changed (replaced,
    deleted, updated) a row it replaces: committing would store an id twice or lose that write."""
    clash: list[str] = []
    if inserted:
        hit = pc.is_in(head.column("id"), value_set=pa.array(list(inserted), pa.string()))
        clash.extend(head.column("id").filter(hit).to_pylist())
    if replaced:
        before = _lineage(read._ds)
        wanted = pa.array(list(replaced), pa.string())

        def rows(table: pa.Table) -> set[tuple[Any, ...]]:
            kept = table.filter(pc.is_in(table.column("id"), value_set=wanted))
            return set(zip(*(kept.column(c).to_pylist() for c in ("id", "_rowid", "_row_last_updated_at_version")),
                           strict=True))

        clash.extend(sorted({r[0] for r in rows(before) ^ rows(head)}))
    if clash:
        raise Conflict(f"another writer added or changed {len(clash)} of the ids this upload writes to {name!r} "
                       f"since it began (e.g. {sorted(clash)[0]!r}); nothing was committed",
                       table=name, ids=sorted(clash)[:5])
