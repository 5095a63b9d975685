"""Per-image metadata joined at ingest from a side file, by a key column.

A key matches a row's id first, then the file's name (``00012.png``), then its name without the
extension, so a CSV of file names joins a tree of files. Keys that match no file and files that
match no key are both reported, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from ingest.tables import SideFileError, read_table


class Metadata:
    """A metadata table indexed by its key column."""

    def __init__(self, table: pa.Table, key: str) -> None:
        if key not in table.column_names:
            raise SideFileError(f"key column {key!r} is not in the metadata file (columns: {table.column_names})")
        self.key = key
        column = table.column(key)
        text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        keys = column.to_pylist() if text else [None if k is None else str(k) for k in column.to_pylist()]
        self.positions: dict[str, int] = dict(zip(keys, range(len(keys)), strict=True)) if not column.null_count else {}
        self.duplicates: list[str] = []
        if len(self.positions) != len(keys):  # nulls or repeated keys: the first row of each key wins
            self.positions = {}
            for i, k in enumerate(keys):
                if k is None:
                    continue
                if k in self.positions:
                    self.duplicates.append(k)
                else:
                    self.positions[k] = i
        value_columns = [c for c in table.column_names if c != key]
        self.fields = [table.schema.field(c) for c in value_columns]
        self.values = table.select(value_columns).combine_chunks()  # taken by row positions, never per row
        self.used_rows: set[int | None] = set()  # the rows (first of their key) some file matched

    @classmethod
    def load(cls, path: str | Path, key: str, text_columns: Sequence[str] = ()) -> Metadata:
        """The side file, its key column (and ``text_columns``) read as text as written."""
        return cls(read_table(path, text_columns=[key, *text_columns]), key)

    def lookup(self, *names: str) -> int | None:
        """Position of the metadata row for a file, trying each name (its id, then its path), the
        file name and its stem; the id alone would miss a CSV of file names when ids are digests."""
        for row_id in names:  # the exact key first: no path parsing in the common case
            pos = self.positions.get(row_id)
            if pos is not None:
                self.used_rows.add(pos)
                return pos
        for row_id in names:
            name = row_id.rpartition("/")[2]
            for candidate in (name, name.rpartition(".")[0] or name):
                pos = self.positions.get(candidate)
                if pos is not None:
                    self.used_rows.add(pos)
                    return pos
        return None

    def match(self, ids: list[str], paths: list[str]) -> list[int | None]:
        """``lookup`` for many files at once (their ids and paths): the exact keys in one pass, the rest one by one."""
        get = self.positions.get
        places = [get(k) for k in ids]
        for i in [i for i, p in enumerate(places) if p is None]:
            places[i] = self.lookup(ids[i], paths[i])
        self.used_rows.update(places)
        return places

    def take(self, column: str, positions: list[int | None]) -> pa.Array:
        """One column's values for rows at ``positions`` (null where a position is None)."""
        return self.values.column(column).take(pa.array(positions, pa.int64())).combine_chunks()

    def unmatched(self) -> list[str]:
        """Keys that matched no file in this run."""
        self.used_rows.discard(None)
        if len(self.used_rows) == len(self.positions):  # every key was used
            return []
        return [k for k, p in self.positions.items() if p not in self.used_rows]
