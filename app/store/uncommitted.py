"""Uncommitted fragments: data files written beside a table that no version names yet.

Both ways of publishing rows that the engine's plain append cannot express build on this: many
workers' fragments committed as one version (``app.store.fragments``), and rows that bring new columns
committed with them as one ``Merge`` (``app.store.evolve``). It imports nothing else of the store, so
either may import it.
"""

from __future__ import annotations

from collections.abc import Iterable

import lance
import pyarrow as pa
from lance.fragment import FragmentMetadata

__all__ = ["MAX_ROWS_PER_FILE", "write_uncommitted"]

# The writer keeps per-file state that grows with rows; bounding rows per file keeps ingest RSS flat.
MAX_ROWS_PER_FILE = 65_536


def write_uncommitted(dest: str | lance.LanceDataset, schema: pa.Schema, batches: Iterable[pa.RecordBatch], *,
                      storage_options: dict[str, str] | None, data_storage_version: str,
                      new_columns: bool = False) -> list[FragmentMetadata]:
    """Fragments of ``batches`` beside the data of ``dest`` (a table's URI, or a handle: a branch's is
    written beside the branch's data), not yet part of any version.

    ``new_columns``: ``schema`` is the table's columns and then new ones, published by
    ``evolve.commit_rows``; the fields are numbered afresh, as ``evolve.widened_schema`` numbers them
    ("append" would check the rows against the table's current, narrower, schema)."""
    stream = (b for b in batches if b.num_rows)
    first = next(stream, None)
    if first is None:
        return []

    def chained() -> Iterable[pa.RecordBatch]:
        yield first
        yield from stream

    reader = pa.RecordBatchReader.from_batches(schema, chained())
    return lance.fragment.write_fragments(
        reader, dest, schema=schema, mode="overwrite" if new_columns else "append",
        max_rows_per_file=MAX_ROWS_PER_FILE, data_storage_version=data_storage_version, enable_stable_row_ids=True,
        storage_options=storage_options)
