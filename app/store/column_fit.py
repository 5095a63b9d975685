"""Which values fit which column, and the columns a write adds.

A write may bring columns the table does not have yet: they are added, nullable, and rows written
before read them as null. A value for a column the table has must fit that column's type without
guessing. The safe casts (everything else is a type conflict, a 422 naming the column and both
types in words):

- integers into an integer column of any width (values checked: 300 does not fit ``int8``), a
  decimal-number column, or a fixed-point decimal column;
- decimal numbers into any decimal-number column (stored at its precision: ``float32`` rounds);
- a date into a date or timestamp column; a timestamp into a timestamp column (units converted,
  values checked);
- a list into a list or vector column of the same kind of items (a vector's length is checked);
- text into text, bytes into bytes, true/false into true/false, a record into a record with the
  same fields;
- a missing value (null), or a column that is missing altogether, into any nullable column.

Text is never parsed into numbers or dates here: ``"12"`` is text, and a text value for an integer
column is a conflict. Whether a side file's ``12`` is a number is the file reader's call (CSV
columns the table stores as text are read as text, so ``007`` stays ``007``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from app.errors import Unprocessable
from app.store.schema import BLOB_EXTENSION, check_schema_names


class ColumnTypeConflict(Unprocessable):
    """Values for a column that do not fit the type the table stores it as."""

    code = "column_type_conflict"


def kind(t: pa.DataType) -> str:
    """A column type in words (``integer``, ``text``, ``vector of 512 numbers``)."""
    if isinstance(t, pa.ExtensionType):
        if t.extension_name == BLOB_EXTENSION:
            return "image bytes"
        t = t.storage_type
    if pa.types.is_dictionary(t):
        return kind(t.value_type)
    if pa.types.is_fixed_size_list(t) and pa.types.is_floating(t.value_type):
        return f"vector of {t.list_size} numbers"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) \
            or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return f"list of {kind(t.value_type)}"
    return _WORDS.get(_family(t), str(t))


_WORDS = {"null": "no value (null)", "bool": "true/false", "int": "integer", "float": "decimal number",
          "decimal": "fixed-point decimal", "text": "text", "bytes": "bytes", "timestamp": "timestamp",
          "date": "date", "time": "time of day", "duration": "duration", "struct": "record", "map": "map"}

# data family -> the column families it may be written into (same family always fits)
_FITS_INTO = {"int": {"float", "decimal"}, "date": {"timestamp"}}


def _family(t: pa.DataType) -> str:
    if isinstance(t, pa.ExtensionType):
        return "blob" if t.extension_name == BLOB_EXTENSION else _family(t.storage_type)
    checks = (
        ("null", pa.types.is_null), ("bool", pa.types.is_boolean), ("int", pa.types.is_integer),
        ("float", pa.types.is_floating), ("decimal", pa.types.is_decimal),
        ("text", lambda x: pa.types.is_string(x) or pa.types.is_large_string(x) or pa.types.is_string_view(x)),
        ("bytes", lambda x: pa.types.is_binary(x) or pa.types.is_large_binary(x)
         or pa.types.is_fixed_size_binary(x) or pa.types.is_binary_view(x)),
        ("timestamp", pa.types.is_timestamp), ("date", pa.types.is_date), ("time", pa.types.is_time),
        ("duration", pa.types.is_duration), ("struct", pa.types.is_struct), ("map", pa.types.is_map),
        ("list", lambda x: pa.types.is_list(x) or pa.types.is_large_list(x) or pa.types.is_fixed_size_list(x)
         or pa.types.is_list_view(x) or pa.types.is_large_list_view(x)),
    )
    if pa.types.is_dictionary(t):
        return _family(t.value_type)
    return next((name for name, check in checks if check(t)), "other")


def is_text(t: pa.DataType) -> bool:
    return _family(t) == "text"


def fits(column: pa.DataType, data: pa.DataType) -> bool:
    """Whether values of type ``data`` may be written into a column of type ``column`` (by type; the
    values themselves are checked when they are cast)."""
    if column == data:
        return True
    wanted, given = _family(column), _family(data)
    if given == "null":
        return True
    if wanted == "list" and given == "list":
        return fits(column.value_type, data.value_type)
    if wanted == "blob":
        return given == "bytes"
    return (wanted == given and wanted != "other") or wanted in _FITS_INTO.get(given, set())


def conflict(table: str, column: str, stored: pa.DataType, given: pa.DataType, why: str = "") -> ColumnTypeConflict:
    """The 422 for values of type ``given`` meant for ``column`` (stored as ``stored``)."""
    detail = f": {why}" if why else ""
    return ColumnTypeConflict(
        f"column {column!r} of table {table!r} holds {kind(stored)} ({stored}), but the new data gives "
        f"{kind(given)} ({given}) for it{detail}; nothing was written",
        column=column, table_type=str(stored), data_type=str(given), table_kind=kind(stored), data_kind=kind(given))


def check_fit(table: str, field: pa.Field, data: pa.DataType) -> None:
    if not fits(field.type, data):
        raise conflict(table, field.name, field.type, data)


def plan_columns(table: str, base: pa.Schema, incoming: Iterable[pa.Field]) -> pa.Schema:
    """``base`` with the incoming columns it lacks added at the end (nullable; a column that only ever
    held nulls becomes text), after checking that every incoming column it has fits."""
    have = {f.name: f for f in base}
    added: dict[str, pa.Field] = {}
    for f in incoming:
        if f.name in have:
            check_fit(table, have[f.name], f.type)
        elif f.name not in added:
            added[f.name] = pa.field(f.name, new_column_type(f.type), nullable=True)
    if not added:
        return base
    return check_schema_names(pa.schema([*base, *added.values()], metadata=base.metadata))


def new_column_type(t: pa.DataType) -> pa.DataType:
    """How a column first seen in a write is stored: as given, with nothing but nulls stored as text
    and dictionary-encoded values stored plainly."""
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_dictionary(t):
        return new_column_type(t.value_type)
    return t


def added_columns(base: pa.Schema, target: pa.Schema) -> list[str]:
    return [n for n in target.names if n not in base.names]


def fit_array(table: str, field: pa.Field, values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``values`` as ``field``'s type, by a safe cast (a value that would change is a conflict)."""
    if values.type == field.type:
        return values
    check_fit(table, field, values.type)
    try:
        return values.cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError) as exc:
        raise conflict(table, field.name, field.type, values.type, f"some values do not fit ({exc})") from exc


def fit_values(table: str, field: pa.Field, values: list[Any]) -> pa.Array:
    """Python values (from a side file or a JSON body) as an array of ``field``'s type."""
    try:
        return pa.array(values, type=field.type)  # the common case: values of the column's own kind
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    try:
        inferred = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        raise ColumnTypeConflict(f"column {field.name!r} of table {table!r}: the new values mix kinds ({exc}); "
                                 "nothing was written", column=field.name, table_type=str(field.type)) from exc
    return fit_array(table, field, inferred)


def conform(table: str, rows: pa.Table, target: pa.Schema) -> pa.Table:
    """``rows`` in ``target``'s column order and types; absent columns are nulls (a non-nullable one is a 422)."""
    arrays = []
    for f in target:
        if f.name in rows.column_names:
            arrays.append(fit_array(table, f, rows.column(f.name)))
        elif f.nullable:
            arrays.append(pa.nulls(rows.num_rows, f.type))
        else:
            raise Unprocessable(f"every row needs a value for column {f.name!r}", column=f.name)
    return pa.Table.from_arrays(arrays, schema=target)
