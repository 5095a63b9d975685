"""Keyed writes: upsert, insert-if-absent, patch and delete by id, each one version with its message.

Every keyed write is a Lance ``merge_insert`` on ``id`` run uncommitted and then committed with
the version's message and author in its transaction properties (``delete`` and ``merge_insert``
take no message of their own). The merge joins on ``id`` by hash, not through a scalar index
(``use_index(False)``): with the table's unenforced primary key that is the engine path that keeps
ids unique under concurrent writers. A commit that loses a race is retried on the new latest.
Upserts and updates first drop the rows whose stored values already equal the ones written
(``app.store.compare``): rewriting them would change nothing, yet Lance would count them updated.

The uncommitted route loses one thing on its way through Python: the set of keys a merge
inserted, which is what lets Lance see two concurrent inserts of the same new id as a conflict
(it rebases them onto each other instead, and the id is stored twice). So keyed writes to one
table take its write turn (``app.store.commits.write_turn``). An HTTP upload holds the same turn
from its id check to its commit, so two uploads of one new id cannot both add it.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any, Literal

import lance
import pyarrow as pa

from app.errors import Conflict
from app.filters import InvalidFilter, is_filter_error, lance_reason
from app.store.catalog import Store
from app.store.commits import RETRIES, commit_props, conflict_of, count_props, lost_race, write_turn
from app.store.compare import unchanged_rows
from app.store.evolve import keyed_with_columns
from app.store.writes import adds_columns

__all__ = ["Mode", "delete_where", "id_literal", "ids_predicate", "keyed_write", "write_turn"]

Mode = Literal["upsert", "insert", "update", "delete"]


def id_literal(value: str) -> str:
    """A SQL string literal for an id (quotes doubled): values built by code, never pasted."""
    return "'" + value.replace("'", "''") + "'"


def ids_predicate(ids: list[str]) -> str:
    return f"id IN ({', '.join(id_literal(i) for i in ids)})" if ids else "false"


def delete_where(store: Store, name: str, predicate: str, *, branch: str | None = None,
                 message: str | None = None, author: str | None = None) -> tuple[int | None, dict[str, int]]:
    """Delete the rows a (validated) filter matches, as one version carrying its message."""
    props = commit_props(message, author)

    def build(ds: lance.LanceDataset) -> Any:
        return ds.merge_insert("id").use_index(False).when_not_matched_by_source_delete(predicate)

    return _commit_with_retry(store, name, branch, build, pa.table({"id": pa.array([], pa.string())}), props)


def keyed_write(store: Store, name: str, data: pa.Table | None, *, mode: Mode, branch: str | None = None,
                delete_ids: list[str] | None = None, message: str | None = None,
                author: str | None = None, extra: dict[str, str] | None = None) -> tuple[int | None, dict[str, int]]:
    """Apply one keyed write; returns (new version or None when nothing changed, row counts).

    Rows whose stored values already equal the ones written are left alone (counted as
    ``unchanged``, not as updated), so the version's counts are the rows ``diff`` sees change.
    ``extra`` transaction properties are kept with the version (a merge names what it merged)."""
    props = commit_props(message, author, extra)
    if data is not None and adds_columns(store, name, data.column_names, branch):  # a Merge, not a merge_insert
        return keyed_with_columns(store, name, data, mode=mode, branch=branch, delete_ids=delete_ids, props=props)
    source = data if data is not None else pa.table({"id": pa.array([], pa.string())})

    def build(ds: lance.LanceDataset) -> Any:
        merge = ds.merge_insert("id").use_index(False)
        if mode in ("upsert", "update"):
            merge = merge.when_matched_update_all()
        if mode in ("upsert", "insert"):
            merge = merge.when_not_matched_insert_all()
        if delete_ids:
            merge = merge.when_not_matched_by_source_delete(ids_predicate(delete_ids))
        return merge

    return _commit_with_retry(store, name, branch, build, source, props, skip_unchanged=mode in ("upsert", "update"))


def _commit_with_retry(store: Store, name: str, branch: str | None, build: Callable[[Any], Any],
                       source: pa.Table, props: dict[str, str],
                       skip_unchanged: bool = False) -> tuple[int | None, dict[str, int]]:
    with write_turn(store, name):
        return _commit_turn(store, name, branch, build, source, props, skip_unchanged)


def _commit_turn(store: Store, name: str, branch: str | None, build: Callable[[Any], Any],
                 source: pa.Table, props: dict[str, str],
                 skip_unchanged: bool) -> tuple[int | None, dict[str, int]]:
    for attempt in range(RETRIES):
        ds = store.fresh(name, branch)
        rows, unchanged = _changing(ds, source) if skip_unchanged else (source, 0)
        try:
            txn, stats = build(ds).execute_uncommitted(rows)
        except (ValueError, OSError) as exc:
            if is_filter_error(exc):  # a predicate that cannot run is the client's mistake, not a conflict
                raise InvalidFilter(f"the filter cannot run on this table: {lance_reason(exc)}") from exc
            raise Conflict(f"the write does not fit table {name!r}: {exc}") from exc
        counts = {k.removeprefix("num_").removesuffix("_rows"): int(v) for k, v in stats.items()}
        if not any(counts.values()):
            return None, {**counts, "unchanged": unchanged}
        recorded = {**props, **count_props(counts)}  # shown in the log
        try:
            committed = lance.LanceDataset.commit(ds, dataclasses.replace(txn, transaction_properties=recorded),
                                                  read_version=ds.version, max_retries=0)
        except (OSError, ValueError, RuntimeError) as exc:
            if not conflict_of(exc):
                raise
            if attempt + 1 == RETRIES:
                raise lost_race(name, "the write", exc) from exc
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
            continue
        store.invalidate(name)
        return committed.version, {**counts, "unchanged": unchanged}  # this write's version: "latest" may be later
    raise AssertionError("unreachable")


def _changing(ds: lance.LanceDataset, source: pa.Table) -> tuple[pa.Table, int]:
    """The rows of ``source`` that would change what ``ds`` stores, and how many would not."""
    same = unchanged_rows(ds, source)
    kept = int(same.sum())
    return (source.filter(pa.array(~same)) if kept else source), kept
