"""``/api/v1/tables/{t}/views``: saved views (a named filter, sort, columns and ref) in the table's config."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import Field

from app.deps import StoreDep
from app.models import RequestBody
from app.responses import JSON
from app.services import views as svc

router = APIRouter(prefix="/api/v1/tables/{table}/views", tags=["views"])


class ViewBody(RequestBody):
    filter: str | None = None
    columns: list[str] | None = None
    order_by: list[str | dict[str, Any]] = Field(default_factory=list)
    ref: dict[str, Any] | None = Field(default=None, description="{version|tag|branch|as_of}: read there, "
                                                                 "unless a query names its own ref")


@router.get("")
def list_views(table: str, store: StoreDep) -> JSON:
    """Every saved view, each with ``error`` (null, or why a query through it fails now)."""
    return JSON({"views": svc.list_views(store, table)})


@router.get("/{view}")
def get_view(table: str, view: str, store: StoreDep) -> JSON:
    return JSON(svc.get_view(store, table, view))


@router.put("/{view}")
def save_view(table: str, view: str, body: ViewBody, store: StoreDep) -> JSON:
    """Create or replace a view; refused (4xx) when its filter, columns, sort or ref do not fit the table."""
    return JSON(svc.save_view(store, table, view, filter=body.filter, columns=body.columns,
                              order_by=body.order_by, ref=body.ref))


@router.delete("/{view}", status_code=204)
def delete_view(table: str, view: str, store: StoreDep) -> Response:
    svc.delete_view(store, table, view)
    return Response(status_code=204)
