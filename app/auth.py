"""API keys: with ``LIGHTBOX_API_KEYS`` set, every route but health and the data-free pages needs a key.

Keys come as ``KEY`` (read-write) or ``KEY:ro`` / ``KEY:rw``, comma-separated. A key is sent as
``x-api-key: KEY`` or ``Authorization: Bearer KEY``. A read-only key may call every read, including
the reads that are POSTs (query, fetch, search, count, a batch of thumbnails and the LanceDB-protocol
forms).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = ("/healthz", "/readyz", "/", "/docs", "/redoc", "/openapi.json")  # health, and pages holding no data
OPEN_PREFIXES = ("/ui/",)  # the gallery's static files
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
UPLOADS_PATH = re.compile(r"^/api/v1/tables/[^/]+/uploads(/|$)")
READ_POST_SUFFIXES = (
    "/query", "/fetch", "/search", "/count", "/describe", "/count_rows", "/version/list", "/tags/list",
    "/tags/version", "/index/list", "/stats", "/explain_plan", "/analyze_plan", "/exists", "/list", "/thumbnails",
)


@dataclass(frozen=True)
class ApiKeys:
    read_write: frozenset[str]
    read_only: frozenset[str]

    @classmethod
    def parse(cls, spec: str | None) -> ApiKeys | None:
        """``"k1,k2:ro"`` -> keys; None when no keys are configured (the service is open)."""
        if not spec or not spec.strip():
            return None
        rw, ro = set(), set()
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            key, _, mode = part.partition(":")
            (ro if mode.strip().lower() == "ro" else rw).add(key.strip())
        return cls(frozenset(rw), frozenset(ro))

    def access(self, key: str | bytes | None) -> str | None:
        """"rw", "ro" or None for an unknown key (compared in constant time).

        Keys are compared as bytes: ``hmac.compare_digest`` refuses ``str`` holding non-ASCII
        characters, and a header may carry any byte, so ``Bearer ré`` must be a 401, not a crash.
        """
        if not key:
            return None
        given = key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key
        for known in self.read_write:
            if hmac.compare_digest(known.encode("utf-8"), given):
                return "rw"
        for known in self.read_only:
            if hmac.compare_digest(known.encode("utf-8"), given):
                return "ro"
        return None


def is_read(method: str, path: str) -> bool:
    """Whether a request only reads. An upload session's state is not a read: sessions live in the writer
    (a replica forwards every request about them) and belong to clients that may write."""
    if method in READ_METHODS:
        return not UPLOADS_PATH.match(path)
    return method == "POST" and path.rstrip("/").endswith(READ_POST_SUFFIXES)


class RequireKey:
    """Plain ASGI middleware: 401 without a known key, 403 when a read-only key writes."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["path"].startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}  # raw bytes: a key may hold any byte
        key = headers.get(b"x-api-key")
        authorization = headers.get(b"authorization", b"")
        if key is None and authorization[:7].lower() == b"bearer ":
            key = authorization[7:].strip()
        access = self.keys.access(key)
        if access is None:
            await _deny(send, 401, "unauthorized", "a valid API key is required (x-api-key or Authorization: Bearer)")
            return
        if access == "ro" and not is_read(scope["method"], scope["path"]):
            await _deny(send, 403, "forbidden", "this API key is read-only")
            return
        await self.app(scope, receive, send)


async def _deny(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message, "detail": {}}})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})
