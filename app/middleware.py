"""Plain ASGI middleware: request ids for tracing (and the headers every answer carries), and the bounds
every request body is read under."""

from __future__ import annotations

import asyncio
import os
from typing import Any, NoReturn

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.bodies import routed_to_upload
from app.errors import LightboxError, PayloadTooLarge, RequestTimeout


class RequestId:
    """Plain ASGI middleware (no per-request task or body copying, unlike BaseHTTPMiddleware): the request
    id, and ``X-Content-Type-Options: nosniff`` on every answer, so a browser takes an image (bytes a
    client uploaded) or a JSON error as the type it is served as, never sniffs it into HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = given[:128] if given else os.urandom(16).hex().encode()  # 32 hex digits, like a uuid4
        scope.setdefault("state", {})["request_id"] = request_id.decode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id))
                headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


BODILESS = frozenset({"GET", "HEAD"})  # methods whose requests rarely carry a body: checked for one cheaply
UPLOAD_TYPES = (b"multipart/", b"application/vnd.apache.arrow", b"application/octet-stream", b"image/")


class _BodyRefused(StarletteHTTPException):
    """Raised from ``receive`` once the 413/408 is sent: unwinds the handler; its own answer is dropped.

    An HTTPException, so FastAPI's body parsing re-raises it (other errors become a 400 there) and the
    exception middleware handles it without logging a 500.
    """


class BodyLimits:
    """Plain ASGI middleware: every request body is bounded before it is read, and may not stall.

    A declared Content-Length over the limit answers 413 without reading a byte; a chunked or streamed
    body is counted as it arrives and answers 413 as soon as it passes the limit. The upload limit is
    for an upload type sent to a route that takes uploads (``app.bodies.takes_upload``); every other
    body, whatever its declared type, has the smaller JSON limit. Before routing only the declared
    type is known, so the limit is settled again when the routed handler first reads the body. A body
    that sends nothing for ``idle_seconds`` answers 408 and the connection closes. The rest of a
    refused body is discarded by the server as it arrives.
    """

    def __init__(self, app: ASGIApp, json_bytes: int, upload_bytes: int, idle_seconds: float) -> None:
        self.app = app
        self.json_bytes = json_bytes
        self.upload_bytes = upload_bytes
        self.idle_seconds = idle_seconds

    def limit_for(self, scope: Scope, content_type: bytes) -> int:
        """The upload limit for an upload type, unless the request was routed to a route that takes none."""
        if content_type.lower().lstrip().startswith(UPLOAD_TYPES) and routed_to_upload(scope) is not False:
            return self.upload_bytes
        return self.json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["method"] in BODILESS and b"content-length" not in headers and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body to bound (HTTP/1.1 frames a body by one of the two)
            return
        content_type = headers.get(b"content-type", b"")
        limit = self.limit_for(scope, content_type)
        declared = headers.get(b"content-length", b"").strip()
        size = int(declared) if declared.isdigit() else None
        if size is not None and size > limit:
            await _refuse(send, PayloadTooLarge(_too_large(limit), limit=limit))
            return
        received = 0
        done = answered = started = routed = False

        async def refuse(error: LightboxError, status: int, close: bool = False) -> NoReturn:
            nonlocal answered
            if not answered and not started:  # else the handler's answer is already on its way
                answered = True
                await _refuse(send, error, close=close)
            raise _BodyRefused(status, error.message)

        async def bounded_receive() -> Message:
            nonlocal received, done, limit, routed
            if done:
                return await receive()
            if not routed and routed_to_upload(scope) is not None:  # the handler's own limit, once routed
                routed, limit = True, self.limit_for(scope, content_type)
                if size is not None and size > limit:
                    await refuse(PayloadTooLarge(_too_large(limit), limit=limit), 413)
            try:
                message = await asyncio.wait_for(receive(), self.idle_seconds)
            except TimeoutError:
                await refuse(RequestTimeout(f"the request body stalled for {self.idle_seconds:g} s",
                                            timeout_seconds=self.idle_seconds), 408, close=True)
            if message["type"] != "http.request":
                done = True
                return message
            received += len(message.get("body", b""))
            if received > limit:
                await refuse(PayloadTooLarge(_too_large(limit), limit=limit), 413)
            done = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered and message["type"].startswith("http.response."):
                return  # the handler's own answer after a refusal
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except _BodyRefused:
            if not answered:
                raise


def _too_large(limit: int) -> str:
    return f"the request body exceeds the limit of {limit} bytes"


async def _refuse(send: Send, error: LightboxError, close: bool = False) -> None:
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
