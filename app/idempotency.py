"""``Idempotency-Key`` on writes: a write sent again with the same key is answered, not applied twice.

A client that gives up on a write (a timeout, a dropped connection, a read replica's 504 while its
writer stalls) cannot tell whether it was applied: the writer may still commit it. Sending it
again could apply it twice. With an ``Idempotency-Key`` header, the writer remembers its answer
to a write that succeeded (2xx: status, headers and body) for ``ttl_seconds``. The same key with
the same request (method, path and query, and the body when it is JSON: a multipart upload sent
again has a new boundary) is answered from memory with
``Idempotent-Replayed: true``. Sent again while the first is still running, it is a 409
``idempotency_in_progress`` (try again shortly). With another request, it is a 422
``idempotency_key_reused``. Any other answer is not remembered: a write that failed applied nothing,
so a retry runs it again.

Keys are scoped to the API key that sent them (the ``x-api-key``/``Authorization`` value), and
held in the writer's memory, within a byte budget: a restarted writer has forgotten them. Replicas
pass the header on unchanged; the writer's answer is the one remembered.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import is_read
from app.errors import BadRequest, Conflict, Unprocessable, send_error

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_KEY_LENGTH = 255
MAX_ANSWER_BYTES = 1024**2  # a write's answer is a small JSON document; a larger one is not kept


class KeyInProgress(Conflict):
    code = "idempotency_in_progress"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class KeyReused(Unprocessable):
    code = "idempotency_key_reused"


@dataclass
class Answer:
    """The first answer to one key: pending until the write has answered in full."""

    fingerprint: bytes = b""
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    done: bool = False
    at: float = 0.0


class Idempotency:
    """Plain ASGI middleware on the writer (see the module's docstring)."""

    def __init__(self, app: ASGIApp, ttl_seconds: float, max_bytes: int = 32 * 1024**2) -> None:
        self.app = app
        self.ttl = ttl_seconds
        self.max_bytes = max_bytes
        self._answers: OrderedDict[bytes, Answer] = OrderedDict()
        self._bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        writes = scope["type"] == "http" and scope["method"] in WRITE_METHODS
        key = _header(scope, b"idempotency-key") if writes else None  # a read never looks at its headers
        if key is None or is_read(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH:
            await send_error(send, BadRequest(f"an Idempotency-Key is 1 to {MAX_KEY_LENGTH} characters"))
            return
        self._expire()
        scoped = hashlib.sha256(b"\0".join((_header(scope, b"x-api-key") or b"",
                                            _header(scope, b"authorization") or b"", key))).digest()
        known = self._answers.get(scoped)
        if known is not None:
            await self._again(scope, receive, send, known)
            return
        answer = self._answers[scoped] = Answer()
        digest, with_body = _request_digest(scope), _json(scope)

        async def hashed() -> Message:
            message = await receive()
            if message["type"] == "http.request" and with_body:
                digest.update(message.get("body", b""))
            return message

        async def kept(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status, answer.headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body" and len(answer.body) <= MAX_ANSWER_BYTES:
                answer.body += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, hashed, kept)
        finally:
            if 200 <= answer.status < 300 and len(answer.body) <= MAX_ANSWER_BYTES:
                answer.fingerprint, answer.done, answer.at = digest.digest(), True, time.monotonic()
                self._bytes += len(answer.body)
            else:  # nothing worth repeating: a retry runs the write
                self._answers.pop(scoped, None)

    async def _again(self, scope: Scope, receive: Receive, send: Send, known: Answer) -> None:
        if not known.done:
            await send_error(send, KeyInProgress("a request with this Idempotency-Key is still running; "
                                                 "send it again once it has answered"))
            return
        digest = _request_digest(scope)
        while _json(scope):
            message = await receive()
            digest.update(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        if digest.digest() != known.fingerprint:
            await send_error(send, KeyReused("this Idempotency-Key was used for another request; "
                                             "use a new key for a new write"))
            return
        headers = [*known.headers, (b"idempotent-replayed", b"true")]
        await send({"type": "http.response.start", "status": known.status, "headers": headers})
        await send({"type": "http.response.body", "body": bytes(known.body)})

    def _expire(self) -> None:
        now = time.monotonic()
        while self._answers:
            oldest_key, oldest = next(iter(self._answers.items()))
            if not oldest.done or (now - oldest.at < self.ttl and self._bytes <= self.max_bytes):
                return
            del self._answers[oldest_key]
            self._bytes -= len(oldest.body)


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k.lower() == name), None)


def _json(scope: Scope) -> bool:
    return (_header(scope, b"content-type") or b"").lower().startswith(b"application/json")


def _request_digest(scope: Scope) -> Any:
    """What a repeat must match: method, path, query and media type (the body is added when JSON)."""
    digest = hashlib.sha256()
    media = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    path = scope.get("raw_path") or scope["path"].encode()
    for part in (scope["method"].encode(), path, scope["query_string"], media):
        digest.update(part + b"\0")
    return digest
