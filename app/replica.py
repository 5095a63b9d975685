"""Read replicas: every write is forwarded to the one writer of the data root.

Lance keeps each commit atomic on any store, but keeping ids unique under concurrent keyed writes
needs the writer's turn per table (``app.store.upserts``), which only one process can hold on object
storage (there is no file lock there). So any number of replicas serve reads, and a replica started
with ``LIGHTBOX_WRITER_URL`` passes every write request on unchanged (body streamed, headers and API
key kept) and hands back the writer's status, headers and body. Afterwards it drops its cached
latest of that table, so a client sees its own write through the same replica at once; other
readers see it within ``LATEST_REFRESH_SECONDS``.

A writer that stops answering (frozen, partitioned, overloaded) holds a forwarded write for at most
``WRITER_TIMEOUT_SECONDS``; then the client gets a 504 ``writer_timeout``. The write may still be
applied afterwards, when the writer resumes: a client that needs to know sends it with an
``Idempotency-Key`` and sends it again with the same key (``app.idempotency``: the writer answers
a repeat from memory instead of applying it twice).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import is_read
from app.errors import LightboxError, WriterTimeout, send_error

log = logging.getLogger("lightbox")

# Headers that describe one hop, not the message: never passed on.
HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "transfer-encoding", "upgrade", "host"})
_TABLE_IN_PATH = (re.compile(r"^/api/v1/tables/(?P<name>[^/]+)"), re.compile(r"^/v1/table/(?P<name>[^/]+)"))
OPEN_PATHS = ("/healthz", "/readyz")


class WriterUnavailable(LightboxError):
    status = 503
    code = "writer_unavailable"


@asynccontextmanager
async def writer_client(writer_url: str | None, timeout_seconds: float = 120.0
                        ) -> AsyncIterator[httpx.AsyncClient | None]:
    """The pooled client a replica forwards writes with (None on the writer itself). Every wait on the
    writer (sending the body, its answer, a free connection) is bounded by ``timeout_seconds``."""
    if not writer_url:
        yield None
        return
    timeout = httpx.Timeout(timeout_seconds, connect=min(10.0, timeout_seconds))
    async with httpx.AsyncClient(base_url=writer_url, timeout=timeout, follow_redirects=False) as client:
        yield client


async def open_reads_warning(client: httpx.AsyncClient | None, has_keys: bool) -> str | None:
    """Said at start (log and ``/readyz``) when this replica, with no API keys, serves every read of a
    data root whose writer requires keys: likely a replica someone forgot to give the keys."""
    if client is None or has_keys:
        return None
    try:
        answer = await client.get("/api/v1/tables", timeout=3.0)
    except httpx.HTTPError:
        return None  # the writer is not up (yet): nothing to compare with
    if answer.status_code != 401:
        return None
    warning = ("this read replica has no API keys, but its writer requires them: every read here is open "
               "to anyone who can reach it (set LIGHTBOX_API_KEYS as on the writer)")
    log.warning(warning)
    return warning


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
        if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):  # it may have reached the writer
            seconds = client.timeout.read
            await send_error(send, WriterTimeout(
                f"the writer of this data root did not answer within {seconds:g} s; the write may still be "
                "applied: send it again with the same Idempotency-Key to learn its outcome without applying "
                "it twice", timeout_seconds=seconds))
            return
        await send_error(send, WriterUnavailable("the writer of this data root did not answer; writes go through it"))
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
