"""What every route reads from a request: the table id, the JSON body, and the ref it pins.

Table ids arrive as ``name`` (the remote client) or, with the namespace spec, as ``ns$name`` in the
path and ``"id": [..]`` in the body. Lightbox keeps its tables in one flat data root, which is the
root namespace: ``name`` and ``["name"]`` address a table; a nested id is a clear 400.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from app.bodies import read_json
from app.errors import BadRequest, InvalidRef
from app.lancedb_compat.errors import NestedNamespace
from app.store import Ref

DELIMITER = "$"


def table_name(table_id: str, delimiter: str | None = None) -> str:
    """The Lightbox table an id names: the id itself, or its last part under the root namespace."""
    delim = delimiter or DELIMITER
    parts = [p for p in table_id.split(delim)] if table_id else []
    if len(parts) == 2 and parts[0] == "":  # "$name": the root namespace spelled out
        parts = parts[1:]
    if len(parts) != 1 or not parts[0]:
        raise NestedNamespace(
            f"table id {table_id!r} names a nested namespace; Lightbox tables live in the root namespace, "
            "so give the table name alone", id=table_id)
    return parts[0]


def check_root_namespace(namespace_id: str, delimiter: str | None = None) -> None:
    """Only the root namespace exists (``$``, or empty)."""
    if namespace_id not in ("", delimiter or DELIMITER):
        raise NestedNamespace(f"namespace {namespace_id!r} does not exist: Lightbox has only the root namespace "
                              f"({DELIMITER!r})", namespace=namespace_id)


async def json_body(request: Request) -> dict[str, Any]:
    """The JSON object body, under the JSON limit whatever its declared type; an empty body is ``{}``
    (``open_table`` sends none)."""
    value = await read_json(request, empty={})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def body_ref(body: dict[str, Any], branch: str | None = None) -> Ref:
    """The ref a body pins: ``version`` (on ``branch``), ``tag``, or ``branch``'s latest; main's latest by default."""
    version, tag = body.get("version"), body.get("tag")
    branch = body.get("branch") or branch or None
    if branch is not None and not isinstance(branch, str):
        raise InvalidRef("branch must be a string")
    if tag is not None:
        if version is not None:
            raise InvalidRef("give version or tag, not both")
        return Ref.parse(tag=str(tag))
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int):
            raise InvalidRef(f"version must be an integer, got {version!r}")
        return Ref(version=Ref.parse(version=version).version, branch=branch)
    return Ref(branch=branch)


def int_field(body: dict[str, Any], key: str, default: int | None = None, *, minimum: int = 0,
              maximum: int = 2**63 - 1) -> int | None:
    """An integer field within bounds; Lance takes int64, so larger numbers are a 400 here."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise BadRequest(f"{key} must be an integer from {minimum} to {maximum}, got {value!r}")
    return value


def str_field(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string, got {value!r}")
    return value
