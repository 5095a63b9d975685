"""The image-table schema and how Lightbox classifies columns.

An image table holds the standard columns of the contract (id, image, mime, width, height, mode,
frames, size_bytes, sha256, source, ingested_at) plus user metadata and vector columns. ``image``
is a Lance blob column (blob v2), so scans that do not ask for it never read image bytes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from lance.blob import blob_field

from app.errors import BadRequest, InvalidName, Unprocessable

if TYPE_CHECKING:
    from embeddings.base import Embedder

PRIMARY_KEY_META = {"lance-schema:unenforced-primary-key": "true"}
BLOB_EXTENSION = "lance.blob.v2"

STANDARD_FIELDS: tuple[pa.Field, ...] = (
    pa.field("id", pa.string(), nullable=False, metadata=PRIMARY_KEY_META),
    blob_field("image"),
    pa.field("mime", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("mode", pa.string()),
    pa.field("frames", pa.int32()),
    pa.field("size_bytes", pa.int64()),
    pa.field("sha256", pa.string()),
    pa.field("source", pa.string()),
    pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
)
STANDARD_NAMES = frozenset(f.name for f in STANDARD_FIELDS)
COLUMN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")  # whole name: fullmatch


def check_column_name(name: str) -> str:
    """A name for a column Lightbox creates (e.g. a vector column), or a 400.

    Lance refuses ``.`` in a top-level name (it reads it as a struct path) and the name ends up in
    filters and URLs, so new columns are plain identifiers.
    """
    if not isinstance(name, str) or not COLUMN_RE.fullmatch(name):
        raise InvalidName(f"invalid column name {name!r}: use up to 128 letters, digits or '_', "
                          "not starting with a digit", column=name)
    return name


def check_schema_names(schema: pa.Schema) -> pa.Schema:
    """A new table's column names, checked before Lance sees them (it reports them as I/O errors).

    Names must be non-empty, unique, free of control characters and of ``.`` (Lance reads a dot as a
    path into a struct column).
    """
    seen: set[str] = set()
    for name in schema.names:
        if not name or "." in name or any(ord(c) < 32 or ord(c) == 127 for c in name) or len(name) > 256:
            raise InvalidName(f"invalid column name {name!r}: give a non-empty name of up to 256 characters "
                              "without '.' or control characters", column=name)
        if name in seen:
            raise InvalidName(f"column {name!r} is declared twice", column=name)
        seen.add(name)
    return schema


def check_image_bytes(rows: pa.Table) -> None:
    """Rows that carry images must carry bytes: an ``image`` column of binary, or of Hugging Face's
    ``{bytes, path}`` structs. Anything else (ints, strings) is the client's mistake, a 422."""
    if "image" not in rows.column_names:
        return
    kind = rows.schema.field("image").type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        kind = kind.field("bytes").type
    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind)
            or pa.types.is_null(kind)):
        raise Unprocessable(f"the 'image' column must hold the image file's bytes (binary), not {kind}",
                            column="image", type=str(kind))


def image_schema(extra: list[pa.Field] | None = None) -> pa.Schema:
    """The schema of a new image table: the standard columns, then user columns in order."""
    fields = list(STANDARD_FIELDS)
    for field in extra or []:
        if field.name in STANDARD_NAMES:
            continue
        fields.append(field)
    return pa.schema(fields)


def blob_values(values: list[bytes | None]) -> pa.Array:
    """Bytes as a blob-column array (Lance refuses plain binary appends to a blob column)."""
    from lance.blob import blob_array

    return blob_array(values)


def blob_column(values: pa.Array) -> pa.Array:
    """An Arrow binary column as a blob-column array without copying the bytes (``blob_values`` takes a list)."""
    from lance.blob import BlobType

    kind = BlobType()
    data = values.cast(pa.large_binary())
    count = len(data)
    storage = pa.StructArray.from_arrays(
        [data, pa.nulls(count, pa.string()), pa.nulls(count, pa.uint64()), pa.nulls(count, pa.uint64())],
        fields=list(kind.storage_type), mask=data.is_null() if data.null_count else None)
    return pa.ExtensionArray.from_storage(kind, storage)


