"""Read replicas: every write is forwarded to the one writer of the data root.

Lance keeps each commit atomic on any store, but keeping ids unique under concurrent keyed writes
needs the writer's turn per table (``app.store.upserts``), which only one process can hold on object
storage (there is no file lock there). So any number of replicas serve reads, and a replica started
with ``LIGHTBOX_WRITER_URL`` passes every write request on unchanged (body streamed, headers and API
key kept) and hands back the writer's status, headers and body. Afterwards it drops its cached
latest of that table, so a client sees its own write through the same replica at once; other
readers see it within ``LATEST_REFRESH_SECONDS``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import is_read

log = logging.getLogger("lightbox")

# Headers that describe one hop, not the message: never passed on.
HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "transfer-encoding", "upgrade", "host"})
_TABLE_IN_PATH = (re.compile(r"^/api/v1/tables/(?P<name>[^/]+)"), re.compile(r"^/v1/table/(?P<name>[^/]+)"))
OPEN_PATHS = ("/healthz", "/readyz")


@asynccontextmanager
async def writer_client(writer_url: str | None) -> AsyncIterator[httpx.AsyncClient | None]:
    """The pooled client a replica forwards writes with (None on the writer itself)."""
    if not writer_url:
        yield None
        return
    timeout = httpx.Timeout(connect=10.0, read=None, write=None, pool=None)  # long ingests and uploads
    async with httpx.AsyncClient(base_url=writer_url, timeout=timeout, follow_redirects=False) as client:
        yield client


def table_of(path: str) -> str | None:
    """The table a write names in its path (native or LanceDB form), if any."""
    from urllib.parse import unquote

    for pattern in _TABLE_IN_PATH:
        found = pattern.match(path)
        if found:
            return unquote(found["name"]).rsplit("$", 1)[-1]  # a LanceDB id may name the root namespace: "$t"
    return None


class ForwardWrites:
    """Plain ASGI middleware on a replica: writes go to the writer, reads are served here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or is_read(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state

        def written() -> None:  # before the answer's last byte: the client's next read must see the write
            name = table_of(scope["path"])
            if name is None:
                return
            path = scope["path"].rstrip("/")
            dropped = (scope["method"] == "DELETE" and path.count("/") == 4) or path.endswith("/drop")
            (state.store.forget if dropped else state.store.invalidate)(name)

        await forward(state.writer, scope, receive, send, written)


async def forward(client: httpx.AsyncClient, scope: Scope, receive: Receive, send: Send,
                  written: Callable[[], None]) -> None:
    """Send the request to the writer as it came and stream the writer's answer back; ``written`` runs
    once the writer has answered in full, before the client gets the last byte."""

    async def body() -> AsyncIterator[bytes]:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
               if k.decode("latin-1").lower() not in HOP_HEADERS]
    path = scope.get("raw_path") or scope["path"].encode()
    url = path.decode("latin-1") + (("?" + scope["query_string"].decode("latin-1")) if scope["query_string"] else "")
    request = client.build_request(scope["method"], url, headers=headers, content=body())
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        log.warning("the writer did not answer a forwarded %s %s: %s", scope["method"], scope["path"],
                    type(exc).__name__)
        payload = orjson.dumps({"error": {"code": "writer_unavailable", "message": "the writer of this data root "
                                          "did not answer; writes go through it", "detail": {}}})
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 503, "headers": head})
        await send({"type": "http.response.body", "body": payload})
        return
    try:
        head = [(k, v) for k, v in response.headers.raw if k.decode("latin-1").lower() not in HOP_HEADERS]
        await send({"type": "http.response.start", "status": response.status_code, "headers": head})
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        written()
        await send({"type": "http.response.body", "body": b""})
    finally:
        await response.aclose()
