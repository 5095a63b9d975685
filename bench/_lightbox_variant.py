"""Lightbox with one experimental change to the image request path, for bench/http.py.

app/ is not edited: the variant is ``app.main.create_app`` plus FastAPI dependency overrides and,
for some variants, an image route placed before the stock one. Served with exactly the same
``uvicorn.run`` call as ``lightbox serve``.

Variants:

- ``stock``: create_app unchanged (a control: must match ``lightbox serve``): the image fast path
  (app.fast_image) answers before FastAPI routes.
- ``production``: ``stock`` with what production turns on: API keys (requests send ``BENCH_KEY``)
  and the JSON access log (metrics, request ids and body limits are always on).
- ``routed``: ``production`` without the fast path: the FastAPI route answers every image (so do all
  the variants below, which change that route).
- ``async-deps``: the three shared dependencies of app/deps.py (store, reader, ref) as
  ``async def``, for every route. FastAPI runs a plain ``def`` dependency in the threadpool, so
  the stock image route makes four threadpool hops per request (three dependencies and the
  handler); this leaves one (the handler).
- ``one-hop``: async dependencies and an ``async def`` handler that does the whole lookup and blob
  read in one ``anyio.to_thread.run_sync`` call (one hop; the event loop is never blocked).
- ``inline``: async dependencies and an ``async def`` handler that reads the blob inline on the
  event loop (no hop; a sub-millisecond read blocks the loop, like the LMDB anchor does).
- ``lean``: an ``async def`` image route that takes only the path and the ``Request`` (the ref is
  parsed from ``request.query_params`` with ``Ref.parse``, the store and reader come from
  ``app.state``): no dependencies or query-parameter models for FastAPI to solve, no hop.
- ``lean-pread``: ``lean`` plus a per-snapshot map id -> (data file, offset, size) built from the
  blob descriptions (``kind == 0``: bytes packed inline in the fragment's data file), so an image
  is one ``os.pread`` on a cached descriptor instead of ``read_blobs``. Experimental: it relies
  on the blob-v2 layout of pylance 14 and on a local store; anything else falls back.
- ``lean-batch``: ``lean``, but concurrent image reads are coalesced: each request parks a future,
  and one callback per event-loop turn reads every parked id of a snapshot with a single
  ``read_blobs(ids=[...], preserve_order=True)`` call (public Lance API only). One request alone
  costs what ``lean`` costs; under concurrency Lance's per-call overhead is shared.
"""

# No ``from __future__ import annotations`` here: FastAPI must resolve the annotations of the
# handlers and dependencies defined inside ``build`` from its local imports.
import argparse
from collections.abc import Sequence
from typing import Annotated, Any

VARIANTS = ("stock", "production", "routed", "async-deps", "one-hop", "inline", "lean", "lean-pread", "lean-batch")
BENCH_KEY = "bench-key"
PRODUCTION = {"LIGHTBOX_API_KEYS": BENCH_KEY, "LIGHTBOX_ACCESS_LOG": "json"}  # what production turns on


def _patch_deps() -> None:
    """Make the three shared dependencies ``async def`` *before* the routes import them.

    (FastAPI's ``dependency_overrides`` would not do: with any override set, FastAPI rebuilds
    every dependant's signature model on every request, which costs more than it saves.)
    """
    from fastapi import Depends, Query, Request

    from app import deps
    from app.store import Ref, RowReader, Store

    async def get_store(request: Request) -> Store:
        return request.app.state.store  # type: ignore[no-any-return]

    async def get_reader(request: Request) -> RowReader:
        return request.app.state.reader  # type: ignore[no-any-return]

    async def get_ref(
        version: Annotated[str | None, Query(description="a version number")] = None,
        tag: Annotated[str | None, Query(description="a tag name")] = None,
        branch: Annotated[str | None, Query(description="a branch name (its latest version)")] = None,
        as_of: Annotated[str | None, Query(description="RFC 3339: the newest version at or before it")] = None,
    ) -> Ref:
        return Ref.parse(version=version, tag=tag, branch=branch, as_of=as_of)

    deps.get_store, deps.get_reader, deps.get_ref = get_store, get_reader, get_ref  # type: ignore[assignment]
    deps.StoreDep = Annotated[Store, Depends(get_store)]  # type: ignore[misc]
    deps.ReaderDep = Annotated[RowReader, Depends(get_reader)]  # type: ignore[misc]
    deps.RefDep = Annotated[Ref, Depends(get_ref)]  # type: ignore[misc]


