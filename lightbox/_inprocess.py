"""The SDK pointed at an app in this process: an httpx transport that calls an ASGI app directly.

``lightbox.connect("./lightbox-data")`` serves a data root without a server: the service's own app
(``create_app``) runs on a private event loop in a background thread, its lifespan started on the
first request and ended by ``Client.close()``, and every SDK call is an ASGI call to it. The command
line uses this for ``--uri`` and an HTTP URL for ``--server``, so the two cannot disagree (as
datasette's internal client does for its plugins).

Responses stream: the body's chunks cross from the loop to the caller through a bounded queue, so an
export of gigabytes holds a few chunks at a time, as over a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import Future
from typing import Any

import httpx

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]
REQUEST_CHUNK = 1024 * 1024  # request bodies reach the app in pieces of this size, as from a socket
# A request extension carrying Arrow rows (an upload batch) to the app as they are: in this process there
# is no wire to serialize them for. The app finds them in the ASGI scope's "extensions"; no server sets it.
ARROW_ROWS = "lightbox.arrow_rows"
QUEUED_CHUNKS = 8  # response chunks buffered between the app and the reader
APP_ERROR = "lightbox.app_error"  # the response extension holding what the app raised behind a 5xx


class AppThread:
    """An ASGI app with its lifespan, on an event loop in a daemon thread of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="lightbox-inprocess")
        self._thread.start()
        self._lifespan: Future[None] | None = None
        self._failed: BaseException | None = None  # what the lifespan's startup raised
        self._to_app: asyncio.Queue[Message] | None = None
        self._from_app: asyncio.Queue[Message] | None = None
        self._started = threading.Lock()
        self._closed = False

    def run(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine on the app's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()  # type: ignore[arg-type]

    def start(self) -> None:
        """Run the lifespan's startup once (the store opens here); raises what it raised."""
        with self._started:
            if self._failed is not None:
                raise self._failed
            if self._lifespan is not None:
                return
            if self._closed:
                raise RuntimeError("this in-process client is closed")
            self._lifespan = asyncio.run_coroutine_threadsafe(self._run_lifespan(), self.loop)
            message = self.run(self._next_from_app())
            if message["type"] == "lifespan.startup.complete":
                return
            if "exception" not in message:  # the app told of its failure first; what it raised comes next
                message = {**message, **self.run(asyncio.wait_for(self._next_from_app(), 60))}
            self._failed = message.get("exception") or RuntimeError(
                f"the app did not start: {message.get('message', message['type'])}")
            raise self._failed

    async def _run_lifespan(self) -> None:
        self._to_app, self._from_app = asyncio.Queue(), asyncio.Queue()
        await self._to_app.put({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except BaseException as exc:  # an app without lifespan support, or a startup that failed
            await self._from_app.put({"type": "lifespan.startup.failed", "message": repr(exc), "exception": exc})
        else:
            await self._from_app.put({"type": "lightbox.lifespan.ended"})

    async def _next_from_app(self) -> Message:
        while self._from_app is None:
            await asyncio.sleep(0)
        return await self._from_app.get()

    def close(self) -> None:
        """Run the lifespan's shutdown (the store and the index keeper close), then stop the loop."""
        with self._started:
            if self._closed:
                return
            self._closed = True
            if self._lifespan is not None and self._to_app is not None:
                with contextlib.suppress(Exception):
                    self.run(self._to_app.put({"type": "lifespan.shutdown"}))
                    self.run(asyncio.wait_for(self._next_from_app(), 60))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class InProcessTransport(httpx.BaseTransport):
    """httpx's sync transport over an ``AppThread``: each request is one ASGI call on the app's loop."""

    def __init__(self, app: AppThread) -> None:
        self.app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.app.start()
        body = request.read()
        chunks: asyncio.Queue[Message | BaseException] | None = None
        ready: Future[asyncio.Queue[Message | BaseException]] = Future()

        async def call() -> None:
            nonlocal chunks
            chunks = asyncio.Queue(QUEUED_CHUNKS)
            ready.set_result(chunks)
            sent = 0

            async def receive() -> Message:
                nonlocal sent
                if sent > len(body):  # the body is read: the client stays connected until the answer ends
                    await asyncio.Event().wait()
                piece = body[sent:sent + REQUEST_CHUNK]
                sent += REQUEST_CHUNK if piece else 1
                return {"type": "http.request", "body": piece, "more_body": sent < len(body)}

            scope = _scope(request)
            if ARROW_ROWS in request.extensions:
                scope["extensions"] = {ARROW_ROWS: request.extensions[ARROW_ROWS]}
            try:
                await self.app.app(scope, receive, chunks.put)
            except BaseException as exc:  # the app raised instead of answering: the caller sees it
                await chunks.put(exc)
            finally:
                # Let go of handed-over rows at once: httpx's response and its stream refer to each other, so
                # the request (and rows tens of MB large) would live until the cyclic collector runs, which an
                # ingest runs rarely (``fewer_gc_passes``): a 1.2 GB TIFF ingest held every batch (2.8 GB RSS).
                scope.get("extensions", {}).pop(ARROW_ROWS, None)
                request.extensions.pop(ARROW_ROWS, None)
            await chunks.put({"type": "lightbox.end"})

        task = asyncio.run_coroutine_threadsafe(call(), self.app.loop)
        queue = ready.result()
        start = self._next(queue)
        if start.get("type") != "http.response.start":
            task.cancel()
            raise httpx.RemoteProtocolError(f"the app answered {start.get('type')!r} before a response start")
        headers = [(bytes(k), bytes(v)) for k, v in start.get("headers", [])]
        stream = _BodyStream(self, queue, task)
        response = httpx.Response(int(start["status"]), headers=headers, stream=stream, request=request)
        if response.status_code >= 500:  # the app's exception behind it lands here once the body is read
            stream.failed = response.extensions
        return response

    def _next(self, queue: asyncio.Queue[Message | BaseException]) -> Message:
        item = self.app.run(queue.get())
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.app.close()


def connect_local(uri: str, *, api_key: str | None = None, storage_options: dict[str, str] | None = None,
                  **settings: Any) -> Any:
    """A ``Client`` on the data root ``uri``, served by the service's own app in this process.

    The environment's ``LIGHTBOX_*`` settings apply as they would to ``lightbox serve``, except those
    that make no sense without a network: API keys, a writer to forward to, the start-up warm-up, and
    the background index keeper (an explicit ``optimize`` still builds and tunes indexes).
    ``storage_options`` add to the configured ones and win over them (as ``--storage-option`` does).
    """
    from lightbox.client import Client
    from lightbox.extras import need

    need("app.main", "server", "a data root served in this process")
    from app.main import create_app
    from app.settings import Settings

    overrides: dict[str, Any] = {"uri": uri, "api_keys": None, "writer_url": None, "warm_on_start": False,
                                 "background_indexing": False, **settings}
    app = create_app(Settings(**overrides).with_storage_options(storage_options))
    return Client("http://lightbox.local", api_key=api_key, retries=0,
                  transport=InProcessTransport(AppThread(app)))


class AppError(Exception):
    """What the app in this process raised behind a 5xx answer, as one redacted line: the ``__cause__``
    of the SDK's ``ServerError`` (a server would have logged it; here the caller is the one to tell)."""


class _BodyStream(httpx.SyncByteStream):
    def __init__(self, transport: InProcessTransport, queue: asyncio.Queue[Message | BaseException],
                 task: Future[None]) -> None:
        self.transport, self.queue, self.task = transport, queue, task
        self.failed: dict[str, Any] | None = None  # a 5xx answer's extensions

    def __iter__(self) -> Iterator[bytes]:
        while True:
            message = self.transport._next(self.queue)
            if message["type"] == "lightbox.end":
                return
            if message["type"] == "http.response.body":
                if message.get("body"):
                    yield bytes(message["body"])
                if not message.get("more_body", False):
                    if self.failed is not None:
                        self._keep_app_error(self.failed)
                    return

    def _keep_app_error(self, extensions: dict[str, Any]) -> None:
        """After a 5xx, the app raises what it answered for (Starlette's server-error middleware does):
        keep it in the response's extensions, its message redacted as the service's log would be."""
        while True:
            item = self.transport.app.run(self.queue.get())
            if isinstance(item, BaseException):
                error = AppError(_redacted(self.transport.app.app, f"{type(item).__name__}: {item}"))
                error.__cause__ = item
                extensions[APP_ERROR] = error
            elif item.get("type") == "lightbox.end":
                return

    def close(self) -> None:
        if not self.task.done():
            self.task.cancel()


def _redacted(app: Any, text: str) -> str:
    from app.storage import redact

    return redact(text, getattr(getattr(app, "state", None), "storage_options", None))


def _scope(request: httpx.Request) -> Scope:
    url = request.url
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
        "scheme": url.scheme, "path": url.path, "raw_path": url.raw_path.split(b"?", 1)[0],
        "query_string": url.query, "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.headers.raw],
        "client": ("127.0.0.1", 0), "server": (url.host or "lightbox.local", url.port or 80),
    }
