"""``create_app(settings)``: the one place the service is assembled.

Nothing connects at import time. The lifespan opens the store once; handlers reach it through
``app.deps``. Every error, ours or the framework's, leaves as one JSON shape.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pyarrow.lib import ArrowException
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app import lancedb_compat
from app.arrow_pool import ArrowPool
from app.auth import ApiKeys, RequireKey
from app.blas import BlasThreads
from app.errors import LightboxError, StorageFailed, StoreUnreachable
from app.fast_image import FastImage
from app.fast_search import FastSearch
from app.heap import HeapKeeper
from app.idempotency import Idempotency
from app.metrics import CLIENT_CLOSED, Metrics, Observe
from app.middleware import BodyLimits, RequestId
from app.models import request_error
from app.openapi import declare_responses
from app.replica import ForwardWrites, open_reads_warning, writer_client
from app.responses import JSON
from app.routes import annotations as annotation_routes
from app.routes import branches, health, history, indexes, query, rows, search, tables, ui, uploads, writes
from app.routes import curate as curate_routes
from app.routes import export as export_routes
from app.routes import metrics as metrics_routes
from app.routes import thumbnails as thumbnail_routes
from app.routes import views as view_routes
from app.services.budget import MemoryBudget
from app.services.pixels import ThumbnailCache
from app.services.search import Searcher
from app.services.thumbnails import Thumbnails
from app.services.uploads import Uploads
from app.settings import Settings
from app.storage import hide_secrets, redact_body, storage_failure
from app.store import RowReader, Store
from app.store.outage import unreachable
from app.store.thumbnails import ThumbnailFiles
from app.store.vectors import IndexKeeper
from embeddings.registry import Registry

log = logging.getLogger("lightbox")

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    os.environ.setdefault("LANCE_LOG", "error")
    storage_options = settings.resolved_storage_options()
    hide_secrets(storage_options)
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")  # index stats without the centroids

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        heap = HeapKeeper(settings.malloc_arena_max, settings.heap_trim_seconds).start()
        blas = BlasThreads(settings.blas_threads).start()
        pool = ArrowPool(settings.arrow_memory_pool).start()
        app.state.store = Store(settings.uri, storage_options=storage_options or None,
                                refresh_seconds=settings.latest_refresh_seconds, cache_size=settings.handle_cache_size,
                                index_cache_bytes=settings.index_cache_bytes,
                                metadata_cache_bytes=settings.metadata_cache_bytes)
        app.state.reader = RowReader(cache_size=settings.id_index_cache_size,
                                     cache_bytes=settings.id_index_cache_bytes)
        app.state.thumbnails = ThumbnailCache(settings.thumbnail_cache_bytes)
        kept = ThumbnailFiles(app.state.store, writable=not settings.writer_url)  # a replica writes nothing
        app.state.thumbnailer = Thumbnails(app.state.thumbnails, kept, app.state.reader, app.state.decode_budget)
        if settings.warm_on_start:
            await warm_routes(app)
            threading.Thread(target=warm, args=(app.state.store, app.state.reader), daemon=True,
                             name="lightbox-warm").start()
        app.state.registry = Registry()
        keeper = IndexKeeper(app.state.store, min_rows=settings.index_min_rows,
                             recall_target=settings.recall_target, sample=settings.recall_sample,
                             delay=settings.index_quiet_seconds, max_wait=settings.index_max_wait_seconds,
                             budget=settings.index_memory_bytes, flat_limit=settings.flat_index_max_bytes,
                             cache_limit=settings.quantized_index_cache_bytes,
                             resident=settings.resident_index_bytes)
        if not settings.writer_url and settings.background_indexing:  # a read replica never commits
            app.state.store.on_change(keeper.notify)  # every local write queues a background fold
            keeper.start()
        app.state.searcher = Searcher(app.state.store, app.state.reader, app.state.registry, keeper)
        app.state.uploads = Uploads(app.state.store, app.state.registry, settings.upload_ttl_seconds,
                                    settings.max_upload_bytes, settings.upload_stage_bytes)
        if not settings.writer_url:  # a replica forwards uploads: it has none of its own to clean up
            app.state.uploads.sweep_in_background()
        app.state.store.on_forget(app.state.reader.forget)  # free a dropped table's memory (and files) at once
        app.state.store.on_forget(app.state.thumbnailer.files.forget)
        app.state.store.on_forget(app.state.metrics.forget_table)  # and its /metrics series
        try:
            async with writer_client(settings.writer_url, settings.writer_timeout_seconds) as app.state.writer:
                warning = await open_reads_warning(app.state.writer, bool(settings.api_keys))
                app.state.warnings = [warning] if warning else []
                # what start-up made (the libraries, the app, its routes and models) lives as long as the
                # service: out of the collector's sight, a full collection scans only what requests
                # make (one took 48 ms under search load, a request's p99)
                gc.freeze()
                yield
        finally:
            app.state.uploads.close()
            keeper.close()
            heap.close()
            blas.close()
            pool.close()

    app = FastAPI(title="Lightbox", version="0.1.0", lifespan=lifespan, default_response_class=JSON,
                  description="Versioned image tables on Lance.", docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.storage_options = storage_options
    app.state.decode_budget = MemoryBudget(settings.decode_budget_bytes, settings.decode_wait_seconds)
    for module in (rows, health, uploads, tables, history, branches, query, search, indexes, writes):  # hottest first
        app.include_router(module.router)
    app.include_router(export_routes.router)
    app.include_router(annotation_routes.router)
    app.include_router(curate_routes.router)
    app.include_router(view_routes.router)
    app.include_router(thumbnail_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(lancedb_compat.router)
    ui.install(app)  # the gallery at / and the offline /docs, /redoc
    declare_responses(app)
    _install_error_handlers(app)
    image_route = next(r for r in rows.router.routes if getattr(r, "endpoint", None) is rows.get_image)
    app.add_middleware(FastImage, route=image_route)  # innermost: only the router is skipped
    search_route = next(r for r in search.router.routes if getattr(r, "endpoint", None) is search.search)
    app.add_middleware(FastSearch, route=search_route)  # the same for vector searches
    if settings.writer_url:  # a read replica: writes go to the one writer
        app.add_middleware(ForwardWrites)
    elif settings.idempotency_seconds > 0:  # the writer remembers what it answered to an Idempotency-Key
        app.add_middleware(Idempotency, ttl_seconds=settings.idempotency_seconds)
    keys = ApiKeys.parse(settings.api_keys)
    if keys is not None:
        app.add_middleware(RequireKey, keys=keys)
    app.add_middleware(BodyLimits, json_bytes=settings.max_json_bytes, upload_bytes=settings.max_upload_bytes,
                       idle_seconds=settings.body_timeout_seconds)
    app.add_middleware(RequestId)
    app.state.metrics = Metrics(app.state)
    app.add_middleware(Observe, public_metrics=settings.metrics_public, access_log=settings.access_log)
    return app


async def warm_routes(app: FastAPI) -> None:
    """Build the router's matching state now rather than on the first request that needs it.

    FastAPI builds each included router's route contexts the first time a request is matched against
    them: about 0.16 s for this app's routes on this machine, and 0.3 s under load, paid by a cold
    server's first page (the gallery's ``index.html``, whose route comes last). One request that matches
    no route walks them all; it goes straight to the router (no middleware: not logged, not counted)."""
    path = "/_lightbox/warm-routes"
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
             "server": None, "client": None}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    try:
        await app.router(scope, receive, send)  # a 404 (no "app" in the scope: answered, not raised)
    except Exception:  # a warm-up that fails leaves the work to the first request
        log.warning("could not warm the router", exc_info=True)


def warm(store: Store, reader: RowReader) -> None:
    """Fill the caches a first request would otherwise pay for (version log pages, id maps of latest).

    Runs on a background thread at start-up; anything it cannot read is left for the request to report.
    Nothing escapes it: a thread's uncaught traceback is printed raw, bypassing the log's redaction of
    credentials (an object store's error quotes its endpoint URL, password included).
    """
    from app.services.history import list_versions

    try:
        names = store.names()
    except Exception:
        log.warning("could not list the tables to warm", exc_info=True)
        return
    for name in names:
        try:
            list_versions(store, name, limit=100)
            reader.index(store.snapshot(name))
            store.changed(name)  # vector indexes: built, folded or tuned in the background
        except Exception:  # a broken table must not stop the others from warming
            log.warning("could not warm table %s", name, exc_info=True)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LightboxError)
    async def lightbox_error(request: Request, exc: LightboxError) -> JSON:
        told = _storage_error(request, exc)  # e.g. "no such table" where the store said "no such bucket"
        if told is not None:
            return told
        exc = unreachable(exc) or exc  # a 404/409 made from an engine error may hide a store that did not answer
        body = redact_body(exc.body(), request.app.state.storage_options)  # engine messages may quote options
        return JSON(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSON:
        error = request_error(list(exc.errors()))  # 422 for unknown body fields, else 400
        return JSON(error.body(), status_code=error.status)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: Exception) -> Response:
        """The client closed the connection before its request was read: nobody to answer, no server error."""
        log.info("client disconnected during %s %s; request dropped", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, ClientDisconnect):  # FastAPI reports a body cut short as a 400
            return await client_gone(request, exc.__cause__)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        body = {"error": {"code": code, "message": str(exc.detail), "detail": {}}}
        return JSON(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def engine_error(request: Request, exc: Exception) -> JSON:
        """An engine error no service translated: a 503 when the object store did not answer, a 502 when
        it refused (no such bucket, credentials). Anything else is a bug, passed on to the last handler (a
        logged 500). Registered by class, not as the catch-all, because the catch-all's middleware
        re-raises and uvicorn then drops the connection."""
        told = _storage_error(request, exc)
        if told is not None:
            return told
        outage = unreachable(exc)
        if outage is None:
            raise exc
        log.warning("%s %s: %s", request.method, request.url.path, outage.detail.get("reason"))
        return await lightbox_error(request, outage)

    for kind in (ValueError, OSError, RuntimeError, ArrowException):
        app.add_exception_handler(kind, engine_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSON:
        failure = storage_failure(exc, request.app.state.settings.uri)
        if failure is not None:  # the object store's answer (or its silence), told in one line
            kind = StoreUnreachable if failure.unreachable else StorageFailed
            log.warning("%s %s: %s", request.method, request.url.path, failure.message)
            return await lightbox_error(request, kind(failure.message, kind=failure.kind))
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = {"error": {"code": "internal_error", "message": "internal error; see the server log", "detail": {}}}
        return JSON(body, status_code=500)


def _storage_error(request: Request, exc: Exception) -> JSON | None:
    """The answer for an error whose cause (along the ``raise ... from`` chain) is the object store's
    failure, told in one line; ``None`` for any other error."""
    failure = storage_failure(exc, request.app.state.settings.uri)
    if failure is None:
        return None
    error = (StoreUnreachable if failure.unreachable else StorageFailed)(failure.message, kind=failure.kind)
    body = redact_body(error.body(), request.app.state.storage_options)
    log.warning("%s %s: %s", request.method, request.url.path, body["error"]["message"])
    return JSON(body, status_code=error.status, headers=error.headers)