def build(uri: str, variant: str) -> Any:
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    import sys

    if variant != "stock":
        if "app.routes.rows" in sys.modules:
            raise RuntimeError("app.deps must be patched before the routes are imported")
        _patch_deps()

    from anyio import to_thread
    from fastapi import APIRouter, Request
    from fastapi.responses import Response

    from app.deps import ReaderDep, RefDep, StoreDep
    from app.fast_image import FastImage
    from app.main import create_app
    from app.responses import version_headers
    from app.routes import rows
    from app.settings import Settings
    from app.store import Ref, RowReader, Store

    production = {k.removeprefix("LIGHTBOX_").lower(): v for k, v in PRODUCTION.items()}
    app = create_app(Settings(uri=uri, **(production if variant in ("production", "routed") else {})))
    if variant in ("stock", "production"):
        return app
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastImage]  # the route answers
    if variant in ("routed", "async-deps"):
        return app
    if variant in ("lean", "lean-pread", "lean-batch"):
        return _add_lean_route(app, pread=variant == "lean-pread", batch=variant == "lean-batch")

    def serve(table: str, row_id: str, request: Request, store: Store, reader: RowReader, ref: Ref) -> Response:
        """The body of app.routes.rows.get_image, unchanged."""
        snap = store.snapshot(table, ref)
        image = reader.image_ref(snap, row_id)
        headers = {**version_headers(snap), "ETag": f'"{image.sha256}"',
                   "Cache-Control": rows.IMMUTABLE if ref.pinned else "no-cache", "Accept-Ranges": "bytes"}
        if rows.etag_matches(request.headers.get("if-none-match"), image.sha256):
            return Response(status_code=304, headers=headers)
        wanted = rows._parse_range(request.headers.get("range"), image.size)
        if wanted is None:
            return Response(reader.image_bytes(snap, image), media_type=image.mime, headers=headers)
        start, end = wanted
        headers["Content-Range"] = f"bytes {start}-{end}/{image.size}"
        return Response(reader.image_range(snap, image, start, end - start + 1), status_code=206,
                        media_type=image.mime, headers=headers)

    router = APIRouter(prefix="/api/v1/tables/{table}/rows")
    if variant == "one-hop":
        @router.get("/{row_id:path}/image")
        async def get_image_one_hop(table: str, row_id: str, request: Request, store: StoreDep, reader: ReaderDep,
                                    ref: RefDep) -> Response:
            return await to_thread.run_sync(serve, table, row_id, request, store, reader, ref)
    else:
        @router.get("/{row_id:path}/image")
        async def get_image_inline(table: str, row_id: str, request: Request, store: StoreDep, reader: ReaderDep,
                                   ref: RefDep) -> Response:
            return serve(table, row_id, request, store, reader, ref)

    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added  # matched before the stock image route
    return app


