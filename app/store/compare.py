"""When a row changed: the one notion of change that ``diff`` and the keyed writes share.

A row changed when one of its values differs. Image bytes are compared by their ``sha256``, never
read; ``ingested_at`` (when the bytes arrived, not what they are) is not compared; a column that one
side does not have reads as null there, so adding a column changes only the rows given a value in
it. Keyed writes use the same test to leave rows alone whose stored values already equal what is
written: a rewrite that changes nothing would otherwise be logged as a change that ``diff`` does not
see.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.store.schema import is_blob, is_vector

NOT_COMPARED = frozenset({"ingested_at"})
LOOKUP_LIMIT = 10_000  # rows of a write whose stored copies are found by a filtered scan


def compared_columns(schema: pa.Schema) -> list[str]:
    """The columns whose values make a row what it is (not image bytes: their ``sha256`` stands for them)."""
    return [f.name for f in schema if not is_blob(f) and f.name not in NOT_COMPARED]


def column_diff(x: pa.ChunkedArray | pa.Array, y: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True where two aligned columns differ (nulls equal to nulls)."""
    x, y = _whole(x), _whole(y)
    nx = np.asarray(x.is_null())
    ny = np.asarray(y.is_null())
    if pa.types.is_fixed_size_list(x.type) and x.type == y.type:
        values = ~np.all(_matrix(x) == _matrix(y), axis=1)
    elif is_vector_type(x.type) or pa.types.is_nested(x.type) or x.type != y.type:
        values = np.array([u != v for u, v in zip(x.to_pylist(), y.to_pylist(), strict=True)], bool)
    else:
        values = ~pc.fill_null(pc.equal(x, y), False).to_numpy(zero_copy_only=False)
    return (nx != ny) | (~nx & ~ny & values)


def has_value(x: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True where a column present on one side only holds a value (the other side reads null)."""
    return ~np.asarray(_whole(x).is_null())


def unchanged_rows(ds: Any, source: pa.Table) -> np.ndarray:
    """For each row of ``source`` (keyed by ``id``), True when ``ds`` stores that id with equal values
    in every column ``source`` carries: writing it would change nothing."""
    same = np.zeros(source.num_rows, dtype=bool)
    columns = [c for c in source.column_names if c != "id" and c not in NOT_COMPARED]
    if not source.num_rows or any(c not in ds.schema.names for c in ["id", *columns]):
        return same  # a column the table lacks: the write is refused or adds it, never a no-op
    blobs = [c for c in columns if is_blob(ds.schema.field(c))]
    if blobs and "sha256" not in columns:
        return same  # bytes without their digest cannot be compared without reading them
    compared = [c for c in columns if c not in blobs]
    try:
        keys = source.column("id").cast(ds.schema.field("id").type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return same  # ids of another type: the engine judges the write
    wanted = pa.table({"id": keys, "_at": pa.array(np.arange(source.num_rows))})
    # a few ids are looked up by a filtered scan; many are joined against the whole id column
    where = pc.field("id").isin(keys.unique()) if source.num_rows <= LOOKUP_LIMIT else None
    stored = ds.to_table(columns=["id"], with_row_id=True, filter=where)
    joined = wanted.join(stored, "id", join_type="inner")
    if not joined.num_rows:
        return same
    at = joined.column("_at").to_numpy()
    same[at] = True
    if compared:
        old = ds._take_rows(joined.column("_rowid").to_pylist(), columns=compared)
        new = source.select(compared).take(pa.array(at))
        differs = np.zeros(len(at), dtype=bool)
        for column in compared:
            differs |= column_diff(old.column(column), new.column(column))
        same[at[differs]] = False  # an id stored twice is unchanged only if every copy is equal
    return same


def _whole(x: pa.ChunkedArray | pa.Array) -> pa.Array:
    return x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x


def _matrix(arr: pa.FixedSizeListArray) -> np.ndarray:
    """Every slot of a fixed-size list array as rows (null slots included, so rows stay aligned)."""
    dim = arr.type.list_size
    flat = arr.values.to_numpy(zero_copy_only=False)
    return flat[arr.offset * dim : (arr.offset + len(arr)) * dim].reshape(len(arr), dim)


def is_vector_type(t: pa.DataType) -> bool:
    return is_vector(pa.field("x", t))
