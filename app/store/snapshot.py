"""One resolved point of a table, and every read the services make of it.

A ``Snapshot`` holds a shared, read-only dataset handle (``app.store.handles``) pinned at one version of
one branch. Services read through its methods (schema, count, scan, take, lineage, indexes, fragment
sizes) and never touch the handle: the engine's API stays inside ``app.store``, and the handle, which
many request threads read at once, is never asked to do what would move or borrow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import lance
import numpy as np
import pyarrow as pa

from app.store.compare import unchanged_rows
from app.store.keywords import Keywords, search_keywords, text_indexes

__all__ = ["LINEAGE", "Snapshot", "SnapshotKey", "stamp_of"]

SnapshotKey = tuple[str, str | None, int, datetime]
# Each row's last update and stable row id: what tells two snapshots' unchanged rows apart (``diff``)
LINEAGE = ["id", "_row_last_updated_at_version"]


@dataclass(frozen=True)
class Snapshot:
    """One resolved point of a table: an immutable dataset handle and where it sits."""

    name: str
    _ds: lance.LanceDataset = field(repr=False)
    version: int
    branch: str | None
    stamp: datetime  # the manifest's commit time: version 1 of a re-created table is another version 1

    @property
    def key(self) -> SnapshotKey:
        """What caches of per-version facts (id maps, ANN indexes, filter results) are keyed by."""
        return (self.name, self.branch, self.version, self.stamp)

    # -- what it holds -----------------------------------------------------------------------
    @cached_property
    def schema(self) -> pa.Schema:
        """The version's schema (pylance builds it anew at each call: a search asks for it three times)."""
        return self._ds.schema

    def count(self, filter: str | None = None) -> int:
        """Rows (that ``filter``, a checked predicate, keeps); without a filter, from the manifest."""
        return self._ds.count_rows(filter)

    def unchanged_rows(self, source: pa.Table) -> np.ndarray:
        """For each row of ``source``, True when this snapshot stores its id with equal values
        (``compare.unchanged_rows``): writing it would change nothing."""
        return unchanged_rows(self._ds, source)

    def explain(self, filter: str) -> None:
        """Plan a scan under ``filter`` without running it: Lance's planner refuses what cannot run
        (``label = 'x'`` on an int column) with the ``ValueError`` ``app.filters`` reports."""
        self._ds.scanner(filter=filter, columns=[]).explain_plan()

    # -- rows ----------------------------------------------------------------------------------
    def scan(self, columns: list[str] | None = None, *, filter: str | None = None, limit: int | None = None,
             offset: int | None = None, order_by: list[Any] | None = None, with_row_id: bool = False,
             batch_size: int | None = None, blobs_as_bytes: bool = False) -> pa.RecordBatchReader:
        """A stream of rows in table order (``order_by``: Lance column orderings); blob columns come
        as their bytes when ``blobs_as_bytes``, else as Lance's descriptors."""
        return self._scanner(columns, filter, limit, offset, order_by, with_row_id, batch_size,
                             blobs_as_bytes).to_reader()

    def read(self, columns: list[str] | None = None, *, filter: str | None = None, limit: int | None = None,
             offset: int | None = None, order_by: list[Any] | None = None, with_row_id: bool = False,
             blobs_as_bytes: bool = False) -> pa.Table:
        """``scan``, whole, as one table."""
        return self._scanner(columns, filter, limit, offset, order_by, with_row_id, None,
                             blobs_as_bytes).to_table()

    def _scanner(self, columns: list[str] | None, filter: str | None, limit: int | None, offset: int | None,
                 order_by: list[Any] | None, with_row_id: bool, batch_size: int | None,
                 blobs_as_bytes: bool) -> Any:
        return self._ds.scanner(columns=columns, filter=filter, limit=limit, offset=offset or None,
                                order_by=order_by or None, with_row_id=with_row_id, batch_size=batch_size,
                                blob_handling="all_binary" if blobs_as_bytes else None, scan_in_order=True)

    def take(self, row_ids: Sequence[int], columns: list[str]) -> pa.Table:
        """The rows with these stable row ids, in that order (repeats kept); blob columns are not
        read here (``RowReader.blobs`` reads their bytes)."""
        if not row_ids:
            return pa.schema([self.schema.field(c) for c in columns]).empty_table()
        return self._ds._take_rows(list(row_ids), columns=columns)

    def lineage(self) -> pa.Table:
        """Each row's id, last-updated version and stable row id (``_rowid``), for ``diff``."""
        return self._ds.to_table(columns=LINEAGE, with_row_id=True).combine_chunks()

    # -- its table -----------------------------------------------------------------------------
    def branches(self) -> dict[str, dict[str, Any]]:
        """The table's branches as stored now (refs are not versioned): name -> parent branch and version."""
        return self._ds.branches.list()

    def indexes(self, *, coverage: bool = True) -> list[dict[str, Any]]:
        """The version's indexes: name, type, columns, and (``coverage``) how many rows each covers and
        does not (Lance describes each index for that: left out where only names are wanted)."""
        listed = [{"name": i["name"], "type": i["type"], "columns": list(i["fields"])} for i in self._ds.list_indices()]
        if not coverage:
            return listed
        stats = {d.name: d for d in self._ds.describe_indices()}
        total = self.count()
        for index in listed:
            indexed = getattr(stats.get(index["name"]), "num_rows_indexed", None)
            index.update(num_indexed_rows=indexed, num_unindexed_rows=max(0, total - (indexed or 0)))
        return listed

    def text_indexes(self) -> dict[str, str]:
        """``{column: index name}`` of the version's full-text indexes."""
        return text_indexes(self._ds)

    def keyword_search(self, query: Keywords, columns: list[str], *, limit: int, offset: int = 0,
                       predicate: str | None = None) -> pa.Table:
        """The version's best rows for a keyword query by BM25 (``app.store.keywords``): ``columns``,
        ``_rowid`` and ``_score``; ``predicate`` (checked) is applied first."""
        return search_keywords(self._ds, query, columns=columns, limit=limit, offset=offset, predicate=predicate)

    def fragments(self) -> list[tuple[int, int]]:
        """Each data fragment's live rows and bytes on disk, in table order."""
        return [(fragment.count_rows(), sum(int(getattr(f, "file_size_bytes", 0) or 0) for f in fragment.data_files()))
                for fragment in self._ds.get_fragments()]


def stamp_of(ds: lance.LanceDataset) -> datetime:
    """When the handle's version was committed, from its loaded manifest (no I/O)."""
    return ds.get_version()["timestamp"]
