"""Arrow schemas in Lance's JSON format (``rust/lance/src/arrow/json.rs``), as the LanceDB clients parse them.

Types are Lance's logical type names (``float``, ``double``, ``string``, ``timestamp:us:UTC``,
``fixed_size_list`` with ``length`` and one child in ``fields``), not pyarrow's names. A Lance blob
column (``image``) is written as ``large_binary`` marked ``lance-encoding:blob``: its cells leave
this protocol as the original bytes, which is what a ``large_binary`` column holds.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from app.errors import BadRequest
from app.store.schema import is_blob

PRIMITIVES: dict[pa.DataType, str] = {
    pa.null(): "null", pa.bool_(): "bool",
    pa.int8(): "int8", pa.int16(): "int16", pa.int32(): "int32", pa.int64(): "int64",
    pa.uint8(): "uint8", pa.uint16(): "uint16", pa.uint32(): "uint32", pa.uint64(): "uint64",
    pa.float16(): "halffloat", pa.float32(): "float", pa.float64(): "double",
    pa.string(): "string", pa.large_string(): "large_string", pa.binary(): "binary",
    pa.large_binary(): "large_binary", pa.string_view(): "string_view", pa.binary_view(): "binary_view",
    pa.date32(): "date32:day", pa.date64(): "date64:ms",
}
BY_NAME = {name: t for t, name in PRIMITIVES.items()}
BLOB_META = {"lance-encoding:blob": "true"}


class UnsupportedType(BadRequest):
    code = "unsupported_type"


def schema_to_json(schema: pa.Schema) -> dict[str, Any]:
    """``{"fields": [...], "metadata"?}``: the ``JsonSchema`` of the describe response."""
    out: dict[str, Any] = {"fields": [field_to_json(f) for f in schema]}
    meta = _text_meta(schema.metadata)
    if meta:
        out["metadata"] = meta
    return out


def field_to_json(field: pa.Field) -> dict[str, Any]:
    if is_blob(field):
        return {"name": field.name, "type": {"type": "large_binary"}, "nullable": True, "metadata": dict(BLOB_META)}
    out: dict[str, Any] = {"name": field.name, "type": type_to_json(field.type), "nullable": field.nullable}
    meta = _text_meta(field.metadata)
    if meta:
        out["metadata"] = meta
    return out


def type_to_json(t: pa.DataType) -> dict[str, Any]:
    name = PRIMITIVES.get(t)
    if name is not None:
        return {"type": name}
    if pa.types.is_fixed_size_list(t):
        return {"type": "fixed_size_list", "fields": [field_to_json(t.value_field)], "length": t.list_size}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return {"type": "large_list" if pa.types.is_large_list(t) else "list", "fields": [field_to_json(t.value_field)]}
    if pa.types.is_struct(t):
        return {"type": "struct", "fields": [field_to_json(t.field(i)) for i in range(t.num_fields)]}
    if pa.types.is_fixed_size_binary(t):
        return {"type": "fixed_size_binary", "length": t.byte_width}
    return {"type": _parametric_name(t)}


def _parametric_name(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return f"timestamp:{t.unit}:{t.tz or '-'}"
    if pa.types.is_time32(t) or pa.types.is_time64(t):
        return f"time{t.bit_width}:{t.unit}"
    if pa.types.is_duration(t):
        return f"duration:{t.unit}"
    if pa.types.is_decimal(t):
        return f"decimal:{t.bit_width}:{t.precision}:{t.scale}"
    if pa.types.is_dictionary(t):
        return f"dict:{type_to_json(t.value_type)['type']}:{type_to_json(t.index_type)['type']}:false"
    raise UnsupportedType(f"the Arrow type {t} has no Lance JSON name")


def schema_from_json(data: dict[str, Any]) -> pa.Schema:
    """The inverse, for clients that send a ``JsonSchema`` (the namespace spec's create_empty_table)."""
    try:
        fields = [field_from_json(f) for f in data["fields"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise UnsupportedType(f"not a Lance JSON schema: {exc}") from exc
    return pa.schema(fields, metadata=data.get("metadata") or None)


def field_from_json(data: dict[str, Any]) -> pa.Field:
    return pa.field(data["name"], type_from_json(data["type"]), nullable=bool(data.get("nullable", True)),
                    metadata=data.get("metadata") or None)


def type_from_json(data: dict[str, Any]) -> pa.DataType:
    name = str(data["type"])
    if name in BY_NAME:
        return BY_NAME[name]
    children = [field_from_json(f) for f in data.get("fields") or []]
    if name in ("list", "large_list", "fixed_size_list") and len(children) == 1:
        if name == "fixed_size_list":
            return pa.list_(children[0], int(data["length"]))
        return pa.large_list(children[0]) if name == "large_list" else pa.list_(children[0])
    if name == "struct":
        return pa.struct(children)
    if name == "fixed_size_binary":
        return pa.binary(int(data["length"]))
    head, _, rest = name.partition(":")
    parts = rest.split(":")
    if head == "timestamp" and len(parts) == 2:
        return pa.timestamp(parts[0], tz=None if parts[1] == "-" else parts[1])
    if head in ("time32", "time64") and len(parts) == 1:
        return pa.time32(parts[0]) if head == "time32" else pa.time64(parts[0])
    if head == "duration" and len(parts) == 1:
        return pa.duration(parts[0])
    if head == "decimal" and len(parts) == 3:
        make = pa.decimal256 if parts[0] == "256" else pa.decimal128
        return make(int(parts[1]), int(parts[2]))
    if head == "decimal" and len(parts) == 2:
        return pa.decimal128(int(parts[0]), int(parts[1]))
    if head == "dict" and len(parts) >= 2:
        return pa.dictionary(type_from_json({"type": parts[1]}), type_from_json({"type": parts[0]}))
    raise ValueError(f"unknown type {name!r}")


def _text_meta(meta: dict[bytes, bytes] | None) -> dict[str, str]:
    out = {}
    for key, value in (meta or {}).items():
        try:
            out[key.decode()] = value.decode()
        except UnicodeDecodeError:
            continue  # binary metadata (pandas, extension payloads) has no place in a JSON map
    return out