class _BlobLocations:
    """id -> (path of the data file, offset, size) of inline (kind 0) blobs, per snapshot."""

    def __init__(self) -> None:
        import threading

        self._maps: dict[tuple[str, str | None, int], dict[str, tuple[str, int, int]]] = {}
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def lookup(self, snap: Any, key: str) -> tuple[int, int, int] | None:
        found = self._maps.get(snap.key)
        if found is None:
            found = self._build(snap._ds)
            with self._lock:
                self._maps[snap.key] = found
        where = found.get(key)
        if where is None:
            return None
        path, offset, size = where
        fd = self._fds.get(path)
        if fd is None:
            import os

            fd = os.open(path, os.O_RDONLY)
            with self._lock:
                self._fds[path] = fd
        return fd, offset, size

    @staticmethod
    def _build(ds: Any) -> dict[str, tuple[str, int, int]]:
        import os

        uri = ds.uri.removeprefix("file://")
        if "://" in uri:
            return {}
        field_id = next(f.id() for f in ds.lance_schema.fields() if f.name() == "image")
        files = {}
        for frag in ds.get_fragments():
            paths = [d.path for d in frag.data_files() if field_id in d.fields]
            if len(paths) == 1:
                files[frag.fragment_id] = os.path.join(uri, "data", paths[0])
        table = ds.to_table(columns=["id", "image"], with_row_address=True)
        out = {}
        for key, desc, addr in zip(table.column("id").to_pylist(), table.column("image").to_pylist(),
                                   table.column("_rowaddr").to_pylist(), strict=True):
            path = files.get(addr >> 32)
            if desc is not None and desc["kind"] == 0 and path is not None:
                out[key] = (path, int(desc["position"]), int(desc["size"]))
        return out


class _Coalescer:
    """Reads the blobs of every request parked during one event-loop turn with one call per snapshot."""

    def __init__(self) -> None:
        self._pending: dict[Any, tuple[Any, list[tuple[int, Any]]]] = {}
        self._scheduled = False
        self.calls = 0
        self.blobs = 0

    async def read(self, snap: Any, row_id: int) -> bytes:
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.setdefault(snap.key, (snap, []))[1].append((row_id, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future  # type: ignore[no-any-return]

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for snap, waiting in pending.values():
            wanted = list(dict.fromkeys(row_id for row_id, _ in waiting))
            try:
                found = snap._ds.read_blobs("image", ids=wanted, preserve_order=True)
                by_id = {row_id: data or b"" for row_id, (_, data) in zip(wanted, found, strict=True)}
            except Exception as exc:
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.calls += 1
            self.blobs += len(wanted)
            for row_id, future in waiting:
                if not future.done():
                    future.set_result(by_id[row_id])


def _add_lean_route(app: Any, *, pread: bool, batch: bool = False) -> Any:
    import os

    from fastapi import APIRouter, Request
    from fastapi.responses import Response

    from app.responses import version_headers
    from app.routes import rows
    from app.store import Ref

    locations = _BlobLocations() if pread else None
    coalescer = _Coalescer() if batch else None
    router = APIRouter(prefix="/api/v1/tables/{table}/rows")

    @router.get("/{row_id:path}/image")
    async def get_image_lean(table: str, row_id: str, request: Request) -> Response:
        q = request.query_params
        ref = Ref.parse(version=q.get("version"), tag=q.get("tag"), branch=q.get("branch"), as_of=q.get("as_of"))
        state = request.app.state
        snap = state.store.snapshot(table, ref)
        image = state.reader.image_ref(snap, row_id)
        headers = {**version_headers(snap), "ETag": f'"{image.sha256}"',
                   "Cache-Control": rows.IMMUTABLE if ref.pinned else "no-cache", "Accept-Ranges": "bytes"}
        if rows.etag_matches(request.headers.get("if-none-match"), image.sha256):
            return Response(status_code=304, headers=headers)
        wanted = rows._parse_range(request.headers.get("range"), image.size)
        if wanted is None:
            where = locations.lookup(snap, row_id) if locations is not None else None
            if where is not None:
                body = os.pread(where[0], where[2], where[1])
            elif coalescer is not None:
                body = await coalescer.read(snap, image.row_id)
            else:
                body = state.reader.image_bytes(snap, image)
            return Response(body, media_type=image.mime, headers=headers)
        start, end = wanted
        headers["Content-Range"] = f"bytes {start}-{end}/{image.size}"
        return Response(state.reader.image_range(snap, image, start, end - start + 1), status_code=206,
                        media_type=image.mime, headers=headers)

    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    args = parser.parse_args(argv)
    import os

    import uvicorn

    os.environ.setdefault("LANCE_LOG", "error")
    uvicorn.run(build(args.uri, args.variant), host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
