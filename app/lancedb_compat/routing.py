"""Each LanceDB operation answers on both route forms: the remote client's (``/describe/``) and the
namespace spec's (``/describe``, usually with ``?delimiter=%24``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter

from app.lancedb_compat.errors import CompatRoute

Handler = Callable[..., Any]


def route(router: APIRouter, path: str, methods: Sequence[str] = ("POST",)) -> Callable[[Handler], Handler]:
    """Register ``handler`` at ``path`` and at ``path/`` (the slash form is left out of the OpenAPI page)."""

    def register(handler: Handler) -> Handler:
        base = path.rstrip("/")
        for method in methods:  # one route a method: each gets an OpenAPI operation id of its own
            router.add_api_route(base, handler, methods=[method], summary=f"LanceDB: {method} {base}",
                                 operation_id=f"lancedb_{method.lower()}_{_slug(base)}")
        router.add_api_route(base + "/", handler, methods=list(methods), include_in_schema=False)
        return handler

    return register


def _slug(path: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in path.removeprefix("/v1/")).strip("_")


def table_route(router: APIRouter, op: str, methods: Sequence[str] = ("POST",)) -> Callable[[Handler], Handler]:
    """An operation on one table: ``/v1/table/{table_id}/{op}``."""
    return route(router, f"/v1/table/{{table_id}}/{op}", methods)


def compat_router() -> APIRouter:
    """A router of this package: its routes answer namespace-form requests with namespace-form errors."""
    return APIRouter(tags=["lancedb"], route_class=CompatRoute)
