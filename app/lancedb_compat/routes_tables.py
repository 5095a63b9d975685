"""Tables and the root namespace: list, describe, exists, count_rows, stats, create, drop."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.concurrency import run_in_threadpool

from app.bodies import read_body, takes_upload
from app.deps import StoreDep
from app.lancedb_compat import writes
from app.lancedb_compat.caches import forget_table
from app.lancedb_compat.fields import CountBody, DescribeBody, ReadBody
from app.lancedb_compat.request import body_ref, check_root_namespace, str_field, table_name
from app.lancedb_compat.routing import compat_router, route, table_route
from app.lancedb_compat.schema_json import schema_to_json
from app.lancedb_compat.wire import read_stream
from app.responses import JSON
from app.services import query as query_svc
from app.services import tables as tables_svc
from app.store import Store

router = compat_router()
Delimiter = Annotated[str | None, Query(description="the namespace delimiter (the namespace spec's form)")]
MAX_PAGE = 10_000


def _page(store: Store, limit: int | None, page_token: str | None) -> dict[str, object]:
    names = [n for n in store.names() if page_token is None or n > page_token]
    size = min(limit or MAX_PAGE, MAX_PAGE)
    more = len(names) > size
    names = names[:size]
    return {"tables": names, "page_token": names[-1] if more and names else None}


@route(router, "/v1/table", methods=("GET",))
def list_tables(store: StoreDep, limit: Annotated[int | None, Query(ge=0)] = None,
                page_token: str | None = None) -> JSON:
    return JSON(_page(store, limit, page_token))


@route(router, "/v1/namespace/{namespace_id}/table/list", methods=("GET", "POST"))
def list_namespace_tables(namespace_id: str, store: StoreDep, delimiter: Delimiter = None,
                          limit: Annotated[int | None, Query(ge=0)] = None, page_token: str | None = None) -> JSON:
    check_root_namespace(namespace_id, delimiter)
    return JSON(_page(store, limit, page_token))


@route(router, "/v1/namespace/{namespace_id}/list", methods=("GET", "POST"))
def list_namespaces(namespace_id: str, delimiter: Delimiter = None) -> JSON:
    check_root_namespace(namespace_id, delimiter)
    return JSON({"namespaces": [], "page_token": None})


@route(router, "/v1/namespace/{namespace_id}/describe")
@route(router, "/v1/namespace/{namespace_id}/exists")
def describe_namespace(namespace_id: str, delimiter: Delimiter = None) -> JSON:
    check_root_namespace(namespace_id, delimiter)
    return JSON({"properties": {}})


@table_route(router, "describe")
def describe(table_id: str, store: StoreDep, body: DescribeBody, delimiter: Delimiter = None) -> JSON:
    name = table_name(table_id, delimiter)
    snap, info = tables_svc.table_stats(store, name, body_ref(body, str_field(body, "branch")))
    return JSON({
        "table": name, "namespace": [], "version": snap.version, "schema": schema_to_json(snap.schema),
        "location": store.table_uri(name), "table_uri": store.table_uri(name),
        "stats": {"num_deleted_rows": 0, "num_fragments": info["num_fragments"]},
    }, headers={"x-lancedb-version": str(snap.version)})


@table_route(router, "exists")
def exists(table_id: str, store: StoreDep, body: ReadBody, delimiter: Delimiter = None) -> JSON:
    store.snapshot(table_name(table_id, delimiter), body_ref(body))  # 404 for a missing table or version
    return JSON({})


@table_route(router, "count_rows")
def count_rows(table_id: str, store: StoreDep, body: CountBody, delimiter: Delimiter = None) -> JSON:
    name = table_name(table_id, delimiter)
    snap, n = query_svc.count(store, name, body_ref(body), str_field(body, "predicate"))
    return JSON(n, headers={"x-lancedb-version": str(snap.version)})


@table_route(router, "stats")
def stats(table_id: str, store: StoreDep, body: ReadBody, delimiter: Delimiter = None) -> JSON:
    name = table_name(table_id, delimiter)
    _, info = tables_svc.table_stats(store, name, body_ref(body))
    ordered = info["fragment_rows"] or [0]

    def at(q: float) -> int:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return JSON({
        "total_bytes": info["total_bytes"], "num_rows": info["num_rows"], "num_indices": info["num_indices"],
        "fragment_stats": {"num_fragments": info["num_fragments"],
                           "num_small_fragments": sum(1 for n in ordered if n < 100_000),
                           "lengths": {"min": ordered[0], "max": ordered[-1], "mean": sum(ordered) // len(ordered),
                                       "p25": at(0.25), "p50": at(0.5), "p75": at(0.75), "p99": at(0.99)}},
    })


@table_route(router, "create")
@takes_upload
async def create(table_id: str, request: Request, store: StoreDep, delimiter: Delimiter = None,
                 mode: str = "create") -> JSON:
    name = table_name(table_id, delimiter)
    rows = read_stream(await read_body(request))
    version = await run_in_threadpool(writes.create_table, store, request.app.state.registry, name, rows,
                                      mode.lower())
    forget_table(request.app.state, name)  # the name may have held another table before
    return JSON({"version": version, "location": store.table_uri(name)})


@table_route(router, "drop")
def drop(table_id: str, request: Request, store: StoreDep, delimiter: Delimiter = None) -> JSON:
    name = table_name(table_id, delimiter)
    tables_svc.drop_table(store, name)
    forget_table(request.app.state, name)
    return JSON({"id": [name], "location": store.table_uri(name)})
