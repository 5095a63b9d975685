"""Row writes: insert (add), delete, update, merge_insert. Each answers the version it made."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool

from app.bodies import read_body, takes_upload
from app.deps import StoreDep
from app.errors import BadRequest, TableNotFound
from app.lancedb_compat import writes
from app.lancedb_compat.fields import DeleteBody, UpdateBody
from app.lancedb_compat.request import str_field, table_name
from app.lancedb_compat.routing import compat_router, table_route
from app.lancedb_compat.wire import read_stream
from app.responses import JSON
from app.services.writes import delete_rows
from app.store import Store

router = compat_router()
Delimiter = Annotated[str | None, Query()]
MERGE_PARAMS = ("when_matched_update_all", "when_matched_update_all_filt", "when_not_matched_insert_all",
                "when_not_matched_by_source_delete", "when_not_matched_by_source_delete_filt")


def _existing(store: Store, table_id: str, delimiter: str | None) -> str:
    name = table_name(table_id, delimiter)
    if not store.exists(name):
        raise TableNotFound(f"table {name!r} does not exist", table=name)
    return name


@table_route(router, "insert")
@takes_upload
async def insert(table_id: str, request: Request, store: StoreDep, delimiter: Delimiter = None,
                 mode: str = "append", branch: str | None = None) -> JSON:
    name = _existing(store, table_id, delimiter)
    rows = read_stream(await read_body(request))
    registry = request.app.state.registry
    if mode.lower() == "overwrite":
        report = await run_in_threadpool(writes.overwrite, store, registry, name, rows, branch)
        return JSON({"version": report["version"], "num_inserted_rows": report["inserted"],
                     "num_updated_rows": report["updated"], "num_deleted_rows": report["deleted"]})
    if mode.lower() != "append":
        raise BadRequest(f"mode must be append or overwrite, got {mode!r}")
    report = await run_in_threadpool(writes.add_rows, store, registry, name, rows, branch=branch)
    return JSON({"version": report["version"], "num_inserted_rows": report["inserted"],
                 "skipped": report.get("skipped", [])})


@table_route(router, "merge_insert")
@takes_upload
async def merge_insert(table_id: str, request: Request, store: StoreDep, delimiter: Delimiter = None,
                       branch: str | None = None) -> JSON:
    name = _existing(store, table_id, delimiter)
    params: dict[str, Any] = {k: request.query_params.get(k) for k in MERGE_PARAMS}
    params["on"] = request.query_params.getlist("on")
    rows = read_stream(await read_body(request))
    out = await run_in_threadpool(writes.merge_insert, store, request.app.state.registry, name, rows, params,
                                  branch)
    return JSON(out)


@table_route(router, "delete")
def delete(table_id: str, store: StoreDep, body: DeleteBody, delimiter: Delimiter = None) -> JSON:
    name = table_name(table_id, delimiter)
    predicate = str_field(body, "predicate")
    if not predicate:
        raise BadRequest("give a predicate; to delete every row use 'true'")
    out = delete_rows(store, name, filter_text=predicate, branch=str_field(body, "branch"))
    return JSON({"version": out["version"], "num_deleted_rows": out["deleted"]})


@table_route(router, "update")
def update(table_id: str, store: StoreDep, body: UpdateBody, delimiter: Delimiter = None) -> JSON:
    """A misspelt predicate is a 422, not an update of every row (no predicate updates the whole table)."""
    name = table_name(table_id, delimiter)
    out = writes.update(store, name, str_field(body, "predicate"), body.get("updates"), str_field(body, "branch"))
    return JSON({**out, "updated_rows": out["rows_updated"]})
