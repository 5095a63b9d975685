"""The LanceDB remote protocol (``/v1/table/...``, ``/v1/namespace/...``) as one router.

Every operation maps onto the services the native API uses (see ``LANCEDB_PROTOCOL.md``). A route
the official clients may call but Lightbox does not serve answers 501 with a JSON error naming it,
never a 404 (the clients would report a missing table) nor a 500 (they would retry it). A route it
does serve, asked with another method, is a 405 with ``Allow``.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.routing import Match

from app.lancedb_compat import routes_history, routes_indexes, routes_query, routes_tables, routes_writes
from app.lancedb_compat.errors import MethodNotAllowed, NotImplementedRoute
from app.lancedb_compat.routing import compat_router

MODULES = (routes_tables, routes_query, routes_writes, routes_history, routes_indexes)
router = compat_router()
for module in MODULES:
    router.include_router(module.router)


@router.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def unsupported(rest: str, request: Request) -> None:
    allowed = sorted({method for module in MODULES for route in module.router.routes
                      if isinstance(route, APIRoute) and route.matches(request.scope)[0] is Match.PARTIAL
                      for method in route.methods})
    if allowed:
        raise MethodNotAllowed(f"{request.method} is not allowed on /v1/{rest}; use {', '.join(allowed)}",
                               route=f"/v1/{rest}", allowed=allowed)
    raise NotImplementedRoute(f"{request.method} /v1/{rest} is not served by Lightbox's LanceDB API",
                              route=f"/v1/{rest}")
