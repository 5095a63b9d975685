"""Errors in the shape each protocol's clients parse.

The remote client reads any JSON body (ours: ``{"error": {"code", "message", "detail"}}``) and
keys on the status. The namespace spec's clients (they send ``?delimiter=``) parse an
``ErrorResponse``: ``{"error": str, "code": int, "detail": str, "instance": str}``, where ``code``
is the spec's error number, so those requests get that shape, with the same status.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from app.errors import BadRequest, LightboxError
from app.responses import JSON, renderable


class NestedNamespace(BadRequest):
    code = "namespace_not_supported"


class NotImplementedRoute(LightboxError):
    """A LanceDB route this server does not serve (501: the clients do not retry it, unlike 5xx others)."""

    status = 501
    code = "not_implemented"


class MethodNotAllowed(LightboxError):
    """A LanceDB route that exists, asked with a method it does not take (``Allow`` lists those it does)."""

    status = 405
    code = "method_not_allowed"

    @property
    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.detail.get("allowed", []))}


# Lightbox error codes -> the namespace spec's error numbers
SPEC_CODES = {
    "not_implemented": 0, "namespace_not_supported": 1, "table_not_found": 4, "table_exists": 5,
    "index_not_found": 6, "tag_not_found": 8, "version_not_found": 11, "unknown_column": 12,
    "conflict": 14, "unauthorized": 16, "forbidden": 15, "internal_error": 18,
}
INVALID_INPUT = 13


def namespace_error(exc: LightboxError, request: Request) -> JSON:
    code = SPEC_CODES.get(exc.code, INVALID_INPUT if exc.status < 500 else 18)
    if exc.code == "version_not_found" and "tag" in exc.detail:
        code = SPEC_CODES["tag_not_found"]
    body = {"error": exc.message, "code": code, "detail": orjson.dumps(renderable(exc.detail), default=str).decode(),
            "instance": getattr(request.state, "request_id", None)}
    return JSON(body, status_code=exc.status, headers=exc.headers)


class CompatRoute(APIRoute):
    """A route whose errors take the namespace spec's shape when the request came in that form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except LightboxError as exc:
                if "delimiter" not in request.query_params:
                    raise
                return namespace_error(exc, request)

        return answer
