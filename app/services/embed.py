"""Add or refresh a vector column on an existing table, as one new version.

The vectors are computed a fragment at a time from the version read (only ``id`` and the source column
are read): a new column's values are written beside each fragment's data, then every fragment's files
are published as one ``Merge``; an existing column (same model) is refreshed by one keyed update of
every row. The local engine runs ``embed_fragment`` here, one fragment after another; the Ray engine
(``ingest.ray_engine``) runs the very same function in its workers and commits with ``finish_embed``.
The commit happens under the table's write turn and only if no write landed since the version read
(else a 409: run it again). A row whose image cannot be decoded gets a null vector (vector search skips
nulls) and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from app.errors import BadRequest, Conflict
from app.store import Store
from app.store.columns import add_empty_column, commit_new_column, refresh_column
from app.store.commits import commit_props
from app.store.fragments import fragment_ids, merge_into_fragment, read_fragment
from app.store.schema import (
    check_column_name,
    check_source,
    default_column,
    vector_array,
    vector_field,
    vector_meta,
)
from embeddings.base import Embedder
from embeddings.batch import embed_values
from embeddings.registry import Registry, UnknownModel


@dataclass(frozen=True)
class EmbedJob:
    """What computing one fragment's vectors needs (it travels to Ray workers, so it is plain data)."""

    table: str
    uri: str
    storage_options: dict[str, str] | None
    version: int  # the version read: the commit is made on it
    model: str
    source: str
    field: pa.Field
    new_column: bool  # written beside each fragment; else returned as an ``id, vector`` table
    batch_size: int = 256

    @property
    def column(self) -> str:
        return self.field.name


def plan_embed(store: Store, name: str, embedder: Embedder, *, source: str = "image", column: str | None = None,
               batch_size: int = 256) -> tuple[EmbedJob, list[int]]:
    """Check the request against the table's latest version; the job and the fragments to run it on."""
    head = store.head(name, fresh=True)
    schema = head.schema
    check_source(embedder, schema, source)
    column = check_column_name(column) if column is not None else default_column(source, embedder.name)
    field = vector_field(column, embedder.dim, model=embedder.name, source=source, metric=embedder.metric)
    exists = column in schema.names
    if exists:
        recorded = vector_meta(schema.field(column))
        if recorded.get("model") != embedder.name or schema.field(column).type != field.type:
            raise Conflict(f"column {column!r} was built with {recorded.get('model') or 'another model'}; "
                           "give a new column name", column=column)
    job = EmbedJob(table=name, uri=store.table_uri(name), storage_options=store.storage_options,
                   version=head.version, model=embedder.name, source=source, field=field, new_column=not exists,
                   batch_size=batch_size)
    return job, fragment_ids(store, name, head.version)


def embed_fragment(job: EmbedJob, fragment_id: int, embedder: Embedder) -> dict[str, Any]:
    """One fragment's vectors: written beside the fragment (a new column: its metadata and schema) or
    returned as an ``id, vector`` table (a refresh); with the rows read and those that failed."""
    schema = pa.schema([pa.field("id", pa.string(), nullable=False), job.field])
    ids: list[pa.Array] = []
    vectors: list[pa.Array] = []
    stats = {"rows": 0, "failed": 0}
    for batch in read_fragment(job.uri, job.version, fragment_id, ["id", job.source], job.storage_options,
                               job.batch_size):
        kind = batch.schema.field(job.source).type  # blobs arrive as bytes, text as strings
        values = embed_values(embedder, batch.column(job.source).to_pylist(),
                              pa.types.is_binary(kind) or pa.types.is_large_binary(kind))
        stats["rows"] += batch.num_rows
        stats["failed"] += sum(v is None for v in values)
        ids.append(batch.column("id"))
        vectors.append(vector_array(values, job.field))
    table = pa.Table.from_arrays([pa.chunked_array(ids, pa.string()), pa.chunked_array(vectors, job.field.type)],
                                 schema=schema)
    if not job.new_column:
        return {**stats, "table": table}
    fragment, lance_schema = merge_into_fragment(job.uri, job.version, fragment_id, table, job.storage_options)
    return {**stats, "fragment": fragment, "schema": lance_schema}


def finish_embed(store: Store, job: EmbedJob, outs: list[dict[str, Any]], props: dict[str, str]) -> dict[str, Any]:
    """Commit every fragment's vectors as one version (``props``: author, message) made on ``job.version``."""
    rows, failed = sum(o["rows"] for o in outs), sum(o["failed"] for o in outs)
    version = job.version
    if not job.new_column and outs:
        version = refresh_column(store, job.table, job.version, pa.concat_tables([o["table"] for o in outs]), props)
    elif job.new_column and outs:
        # the log counts the rows whose vector changed, as diff does: a new column changes the rows given one
        counts = {"lightbox:inserted": "0", "lightbox:updated": str(rows - failed), "lightbox:deleted": "0"}
        version = commit_new_column(store, job.table, job.version, [o["fragment"] for o in outs], outs[-1]["schema"],
                                    {**props, **counts})
    elif job.new_column:  # no rows to join vectors to: the column alone (later writes fill it)
        version = add_empty_column(store, job.table, job.version, job.field, props)
    return {"version": version, "column": job.column, "model": job.model, "dim": job.field.type.list_size,
            "rows": rows, "failed": failed}


def embed_props(job: EmbedJob, message: str | None, author: str | None, **extra: str) -> dict[str, str]:
    """The version's properties: ``embed``, its author and message (by default, what was embedded how)."""
    return commit_props(message or f"embed {job.source} into {job.column!r} with {job.model}", author,
                        {"lightbox:op": "embed", **extra})


def embed_table(store: Store, name: str, embedder: Embedder, *, source: str = "image", column: str | None = None,
                batch_size: int = 256, message: str | None = None, author: str | None = None) -> dict[str, Any]:
    """Compute ``column`` from ``source`` for every row; returns the new version and counts."""
    job, fragments = plan_embed(store, name, embedder, source=source, column=column, batch_size=batch_size)
    outs = [embed_fragment(job, fid, embedder) for fid in fragments]
    return finish_embed(store, job, outs, embed_props(job, message, author))


def embed_with_model(store: Store, registry: Registry, name: str, model: str, **options: Any) -> dict[str, Any]:
    """``embed_table`` with the model named (a 400 for a model the registry does not know)."""
    try:
        embedder = registry.get(model)
    except UnknownModel as exc:
        raise BadRequest(str(exc), model=model) from exc
    return embed_table(store, name, embedder, **options)
