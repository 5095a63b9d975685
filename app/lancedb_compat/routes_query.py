"""``query``: vector search, filter-only scans and row-offset takes, answered as an Arrow IPC file."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from app.lancedb_compat.fields import QueryBody
from app.lancedb_compat.query import parse_query, run_query
from app.lancedb_compat.request import table_name
from app.lancedb_compat.routing import compat_router, table_route
from app.lancedb_compat.wire import file_response

router = compat_router()


@table_route(router, "query")
async def query(table_id: str, request: Request, body: QueryBody,
                delimiter: Annotated[str | None, Query()] = None) -> Response:
    name = table_name(table_id, delimiter)
    spec = parse_query(body)
    state = request.app.state
    snap, schema, batches = await run_in_threadpool(run_query, state.store, state.searcher, state.reader, name, spec)
    return file_response(schema, batches, headers={"x-lancedb-version": str(snap.version)})
