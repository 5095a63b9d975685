"""Request bodies read under the service's limits: a 413 before anything large is buffered.

Two limits: uploads (multipart, Arrow IPC, image bytes) may be ``max_upload_bytes``, JSON
``max_json_bytes``. Which one a body gets is the route's, not the client's to choose: only routes
marked ``takes_upload`` accept an upload, and a body any route parses as JSON holds the JSON limit
whatever ``Content-Type`` it declares (a 59 MiB JSON body sent as ``image/png`` would otherwise be
parsed into gigabytes of Python objects).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from starlette.types import Scope

from app.errors import BadRequest, PayloadTooLarge

UPLOAD_MARK = "lightbox_takes_upload"
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def takes_upload(endpoint: Endpoint) -> Endpoint:
    """Mark a route's endpoint as one that reads an upload body (the larger limit applies to it)."""
    setattr(endpoint, UPLOAD_MARK, True)
    return endpoint


def routed_to_upload(scope: Scope) -> bool | None:
    """Whether the request was routed to an endpoint marked ``takes_upload``; None before routing."""
    endpoint = scope.get("endpoint")
    return None if endpoint is None else bool(getattr(endpoint, UPLOAD_MARK, False))


def upload_limit(request: Request) -> int:
    """The limit, checked against a declared Content-Length first (a 413 without reading)."""
    return _declared_within(request, request.app.state.settings.max_upload_bytes, "upload")


def _declared_within(request: Request, limit: int, kind: str) -> int:
    if int(request.headers.get("content-length") or 0) > limit:
        raise PayloadTooLarge(f"the body exceeds the {kind} limit of {limit} bytes", limit=limit)
    return limit


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The whole body, streamed and refused (413) as soon as it passes the limit (chunked uploads too)."""
    limit = upload_limit(request) if limit is None else limit
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, empty: Any = None, invalid: type[BadRequest] = BadRequest) -> Any:
    """The body parsed as JSON under the JSON limit, whatever its declared type; ``empty`` for no body,
    ``invalid`` (a 400) for a body that is not JSON."""
    raw = await read_body(request, _declared_within(request, request.app.state.settings.max_json_bytes, "JSON"))
    if not raw.strip():
        return empty
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"the body is not valid JSON: {exc}") from exc
