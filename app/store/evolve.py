"""Writes that add columns: the new columns and the rows that bring them, as one version.

Lance appends only rows of a table's own schema, and its ``add_columns`` commits a version of its
own. The one operation that changes the schema and adds rows together is ``Merge`` ("add columns
or rows"): every fragment of the version read is listed as it was, so old rows keep their data
files, row ids and row versions (and read a column their files lack as null), followed by new
fragments written with the widened schema, to which Lance gives fresh row ids and the new version.
``diff`` therefore shows the new rows as added and the old rows unchanged.

A keyed write that also replaces or deletes rows (an upsert, an overwrite) marks those rows deleted
in their fragments (a deletion vector, as Lance's own delete writes) and writes the replacing rows
as new ones: same ids, new row ids, shown by ``diff`` as changed. ``Merge`` keeps every fragment
and carries no row ids over, so a write that would leave one data file with no rows cannot be
expressed that way: when it replaces or deletes every stored row, the table becomes its rows by
Lance's ``Overwrite`` (one version; it drops the indexes, which the index keeper builds again for
vector columns); otherwise it is refused (409) before anything is committed (once ``optimize`` has
merged the table's data files, the same write usually leaves none of them empty).

Nothing is visible before the one commit: a process killed earlier leaves the table at its previous
version, and the data files already written are unreferenced (Lance's cleanup removes them).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterable

import lance
import pyarrow as pa
from lance.fragment import FragmentMetadata
from lance.schema import LanceSchema

from app.errors import Conflict, Unprocessable
from app.store.catalog import Store
from app.store.column_fit import added_columns, conform, plan_columns
from app.store.commits import RETRIES, write_turn
from app.store.uncommitted import write_uncommitted

Mode = str  # "upsert" | "insert" | "update"


def widened_schema(name: str, ds: lance.LanceDataset, target: pa.Schema) -> LanceSchema:
    """The Lance schema of ``target``, which must start with ``ds``'s columns as they are.

    New fields take the next field ids; the existing ones must keep theirs, which holds when the
    table's field ids run 0, 1, 2, ... in column order (every table Lightbox makes: it never drops a
    column). Anything else is refused rather than written under the wrong ids."""
    base = pa.schema(list(target)[: len(ds.schema)], metadata=target.metadata)
    if base.names != ds.schema.names or LanceSchema.from_pyarrow(base) != ds.lance_schema:
        raise Conflict(f"the columns of table {name!r} changed while this write was prepared; nothing was "
                       "written, send it again", table=name)
    try:
        return LanceSchema.from_pyarrow(target)
    except ValueError as exc:  # a type Lance cannot store (a union, say)
        added = {n: str(target.field(n).type) for n in added_columns(ds.schema, target)}
        raise Unprocessable(f"the new column(s) {added} cannot be stored in a Lance table ({exc}); nothing was written",
                            columns=list(added)) from exc


def _write(ds: lance.LanceDataset, schema: pa.Schema, batches: Iterable[pa.RecordBatch],
           storage_options: dict[str, str] | None) -> list[FragmentMetadata]:
    """Uncommitted fragments of ``batches``, in the widened ``schema``, beside ``ds``'s data."""
    return write_uncommitted(ds, schema, batches, storage_options=storage_options,
                             data_storage_version=ds.data_storage_version, new_columns=True)


def append_with_columns(store: Store, name: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], *,
                        branch: str | None, props: dict[str, str]) -> int | None:
    """Rows of ``schema`` that bring new columns, streamed into one version (None when there were no rows)."""
    ds = store.fresh(name, branch)
    target = plan_columns(name, ds.schema, schema)
    widened_schema(name, ds, target)  # refuse before writing anything
    if target != schema:  # the table's columns first, in its types
        batches = (b for part in batches for b in conform(name, pa.Table.from_batches([part]), target).to_batches())
    return commit_rows(store, name, target, _write(ds, target, batches, store.storage_options), branch=branch,
                       props=props)


def commit_rows(store: Store, name: str, target: pa.Schema, fragments: list[FragmentMetadata], *,
                branch: str | None = None, props: dict[str, str]) -> int | None:
    """Publish new rows written in ``target``'s schema (the table's columns, then new ones) as one version
    on the branch's latest, whatever was appended meanwhile; None when there are none."""
    if not fragments:
        return None
    counts = {"inserted": sum(f.physical_rows for f in fragments), "updated": 0, "deleted": 0}
    with write_turn(store, name):
        for attempt in range(RETRIES):
            head = store.fresh(name, branch)
            lance_schema = widened_schema(name, head, target)  # another writer may have changed the columns
            kept = [f.metadata for f in head.get_fragments()]
            operation = merge_operation(kept + fragments, lance_schema)
            committed = try_commit(head, operation, version_props(props, counts, target, head.schema))
            if committed is not None:
                store.invalidate(name)
                return committed
            pause(attempt)
    raise Conflict(f"table {name!r} kept changing; nothing was written", table=name)


