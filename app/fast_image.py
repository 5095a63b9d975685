"""One fast path for the hottest request: ``GET .../rows/{row_id}/image`` of a small inline image.

FastAPI's routing, parameter solving and ``Response`` objects cost about twice what reading the image
does (bench/http.py's ladder). ``FastImage`` is plain ASGI, the innermost middleware: it matches the
image route's own path pattern, resolves the row through the same store, row reader and caches the
route uses, and sends the bytes with the route's headers (``app.routes.rows.image_headers``). The
middlewares outside it (metrics, request ids, body limits, API keys) see the request as they see any
other; it marks the request as routed to the image route so the metrics and access log name the route.

It answers only from memory and one local ``pread``: a 200 (or a 304 for a matching ``If-None-Match``)
of an image whose snapshot is cached (``Store.cached_snapshot``), whose id index is built and whose
bytes sit inline in a local data file. Everything else (a ``Range``, a resize, a tag or a time, a ref
it cannot parse, an unknown table or row, a latest due for its refresh, an index still to build, a
blob on object storage, any error at all) goes on to FastAPI unchanged: the route does any reading of
the store, errors keep the one JSON shape, and every other answer is the route's own.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from app.routes.rows import etag_matches, image_headers
from app.store import LATEST, Ref
from app.store.ids import id_problem

__all__ = ["FastImage", "request_ref"]

REF_NAMES = frozenset({"version", "tag", "branch", "as_of"})


class FastImage:
    """Plain ASGI middleware in front of the router for the image route (see the module's docstring)."""

    def __init__(self, app: ASGIApp, route: Any) -> None:
        self.app = app
        self.route = route  # the image route (a starlette ``Route``): its pattern, and the name metrics give
        self.served = 0  # requests answered here, not by the route (tests check the path is taken)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._answer(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = answer
        scope["route"] = self.route
        self.served += 1
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _answer(self, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """The status, headers and body of the route's answer, or None when the route should answer."""
        raw = scope.get("raw_path")
        if scope.get("root_path") or not raw or not raw.endswith(b"/image"):
            return None  # ``rows/x%2Fimage`` is the row ``x/image``, answered by the row route
        match = self.route.path_regex.match(scope["path"])
        if match is None:
            return None
        table, row_id = match["table"], match["row_id"]
        ref = request_ref(scope["query_string"])
        if ref is None or id_problem(row_id) is not None:
            return None
        headers = scope["headers"]
        if any(k == b"range" for k, _ in headers):
            return None
        try:
            state = scope["app"].state
            snap = state.store.cached_snapshot(table, ref)
            index = None if snap is None else state.reader.built(snap)  # a hit of the id maps, or None
            if index is None:
                return None  # the route reads what memory does not hold (off the event loop when it can)
            image = index.image(row_id)
            if image is None or image.mime.startswith("text/"):
                return None  # no such row or image; a text type, to which the route's Response adds a charset
            given = next((v for k, v in headers if k == b"if-none-match"), None)
            fresh = given is not None and etag_matches(given.decode("latin-1"), image.sha256)
            body = b"" if fresh else index.inline_bytes(image)
        except Exception:  # the route answers again, and says what went wrong in the one error shape
            return None
        if body is None:
            return None
        out = [(k.lower().encode("latin-1"), v.encode("latin-1"))
               for k, v in image_headers(snap, image, ref.pinned).items()]
        if fresh:
            return 304, out, b""
        out.append((b"content-length", str(len(body)).encode()))
        out.append((b"content-type", image.mime.encode("latin-1")))
        return 200, out, body


def request_ref(query: bytes) -> Ref | None:
    """The ref a query string names (latest when empty), or None when it holds anything else (a resize)."""
    if not query:
        return LATEST
    params = QueryParams(query)
    if len(params) != len(params.multi_items()) or not REF_NAMES.issuperset(params):
        return None
    try:
        return Ref.parse(version=params.get("version"), tag=params.get("tag"), branch=params.get("branch"),
                         as_of=params.get("as_of"))
    except Exception:
        return None
