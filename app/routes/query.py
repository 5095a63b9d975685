"""``/query``, ``/count`` and ``/fetch``: JSON by default, Arrow IPC streams on request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from pydantic import Field

from app.deps import ReaderDep, RefDep, StoreDep
from app.models import RequestBody
from app.responses import JSON, arrow_response, version_headers, wants_arrow
from app.services import query as svc
from app.services import views
from app.services.facets import FacetSpec, facets

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["query"])
AcceptHeader = Annotated[str | None, Header()]


class QueryBody(RequestBody):
    filter: str | None = None
    columns: list[str] | None = None
    limit: int | None = Field(default=100, description="rows per page; null means all (Arrow only)")
    offset: int | None = Field(default=None, ge=0)
    cursor: str | None = None
    order_by: list[str | dict[str, Any]] = Field(default_factory=list)
    view: str | None = Field(default=None, description="a saved view: its filter ANDed with this one, its "
                                                        "columns, sort and ref unless given here")


class FetchBody(RequestBody):
    ids: list[str]
    columns: list[str] | None = None
    with_images: bool = False


@router.post("/query")
def query(table: str, body: QueryBody, store: StoreDep, ref: RefDep, accept: AcceptHeader = None) -> Response:
    arrow = wants_arrow(accept)
    spec = svc.QuerySpec(**body.model_dump(exclude={"view"}))
    if body.view:
        spec, ref = views.apply(store, table, body.view, spec, ref)
    plan = svc.plan_query(store, table, ref, spec, max_rows=None if arrow else svc.MAX_JSON_ROWS)
    headers = version_headers(plan.snap)
    if arrow:
        stream = plan.stream()
        return arrow_response(stream.schema, stream, headers)
    rows, next_cursor = plan.page()
    return JSON({"rows": rows.to_pylist(), "next_cursor": next_cursor}, headers=headers)


@router.get("/count")
def count(table: str, store: StoreDep, ref: RefDep, filter: Annotated[str | None, Query()] = None,
          view: Annotated[str | None, Query(description="a saved view, its filter ANDed with this one")] = None
          ) -> JSON:
    if view:
        spec, ref = views.apply(store, table, view, svc.QuerySpec(filter=filter), ref)
        filter = spec.filter
    snap, n = svc.count(store, table, ref, filter)
    return JSON({"count": n}, headers=version_headers(snap))


@router.get("/facets")
def get_facets(table: str, store: StoreDep, ref: RefDep, filter: Annotated[str | None, Query()] = None,
               columns: Annotated[list[str] | None, Query(description="repeat to name several; default: "
                                                          "the low-cardinality and numeric columns")] = None,
               max_values: Annotated[int, Query(ge=1, le=1000)] = 20,
               bins: Annotated[int, Query(ge=1, le=100)] = 10) -> JSON:
    """Value counts and histograms under ``filter``; each count equals ``/count`` of that value."""
    snap, body = facets(store, table, ref, FacetSpec(filter, columns, max_values, bins))
    return JSON(body, headers=version_headers(snap))


@router.post("/fetch")
def fetch(table: str, body: FetchBody, store: StoreDep, reader: ReaderDep, ref: RefDep,
          accept: AcceptHeader = None) -> Response:
    snap, rows, missing = svc.fetch(store, reader, table, ref, body.ids, body.columns, body.with_images)
    headers = version_headers(snap)
    if wants_arrow(accept):
        headers["X-Lightbox-Missing"] = str(len(missing))
        return arrow_response(rows.schema, rows.to_batches(), headers)
    return JSON({"rows": rows.to_pylist(), "missing": missing}, headers=headers)