def column_order(name: str, ascending: bool = True) -> Any:
    """A sort key for Lance scans."""
    from lance.dataset import ColumnOrdering

    return ColumnOrdering(name, ascending=ascending)


def is_blob(field: pa.Field) -> bool:
    """True for a Lance blob column (v2 extension, or the legacy large_binary marker)."""
    if isinstance(field.type, pa.ExtensionType) and field.type.extension_name == BLOB_EXTENSION:
        return True
    meta = field.metadata or {}
    return meta.get(b"lance-encoding:blob") == b"true" or meta.get(b"ARROW:extension:name") == b"lance.blob.v2"


def is_vector(field: pa.Field) -> bool:
    """True for an embedding column: a fixed-size list of floats."""
    return pa.types.is_fixed_size_list(field.type) and pa.types.is_floating(field.type.value_type)


def scalar_columns(schema: pa.Schema) -> list[str]:
    """Columns a row's JSON carries: everything but blobs and vectors."""
    return [f.name for f in schema if not is_blob(f) and not is_vector(f)]


def is_image_table(schema: pa.Schema) -> bool:
    names = set(schema.names)
    return "image" in names and {"id", "mime", "sha256"} <= names


def type_name(t: pa.DataType) -> str:
    """A readable type name; blob columns read as ``blob`` rather than their struct layout."""
    if isinstance(t, pa.ExtensionType) and t.extension_name == BLOB_EXTENSION:
        return "blob"
    return str(t)


def describe_schema(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": type_name(f.type), "nullable": f.nullable} for f in schema]


MODEL_KEY = "lightbox:model"
SOURCE_KEY = "lightbox:source"
METRIC_KEY = "lightbox:metric"


def vector_field(name: str, dim: int, *, model: str, source: str, metric: str) -> pa.Field:
    """An embedding column; its metadata says how to embed a query the same way."""
    meta = {MODEL_KEY: model, SOURCE_KEY: source, METRIC_KEY: metric}
    return pa.field(name, pa.list_(pa.float32(), dim), metadata=meta)


def vector_meta(field: pa.Field) -> dict[str, str]:
    """model / source / metric recorded on a vector column (empty for vectors written elsewhere)."""
    raw = field.metadata or {}
    out = {}
    for key, short in ((MODEL_KEY, "model"), (SOURCE_KEY, "source"), (METRIC_KEY, "metric")):
        value = raw.get(key.encode())
        if value is not None:
            out[short] = value.decode()
    return out


def default_column(source: str, model: str | None = None) -> str:
    """``vector`` for images (``clip_vector`` for a CLIP model, so it sits beside a builtin ``vector``),
    ``<source>_vector`` for a text column."""
    if source == "image":
        return "clip_vector" if (model or "").startswith("clip:") else "vector"
    return f"{source}_vector"


def check_source(embedder: Embedder, schema: pa.Schema, source: str) -> None:
    """The source column exists and the model embeds its kind (images or text)."""
    if source not in schema.names:
        raise BadRequest(f"the table has no column {source!r} to embed", column=source)
    kind = "image" if is_blob(schema.field(source)) else "text"
    if kind not in embedder.modalities:
        raise BadRequest(f"model {embedder.name!r} does not embed {kind}s (it embeds: "
                         f"{', '.join(sorted(embedder.modalities))})", model=embedder.name)


def vector_array(vectors: list[np.ndarray | None], field: pa.Field) -> pa.Array:
    dim = field.type.list_size
    flat = np.zeros((len(vectors), dim), np.float32)
    mask = np.zeros(len(vectors), bool)
    for i, v in enumerate(vectors):
        if v is None:
            mask[i] = True
        else:
            flat[i] = v
    values = pa.array(flat.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(mask) if mask.any() else None)
