"""``/api/v1/tables``: list, create, describe, drop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from app.deps import RefDep, StoreDep
from app.errors import BadRequest
from app.models import RequestBody
from app.responses import JSON, version_headers
from app.services import describe as described
from app.services import tables as svc

router = APIRouter(prefix="/api/v1/tables", tags=["tables"])


class CreateTable(RequestBody):
    name: str
    schema_: list[dict[str, Any]] | None = Field(default=None, alias="schema")


@router.get("")
def list_tables(store: StoreDep) -> JSON:
    return JSON({"tables": svc.list_tables(store)})


@router.post("", status_code=201)
def create_table(body: CreateTable, store: StoreDep) -> JSON:
    schema = _schema_from_json(body.schema_) if body.schema_ else None
    return JSON(svc.create_table(store, body.name, schema), status_code=201)


@router.get("/{table}")
def describe_table(table: str, store: StoreDep, ref: RefDep) -> JSON:
    snap, info = svc.table_info(store, table, ref)
    return JSON(info, headers=version_headers(snap))


@router.get("/{table}/describe")
def describe(table: str, request: Request, store: StoreDep, ref: RefDep) -> JSON:
    """The table at a ref, plus its branches' heads, its number of versions, its indexes with their
    tuning and its size in storage."""
    snap, info = described.describe_table(store, request.app.state.searcher.indexes, table, ref)
    return JSON(info, headers=version_headers(snap))


@router.delete("/{table}", status_code=204)
def drop_table(table: str, store: StoreDep) -> Response:
    svc.drop_table(store, table)
    return Response(status_code=204)


def _schema_from_json(fields: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """Extra user columns given as ``[{"name", "type"}]`` with Arrow type names (int64, string, ...)."""
    import pyarrow as pa

    from app.store.schema import image_schema

    extra = []
    for f in fields:
        try:
            extra.append(pa.field(f["name"], pa.type_for_alias(f["type"]), nullable=f.get("nullable", True)))
        except (KeyError, ValueError, TypeError) as exc:
            raise BadRequest(f"invalid schema field {f!r}: give a name and an Arrow type name", field=f) from exc
    return image_schema(extra)
