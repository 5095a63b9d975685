"""The columns an upload session writes, and the vector columns it fills.

Decided once per session: the vector columns when it begins (a table's own, filled with the models
they record, or the one ``embed`` asks for on a new table), the other columns at its first batch
(the columns a batch brings besides ``id``, ``image`` and ``source``). A table's columns come first,
in its types; columns it lacks are added (older rows read null) in the session's version. Every
batch after the first must bring the same columns (or fewer: missing ones are null).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from app.errors import Unprocessable
from app.services.uploads.options import UploadOptions
from app.store import Snapshot
from app.store.column_fit import new_column_type, plan_columns
from app.store.schema import (
    STANDARD_NAMES,
    default_column,
    image_schema,
    is_image_table,
    is_vector,
    vector_field,
    vector_meta,
)
from embeddings.base import Embedder
from embeddings.registry import Registry, UnknownModel

# What a batch may carry besides its metadata columns; the rest of the standard columns are computed.
GIVEN = ("id", "image", "source")


@dataclass(frozen=True)
class VectorSpec:
    """A vector column filled while uploading: from the image, or from a text column."""

    field: pa.Field
    embedder: Embedder
    source: str

    @property
    def from_image(self) -> bool:
        return self.source == "image"


@dataclass(frozen=True)
class Plan:
    schema: pa.Schema  # the rows as staged
    extras: list[pa.Field]  # the columns batches bring besides id, image and source, in their staged types
    vectors: list[VectorSpec]
    new_columns: bool  # the schema adds columns to an existing table


def embedder(registry: Registry, model: str) -> Embedder:
    try:
        return registry.get(model)
    except UnknownModel as exc:
        raise Unprocessable(str(exc), model=model) from exc


def check_table(table: str, read: Snapshot | None) -> None:
    """Images go to image tables; rows of any other schema are added as an Arrow stream of rows."""
    if read is not None and not is_image_table(read.schema):
        raise Unprocessable(f"table {table!r} is not an image table (it has no image/mime/sha256 columns); "
                            "add rows to it as an Arrow stream of rows (POST .../rows)", table=table)


def table_vectors(table: str, read: Snapshot | None, opts: UploadOptions,
                  registry: Registry) -> list[VectorSpec]:
    """The vector columns of an existing table (each filled with the model it records); the ``embed`` model
    must be one of them. For a new table, None: its vector column waits for the first batch's columns."""
    if read is None:
        if opts.embed:
            embedder(registry, opts.embed)  # an unknown model fails the begin, before anything is read
        return []
    specs = []
    for f in read.schema:
        meta = vector_meta(f) if is_vector(f) else {}
        if meta.get("model") and meta.get("source"):
            specs.append(VectorSpec(f, embedder(registry, meta["model"]), meta["source"]))
    if opts.embed:
        wanted = opts.embed_text or "image"
        name = embedder(registry, opts.embed).name
        if not any(s.embedder.name == name and s.source == wanted for s in specs):
            raise Unprocessable(f"table {table!r} has no vector column made by {opts.embed!r} from {wanted!r}; "
                                f"add one with `lightbox embed {table} --model {opts.embed}` (POST .../embeddings)",
                                model=opts.embed, source=wanted)
    return specs


def plan_rows(table: str, read: Snapshot | None, given: pa.Schema, vectors: list[VectorSpec],
              opts: UploadOptions, registry: Registry) -> Plan:
    """The session's columns, from its first batch's schema."""
    computed = {v.field.name for v in vectors}
    extras = [pa.field(f.name, new_column_type(f.type)) for f in given
              if f.name not in STANDARD_NAMES and f.name not in computed]
    if read is None:
        vectors = _new_vectors(opts, registry, extras)
        schema = image_schema([*extras, *(v.field for v in vectors)])
        return Plan(schema, [schema.field(f.name) for f in extras], vectors, new_columns=False)
    stored = read.schema
    schema = plan_columns(table, stored, extras)
    return Plan(schema, [schema.field(f.name) for f in extras], vectors, new_columns=schema.names != stored.names)


def _new_vectors(opts: UploadOptions, registry: Registry, fields: list[pa.Field]) -> list[VectorSpec]:
    """The vector column ``embed`` asks for on a new table."""
    if not opts.embed:
        return []
    source = opts.embed_text or "image"
    model = embedder(registry, opts.embed)
    kind = "image" if source == "image" else "text"
    if kind not in model.modalities:
        raise Unprocessable(f"model {opts.embed!r} does not embed {kind}s; it embeds {sorted(model.modalities)}",
                            model=opts.embed)
    if source != "image" and source not in {f.name for f in fields}:
        raise Unprocessable(f"embed_text {source!r}: no such column in the rows (the metadata)", column=source)
    field = vector_field(default_column(source, model.name), model.dim, model=model.name, source=source,
                         metric=model.metric)
    return [VectorSpec(field, model, source)]


def given_columns(schema: pa.Schema) -> list[str]:
    """A batch's metadata columns: what it brings besides id, image and source."""
    return [n for n in schema.names if n not in GIVEN]
