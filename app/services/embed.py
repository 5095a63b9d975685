"""Add or refresh a vector column on an existing table, as one new version.

Rows are read in batches (only ``id`` and the source column), embedded, and streamed into Lance:
``merge`` adds a new column, a partial ``merge_insert`` on ``id`` refreshes an existing one. A row
whose image cannot be decoded gets a null vector (vector search skips nulls) and is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from app.errors import Conflict
from app.services.diff import diff
from app.store import Ref, Store
from app.store.notes import write_note
from app.store.schema import (
    check_column_name,
    check_source,
    default_column,
    is_blob,
    vector_array,
    vector_field,
    vector_meta,
)
from app.store.writes import default_author
from embeddings.base import Embedder
from embeddings.batch import embed_values


def embed_table(store: Store, name: str, embedder: Embedder, *, source: str = "image", column: str | None = None,
                batch_size: int = 256, message: str | None = None, author: str | None = None) -> dict[str, Any]:
    """Compute ``column`` from ``source`` for every row; returns the new version and counts.

    The version is logged as ``embed`` with its author, message and the counts ``diff`` gives
    against its parent (a version note: Lance's ``merge`` records none)."""
    ds = store.fresh(name)
    schema = ds.schema
    check_source(embedder, schema, source)
    column = check_column_name(column) if column is not None else default_column(source, embedder.name)
    field = vector_field(column, embedder.dim, model=embedder.name, source=source, metric=embedder.metric)
    exists = column in schema.names
    if exists:
        recorded = vector_meta(schema.field(column))
        if recorded.get("model") != embedder.name or schema.field(column).type != field.type:
            raise Conflict(f"column {column!r} was built with {recorded.get('model') or 'another model'}; "
                           "give a new column name", column=column)
    out_schema = pa.schema([pa.field("id", pa.string(), nullable=False), field])
    stats = {"rows": 0, "failed": 0}
    source_ds = ds.checkout_version(ds.version)  # a second handle: the writer's is busy while it merges
    reader = pa.RecordBatchReader.from_batches(
        out_schema, _vectors(source_ds, embedder, source, field, out_schema, batch_size, stats))
    parent = ds.version
    if exists:
        ds.merge_insert("id").when_matched_update_all().execute(reader)
    elif not ds.count_rows():  # nothing to join the vectors to: the column alone (later uploads fill it)
        ds.add_columns(field)
    else:
        ds.merge(reader, left_on="id")
    store.invalidate(name)
    if ds.version != parent:
        change = diff(store.snapshot(name, Ref(version=parent)), store.snapshot(name, Ref(version=ds.version)))
        write_note(store.table_uri(name), ds, None, storage_options=store.storage_options, props={
            "lightbox:op": "embed", "author": author or default_author(),
            "__lance_commit_message": message or f"embed {source} into {column!r} with {embedder.name}",
            "lightbox:inserted": str(len(change.added)), "lightbox:deleted": str(len(change.removed)),
            "lightbox:updated": str(len(change.changed))})
    return {"version": ds.version, "column": column, "model": embedder.name, "dim": embedder.dim,
            "rows": stats["rows"], "failed": stats["failed"]}


def _vectors(ds: Any, embedder: Embedder, source: str, field: pa.Field, schema: pa.Schema, batch_size: int,
             stats: dict[str, int]) -> Iterator[pa.RecordBatch]:
    is_image = is_blob(ds.schema.field(source))
    scanner = ds.scanner(columns=["id", source], batch_size=batch_size, blob_handling="all_binary")
    for batch in scanner.to_batches():
        values = batch.column(source).to_pylist()
        vectors = embed_values(embedder, values, is_image)
        stats["rows"] += batch.num_rows
        stats["failed"] += sum(v is None for v in vectors)
        yield pa.record_batch([batch.column("id"), vector_array(vectors, field)], schema=schema)
