"""How uvicorn serves the app: connection limits and timeouts that hold against slow or stalled clients.

uvicorn bounds an idle keep-alive connection but not one that never finishes its request line and
headers: such a connection would stay open for ever. ``guarded_protocol`` adds a deadline for the
request head (and a cap on its size) to uvicorn's own HTTP protocol; stalled bodies are bounded by
``app.middleware.BodyLimits``. The same protocol sends each answer in one write (``OneWrite``).
``lightbox serve`` and the test servers both build their config here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import uvicorn

from app.settings import Settings


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn config for ``app`` with the settings' limits (``overrides`` win, e.g. a test's port)."""
    options: dict[str, Any] = {
        "host": settings.host, "port": settings.port,
        "http": guarded_protocol(settings.header_timeout_seconds, settings.max_header_bytes),
        "timeout_keep_alive": settings.keep_alive_seconds, "limit_concurrency": settings.max_connections,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def guarded_protocol(header_timeout: float, max_header_bytes: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools, else h11) with a deadline and a size cap for each request head.

    The deadline starts when a connection opens and when bytes arrive while no request is in flight; it
    ends when the head is complete. Past it the client gets a 408 (a connection that sent nothing is just
    closed); a head over ``max_header_bytes`` gets a 431. The rest of a body the app answered without
    reading (a 413) is discarded as it arrives, and the connection closes if it stalls that long.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - uvicorn without httptools
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class HeadDeadline(Base):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None
        _awaited: Any = None  # the request in flight when the wait for a head began
        _head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(OneWrite(transport, self.loop))
            self._await_head()

        def on_response_complete(self) -> None:
            self.transport.flush()  # the answer's last byte is written: send it now, not at the next turn
            super().on_response_complete()

        def data_received(self, data: bytes) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            # the unread rest of an answered request's body is discarded as it comes: an idle bound only
            draining = idle and self.cycle is not None and self.cycle.more_body
            if idle and (self._deadline is None or draining):
                self._await_head()
            if not draining:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._deadline is None:
                return
            if self.cycle is not self._awaited and self.cycle is not None:
                self._stop()  # a new request's head is complete
            elif self._head_bytes > max_header_bytes and not self.transport.is_closing():
                self._stop()
                _answer_and_close(self.transport, 431, "request_header_fields_too_large",
                                  f"the request line and headers exceed {max_header_bytes} bytes")

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop()
            super().connection_lost(exc)

        def _await_head(self) -> None:
            self._stop()
            self._awaited, self._head_bytes = self.cycle, 0
            self._deadline = self.loop.call_later(header_timeout, self._head_late)

        def _stop(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _head_late(self) -> None:
            self._deadline = None
            if self._head_bytes == 0:  # an idle connection: close it without an answer to nothing
                self.transport.close()
            elif not self.transport.is_closing():
                _answer_and_close(self.transport, 408, "request_timeout",
                                  f"the request was not complete within {header_timeout:g} s")

    return HeadDeadline


class OneWrite:
    """A transport whose writes in one turn of the event loop leave together, in one ``writelines``.

    uvicorn writes an answer's status line and headers, then its body, each with its own
    ``transport.write``: two sends on the socket for every small answer, and on loopback each send also
    runs the receiving side of TCP (measured: the two were about a third of the event loop's time
    serving small images). Held until the answer is complete (or the loop's next turn, whichever comes
    first), the writes of one answer become one ``writev``; ``close`` sends what is held first.
    Everything else is the transport's own.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _answer_and_close(transport: asyncio.Transport, status: int, code: str, message: str) -> None:
    """A last response in the error shape, written straight to the socket (no request reached the app)."""
    reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
    body = orjson.dumps({"error": {"code": code, "message": message, "detail": {}}})
    transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n%s" % (status, reason, len(body), body))
    transport.close()
