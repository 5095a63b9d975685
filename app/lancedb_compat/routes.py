"""The LanceDB remote protocol (``/v1/table/...``, ``/v1/namespace/...``) as one router.

Every operation maps onto the services the native API uses (see ``LANCEDB_PROTOCOL.md``). A route
the official clients may call but Lightbox does not serve answers 501 with a JSON error naming it,
never a 404 (the clients would report a missing table) nor a 500 (they would retry it).
"""

from __future__ import annotations

from fastapi import Request

from app.lancedb_compat import routes_history, routes_indexes, routes_query, routes_tables, routes_writes
from app.lancedb_compat.errors import NotImplementedRoute
from app.lancedb_compat.routing import compat_router

router = compat_router()
for module in (routes_tables, routes_query, routes_writes, routes_history, routes_indexes):
    router.include_router(module.router)


@router.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def unsupported(rest: str, request: Request) -> None:
    raise NotImplementedRoute(f"{request.method} /v1/{rest} is not served by Lightbox's LanceDB API",
                              route=f"/v1/{rest}")
