"""Writes: stream record batches into one Lance commit, then tag it.

A write is atomic: Lance publishes a version only when its manifest lands, so a process killed
mid-write leaves the table at its previous version (the half-written data files are orphans that
``cleanup`` removes later). Nothing is committed when the stream turns out to be empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import lance
import pyarrow as pa

from app.errors import Conflict
from app.store.catalog import Store
from app.store.commits import commit_props, conflict_of, count_props, default_author, lost_race, write_turn
from app.store.evolve import append_with_columns
from app.store.refs import Ref
from app.store.tags import CLONE_TAG_PREFIX, check_tag_name
from app.store.uncommitted import MAX_ROWS_PER_FILE

# default_author, CLONE_TAG_PREFIX and check_tag_name live lower in the store; named here too for the writers
# that import them with the rest of this module's functions
__all__ = ["CLONE_TAG_PREFIX", "MAX_ROWS_PER_FILE", "adds_columns", "append_stream", "check_tag_name", "create_branch",
           "default_author", "merge_columns", "tag_version"]



def append_stream(
    store: Store,
    name: str,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    message: str | None = None,
    author: str | None = None,
    branch: str | None = None,
) -> int | None:
    """Commit every batch as one new version (of ``branch`` when given); None when there was nothing."""
    stream = _non_empty(batches)
    first = next(stream, None)
    if first is None:
        return None

    def chained() -> Iterator[pa.RecordBatch]:
        yield first
        yield from stream

    exists = store.exists(name)
    if exists and adds_columns(store, name, schema.names, branch):  # the rows and their new columns: one Merge
        return append_with_columns(store, name, schema, chained(), branch=branch, props=commit_props(message, author))
    reader = pa.RecordBatchReader.from_batches(schema, chained())
    target = store.fresh(name, branch) if branch else store.table_uri(name)
    try:  # Lance rebases an append onto concurrent commits itself; what it cannot is a 409
        ds = lance.write_dataset(
            reader,
            target,
            schema=schema,
            mode="append" if exists else "create",
            enable_stable_row_ids=True,
            max_rows_per_file=MAX_ROWS_PER_FILE,
            commit_message=message or None,
            transaction_properties={"author": author or default_author()},
            **store.write_options(),
        )
    except (OSError, ValueError) as exc:
        if not conflict_of(exc):
            raise
        raise lost_race(name, "the append", exc) from exc
    store.invalidate(name)
    return ds.version


def adds_columns(store: Store, name: str, names: Iterable[str], branch: str | None = None) -> bool:
    """Whether rows with these columns bring one the table (at the branch's latest) lacks. Columns are
    never dropped, so the cached head answers "no" for sure; a "yes" is checked on a fresh one."""
    names = list(names)
    if all(n in store.latest(name, branch).schema.names for n in names):
        return False
    have = set(store.fresh(name, branch).schema.names)
    return any(n not in have for n in names)


def tag_version(store: Store, name: str, tag: str, version: int | None = None, branch: str | None = None) -> int:
    """Point ``tag`` at a version of a branch (latest when None). Re-tagging the same version is a no-op."""
    check_tag_name(tag)
    target = store.head(name, branch).version if version is None else version
    store.tags(name).create(tag, target, branch)
    return target


def _non_empty(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    return (b for b in batches if b.num_rows)


def merge_columns(store: Store, name: str, table: pa.Table, *, branch: str | None = None,
                  message: str | None = None, author: str | None = None,
                  extra: dict[str, str] | None = None) -> tuple[int | None, dict[str, int]]:
    """Add ``table``'s columns other than ``id`` to the rows with the same id, as one new version
    carrying ``message``, ``author`` and ``extra`` properties (rows it does not name read null): the
    fragments holding those ids are joined with ``table`` and their new column files committed in one
    Lance ``Merge``. Other fragments are left as they are (no file for the new columns, so their rows
    read null and keep their last-updated version). Returns (the version or None when no stored row
    is named, counts: the rows given a value). Held under the table's keyed-write turn."""
    import uuid

    import pyarrow.compute as pc

    valued = table.filter(_any_value(table))
    with write_turn(store, name):
        ds = store.fresh(name, branch)
        try:
            fragments, schema, updated = [], None, 0
            for fragment in ds.get_fragments():
                ids = fragment.to_table(columns=["id"]).column("id")
                named = pc.is_in(ids, value_set=table.column("id"))
                if not pc.any(named).as_py():
                    fragments.append(fragment.metadata)
                    continue
                updated += pc.sum(pc.is_in(ids, value_set=valued.column("id"))).as_py() or 0
                meta, schema = fragment.merge(table, left_on="id")
                fragments.append(meta)
            if schema is None:
                return None, {"inserted": 0, "updated": 0, "deleted": 0}
            counts = {"inserted": 0, "updated": updated, "deleted": 0}
            props = {**commit_props(message, author, extra), **count_props(counts)}
            txn = lance.Transaction(ds.version, lance.LanceOperation.Merge(fragments, schema), str(uuid.uuid4()),
                                    transaction_properties=props)
            committed = lance.LanceDataset.commit(ds, txn, read_version=ds.version, max_retries=0)
        except (ValueError, OSError) as exc:
            if conflict_of(exc):
                raise lost_race(name, "adding columns", exc) from exc
            raise Conflict(f"the columns do not fit table {name!r}: {exc}") from exc
        store.invalidate(name)
        return committed.version, counts


def _any_value(table: pa.Table) -> pa.Array:
    """Rows of ``table`` with a value in at least one column besides ``id``."""
    import pyarrow.compute as pc

    mask = pa.array([False] * table.num_rows, pa.bool_())  # typed: an empty list would be a null array
    for column in table.column_names:
        if column != "id":
            mask = pc.or_(mask, pc.is_valid(table.column(column)))
    return mask


def create_branch(store: Store, name: str, branch: str, ref: Ref) -> dict[str, Any]:
    """A Lance branch of ``name`` forked at ``ref`` (``Store.branches``)."""
    return store.branches(name).create(branch, ref)
