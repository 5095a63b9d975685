"""Per-image metadata joined at ingest from a side file, by a key column.

A key matches a row's id first, then the file's name (``00012.png``), then its name without the
extension, so a CSV of file names joins a tree of files. Keys that match no file and files that
match no key are both reported, never silently dropped.

A batch's exact matches are found in one pass (``map`` over a dict of the keys), and its columns are
taken by position, so joining a CSV costs no Python code per row.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.tables import SideFileError, read_table


class Metadata:
    """A metadata table indexed by its key column."""

    def __init__(self, table: pa.Table, key: str) -> None:
        if key not in table.column_names:
            raise SideFileError(f"key column {key!r} is not in the metadata file (columns: {table.column_names})")
        self.key = key
        column = table.column(key).combine_chunks()
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = pc.cast(column, pa.string())
        self.keys = column
        self.duplicates: list[str] = []
        # unique keys (the common side file) are looked up by Arrow, and the dict built only if a file misses
        self.unique = not column.null_count and len(pc.unique(column)) == len(column)
        self._positions: dict[str, int] | None = None
        if not self.unique:  # nulls or repeated keys: the first row of each key wins
            self._positions = {}
            for i, k in enumerate(column.to_pylist()):
                if k is None:
                    continue
                if k in self._positions:
                    self.duplicates.append(k)
                else:
                    self._positions[k] = i
        value_columns = [c for c in table.column_names if c != key]
        self.fields = [table.schema.field(c) for c in value_columns]
        self.values = table.select(value_columns).combine_chunks()  # taken by row positions, never per row
        self.used_rows = np.zeros(len(column), np.bool_)  # the rows (first of their key) some file matched

    @property
    def positions(self) -> dict[str, int]:
        """Key -> its row (the first, for a repeated key)."""
        if self._positions is None:
            self._positions = dict(zip(self.keys.to_pylist(), range(len(self.keys)), strict=True))
        return self._positions

    @classmethod
    def load(cls, path: str | Path, key: str, text_columns: Sequence[str] = ()) -> Metadata:
        """The side file, its key column (and ``text_columns``) read as text as written."""
        return cls(read_table(path, text_columns=[key, *text_columns]), key)

    def fresh(self) -> Metadata:
        """This side file with nothing used yet (a shard of a run reports what it matched)."""
        other = copy.copy(self)
        other.used_rows = np.zeros_like(self.used_rows)
        return other

    def lookup(self, *names: str) -> int | None:
        """Position of the metadata row for a file, trying each name (its id, then its path), the
        file name and its stem; the id alone would miss a CSV of file names when ids are digests."""
        for row_id in names:  # the exact key first: no path parsing in the common case
            pos = self.positions.get(row_id)
            if pos is not None:
                self.used_rows[pos] = True
                return pos
        for row_id in names:
            name = row_id.rpartition("/")[2]
            for candidate in (name, name.rpartition(".")[0] or name):
                pos = self.positions.get(candidate)
                if pos is not None:
                    self.used_rows[pos] = True
                    return pos
        return None

    def match(self, ids: Sequence[str], paths: Sequence[str]) -> pa.Array:
        """``lookup`` for many files at once (their ids and paths): the metadata row of each, null where none
        matches. The exact keys in one pass over a dict built once per run (``pyarrow.compute.index_in``
        would hash the whole side file again for every batch), the rest one by one."""
        places = list(map(self.positions.get, ids))
        if None in places:
            for i in [i for i, p in enumerate(places) if p is None]:
                places[i] = self.lookup(ids[i], paths[i])
        found = pa.array(places, pa.int64())
        self.used_rows[found.drop_null().to_numpy()] = True
        return found

    def match_column(self, ids: pa.Array) -> pa.Array:
        """``match`` for a whole column of ids at once (a folder's listing): exact keys by one vectorised lookup
        (the keys hashed once), the ids that miss looked up by name and stem one by one."""
        if self.unique:
            found = pc.index_in(ids, value_set=self.keys)
        else:
            keys = pa.array(list(self.positions), pa.string())
            found = pc.take(pa.array(list(self.positions.values()), pa.int64()), pc.index_in(ids, value_set=keys))
        if found.null_count:
            places = found.to_pylist()
            for i in [i for i, p in enumerate(places) if p is None]:
                places[i] = self.lookup(ids[i].as_py())
            found = pa.array(places, pa.int64())
        self.used_rows[found.drop_null().to_numpy()] = True
        return found

    def take(self, column: str, places: pa.Array) -> pa.Array:
        """One column's values for the rows at ``places`` (null where a place is null)."""
        return self.values.column(column).take(places).combine_chunks()

    def unmatched(self) -> list[str]:
        """Keys that matched no file in this run."""
        if self.used_rows.all():
            return []
        if self.unique:
            return self.keys.filter(pa.array(~self.used_rows)).to_pylist()
        return [k for k, p in self.positions.items() if not self.used_rows[p]]