def keyed_with_columns(store: Store, name: str, data: pa.Table, *, mode: Mode, branch: str | None,
                       delete_ids: list[str] | None, props: dict[str, str]) -> tuple[int | None, dict[str, int]]:
    """A keyed write (``mode`` as ``keyed_write``'s) whose rows (one per id) bring new columns, as one
    version; their values are fitted to the table's columns first (a conflict writes nothing)."""
    with write_turn(store, name):
        for attempt in range(RETRIES):
            ds = store.fresh(name, branch)
            target = plan_columns(name, ds.schema, data.schema)
            lance_schema = widened_schema(name, ds, target)
            data = conform(name, data, target)
            where = row_addresses(ds)
            rows, replaced = _split(data, where, mode)
            doomed = sorted((set(delete_ids or []) - set(data.column("id").to_pylist())) & where.keys())
            counts = {"inserted": rows.num_rows - len(replaced), "updated": len(replaced), "deleted": len(doomed)}
            if not rows.num_rows and not doomed:
                return None, counts
            if where and len(replaced) + len(doomed) == len(where):  # every stored row goes: the table is replaced
                fragments = _write(ds, target, rows.to_batches(), store.storage_options)
                operation: lance.LanceOperation.BaseOperation = lance.LanceOperation.Overwrite(target, fragments)
            else:
                kept = delete_at(name, ds, [where[i] for i in replaced + doomed])
                fragments = _write(ds, target, rows.to_batches(), store.storage_options)
                operation = merge_operation(kept + fragments, lance_schema)
            committed = try_commit(ds, operation, version_props(props, counts, target, ds.schema))
            if committed is not None:
                store.invalidate(name)
                return committed, counts
            pause(attempt)
    raise Conflict(f"table {name!r} kept changing; nothing was written", table=name)


def _split(data: pa.Table, where: dict[str, int], mode: Mode) -> tuple[pa.Table, list[str]]:
    """The rows to write and the ids among them that replace stored rows: ``insert`` writes only new
    ids, ``update`` only stored ones, ``upsert`` both."""
    given = data.column("id").to_pylist()
    known = [i in where for i in given]
    if mode == "insert":
        return data.filter(pa.array([not k for k in known], pa.bool_())), []
    if mode == "update":
        data = data.filter(pa.array(known, pa.bool_()))
    return data, [i for i, k in zip(given, known, strict=True) if k]


def row_addresses(ds: lance.LanceDataset) -> dict[str, int]:
    """Each live row's id -> its row address (fragment id in the high 32 bits, offset in the low)."""
    table = ds.to_table(columns=["id"], with_row_address=True)
    return dict(zip(table.column("id").to_pylist(), table.column("_rowaddr").to_pylist(), strict=True))


def delete_at(name: str, ds: lance.LanceDataset, addresses: list[int]) -> list[FragmentMetadata]:
    """Every fragment of ``ds``, the rows at ``addresses`` marked deleted (nothing is committed)."""
    offsets: dict[int, list[int]] = {}
    for address in addresses:
        offsets.setdefault(address >> 32, []).append(address & 0xFFFFFFFF)
    out = []
    for fragment in ds.get_fragments():
        doomed = offsets.get(fragment.fragment_id)
        if not doomed:
            out.append(fragment.metadata)
            continue
        meta = fragment.delete_rows(doomed)
        if meta is None:
            raise Conflict(
                f"this write adds column(s) to table {name!r} and also replaces or deletes every row of one of its "
                f"data files ({len(doomed)} rows) while keeping others, which Lance cannot do in one version; "
                "nothing was written. Compact the table first (`lightbox optimize`, POST .../optimize: it merges "
                "the data files), or add the columns with rows whose ids are new, then send this write",
                table=name)
        out.append(meta)
    return out


def version_props(props: dict[str, str], counts: dict[str, int], target: pa.Schema, base: pa.Schema) -> dict[str, str]:
    """The version's properties: the caller's, the operation named for the rows it wrote (Lance's own name,
    ``Merge``, would read "add columns"), its counts and the columns it added."""
    done = [k for k in ("inserted", "updated", "deleted") if counts.get(k)]
    op = {("inserted",): "insert", ("updated",): "update", ("deleted",): "delete",
          ("inserted", "updated"): "upsert"}.get(tuple(done), "update")
    return {"lightbox:op": op, **props, **{f"lightbox:{k}": str(v) for k, v in counts.items()},
            "lightbox:added_columns": json.dumps(added_columns(base, target))}


def merge_operation(fragments: list[FragmentMetadata], schema: LanceSchema) -> lance.LanceOperation.Merge:
    """Lance's "add columns or rows". Every column it adds is nullable (``plan_columns``), which lets an
    append that read the table before it commit after it (its rows read the new columns as null)
    instead of failing on a conflict."""
    return lance.LanceOperation.Merge(fragments, schema, preserves_nullability=True)


def try_commit(ds: lance.LanceDataset, operation: lance.LanceOperation.BaseOperation,
               props: dict[str, str]) -> int | None:
    """Commit one operation made at ``ds``'s version; None when another commit came first (try again)."""
    txn = lance.Transaction(ds.version, operation, str(uuid.uuid4()), transaction_properties=props)
    try:
        return lance.LanceDataset.commit(ds, txn, read_version=ds.version, max_retries=0).version
    except (OSError, ValueError, RuntimeError) as exc:
        if "conflict" in str(exc).lower() or "preempted" in str(exc).lower():
            return None
        raise


def pause(attempt: int) -> None:
    time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))

