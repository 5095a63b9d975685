"""Computed columns (an embedding's vectors): added to every row, or refreshed, as one version.

The values are computed before the commit, from a version read earlier (per fragment, by this process
or by Ray workers), so the commit checks, under the table's write turn, that the table is still at that
version: a write that landed meanwhile changed rows the values were computed from, and the answer is a
409 saying to run it again, never a version mixing the two.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from app.errors import Conflict
from app.store.catalog import Store
from app.store.commits import count_props, write_turn
from app.store.compare import unchanged_rows
from app.store.fragments import commit_merge
from app.store.notes import write_note

__all__ = ["add_empty_column", "commit_new_column", "refresh_column"]


def commit_new_column(store: Store, name: str, read_version: int, fragments: list[str], schema: Any,
                      props: dict[str, str]) -> int:
    """Publish per-fragment files of a new column (``fragments.merge_into_fragment``'s output, every
    fragment of ``read_version``) as one ``Merge`` version carrying ``props``."""
    with write_turn(store, name):
        return commit_merge(store, name, read_version, fragments, schema, props)


def refresh_column(store: Store, name: str, read_version: int, table: pa.Table, props: dict[str, str]) -> int:
    """Replace an existing column's values (``table``: ``id`` and the column) on every row it names, as
    one version; the log counts the rows whose value changed, as ``diff`` does."""
    with write_turn(store, name):
        head = store.fresh(name)
        _check_unmoved(name, head.version, read_version)
        changed = table.num_rows - int(unchanged_rows(head, table).sum())
        head.merge_insert("id").when_matched_update_all().execute(table)
        store.invalidate(name)
        counts = {"inserted": 0, "updated": changed, "deleted": 0}
        write_note(store.table_uri(name), head, None, {**props, **count_props(counts)}, store.storage_options)
        return head.version


def add_empty_column(store: Store, name: str, read_version: int, field: pa.Field, props: dict[str, str]) -> int:
    """A new column on a table with no rows to give it values (later writes fill it), as one version."""
    with write_turn(store, name):
        head = store.fresh(name)
        _check_unmoved(name, head.version, read_version)
        head.add_columns(field)
        store.invalidate(name)
        write_note(store.table_uri(name), head, None, {**props, **count_props({"inserted": 0, "updated": 0,
                                                                             "deleted": 0})}, store.storage_options)
        return head.version


def _check_unmoved(name: str, version: int, read_version: int) -> None:
    if version != read_version:
        raise Conflict(f"table {name!r} changed while the column was computed; run it again", table=name)
