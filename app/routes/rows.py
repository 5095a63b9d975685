"""``/api/v1/tables/{t}/rows/{id}``: one row as JSON, and its original image bytes.

Ids may contain ``/`` (``train/3/00012.png``), so the image route is declared before the row
route and both take the id as a path. Every route checks the id against the one id rule
(``app.store.ids``): a ``..`` segment is a 422 here, never a walk up to a table route. The SDK sends an
id as one segment (``/`` as ``%2F``); the server routes on the decoded path, so a suffix route also
looks at the raw path: ``rows/x%2Fimage`` is the row ``x/image``, ``rows/x/image`` is row ``x``'s image.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from app.deps import ReaderDep, RefDep, StoreDep
from app.errors import InvalidRange
from app.responses import JSON, ref_query, version_headers
from app.services import arrays, pixels
from app.store import ImageRef, Ref, Snapshot
from app.store.ids import check_id

router = APIRouter(prefix="/api/v1/tables/{table}/rows", tags=["rows"])
REF_PARAMETERS = [
    {"name": name, "in": "query", "required": False, "schema": {"type": kind}, "description": text}
    for name, kind, text in (("version", "integer", "a version number"), ("tag", "string", "a tag name"),
                             ("branch", "string", "a branch name (its latest version)"),
                             ("as_of", "string", "RFC 3339: the newest version at or before it"))
]
RESIZE_PARAMETERS = [
    {"name": "width", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 4096},
     "description": "resize to fit this width (aspect ratio kept, never enlarged)"},
    {"name": "height", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 4096},
     "description": "resize to fit this height"},
    {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["jpeg", "png", "webp"]},
     "description": "re-encode as this format"},
]
IMMUTABLE = "public, max-age=31536000, immutable"


@router.get("/{row_id:path}/image", openapi_extra={"parameters": REF_PARAMETERS + RESIZE_PARAMETERS})
async def get_image(table: str, row_id: str, request: Request) -> Response:
    """The hottest route, kept lean: ``async`` (a cached snapshot and id index, a 304, or one ``pread``
    of a small inline image take microseconds, less than a threadpool hop; what may block goes to the
    pool), and the ref read from the query string directly rather than through dependency solving
    (together measured at about half of the request's CPU)."""
    state = request.app.state
    store, reader = state.store, state.reader
    query = request.query_params
    ref = Ref.parse(version=query.get("version"), tag=query.get("tag"), branch=query.get("branch"),
                    as_of=query.get("as_of"))
    if not _literal_suffix(request, "image"):
        return await run_in_threadpool(get_row, table, f"{row_id}/image", store, reader, ref)
    check_id(row_id)
    snap = store.snapshot(table, ref)
    if reader.cached_index(snap) is None:
        await run_in_threadpool(reader.index, snap)
    image = reader.image_ref(snap, row_id)
    if "width" in query or "height" in query or "format" in query:
        resize = pixels.resize_request(query.get("width"), query.get("height"), query.get("format"))
        return await run_in_threadpool(_resized, request, snap, image, resize, ref.pinned)
    headers = image_headers(snap, image, ref.pinned)
    if etag_matches(request.headers.get("if-none-match"), image.sha256):
        return Response(status_code=304, headers=headers)
    wanted = _parse_range(request.headers.get("range"), image.size)
    if wanted is None:
        body = reader.inline_bytes(snap, image)
        if body is None:
            body = await run_in_threadpool(reader.image_bytes, snap, image)
        return Response(body, media_type=image.mime, headers=headers)
    start, end = wanted
    body = await run_in_threadpool(reader.image_range, snap, image, start, end - start + 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{image.size}"
    return Response(body, status_code=206, media_type=image.mime, headers=headers)


def image_headers(snap: Snapshot, image: ImageRef, pinned: bool) -> dict[str, str]:
    """What every answer of the image route carries (``app.fast_image`` sends the same)."""
    return {
        **version_headers(snap),
        "ETag": f'"{image.sha256}"',
        "Cache-Control": IMMUTABLE if pinned else "no-cache",
        "Accept-Ranges": "bytes",
    }


def _resized(request: Request, snap: Snapshot, image: ImageRef, resize: tuple[Any, ...], pinned: bool) -> Response:
    """``?width=&height=&format=``: rendered once per content and size, like thumbnails."""
    width, height, fmt = resize
    tag = f"{image.sha256}-{width or ''}x{height or ''}-{fmt or 'auto'}"
    headers = {**version_headers(snap), "ETag": f'"{tag}"', "Cache-Control": IMMUTABLE if pinned else "no-cache"}
    if etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    state = request.app.state
    rendered = state.thumbnails.rendered(("resize", image.sha256, width, height, fmt), lambda: pixels.render_resized(
        state.reader.image_bytes(snap, image), image.mime, width, height, fmt, state.decode_budget))
    return Response(rendered[0], media_type=rendered[1], headers=headers)


@router.get("/{row_id:path}/array")
def get_array(table: str, row_id: str, request: Request, store: StoreDep, reader: ReaderDep, ref: RefDep,
              frame: Annotated[int | None, Query(ge=0, le=2**31 - 1,
                                                 description="one frame or page (0-based); default: all")] = None
              ) -> Response:
    """The pixels as ``.npy`` (dtype and shape kept), streamed a frame at a time; capped in bytes."""
    if not _literal_suffix(request, "array"):
        return get_row(table, f"{row_id}/array", store, reader, ref)
    check_id(row_id)
    snap = store.snapshot(table, ref)
    image = reader.image_ref(snap, row_id)
    state = request.app.state
    plan = arrays.plan_array(reader.image_bytes(snap, image), image.mime, frame, state.settings.max_array_bytes)
    body = arrays.stream_array(plan, state.decode_budget, state.settings.max_array_bytes)
    first = next(body)  # the budget, the frames' modes and the first frame: errors are still answers here
    headers = {**version_headers(snap), "X-Lightbox-Dtype": str(plan.dtype),
               "X-Lightbox-Shape": ",".join(map(str, plan.shape)), "Content-Length": str(len(first) + plan.nbytes)}
    return StreamingResponse(itertools.chain([first], body), media_type="application/x-npy", headers=headers)


@router.get("/{row_id:path}/thumbnail")
def get_thumbnail(table: str, row_id: str, request: Request, store: StoreDep, reader: ReaderDep, ref: RefDep,
                  size: Annotated[int, Query()] = 256,
                  format: Annotated[pixels.ThumbFormat | None, Query()] = None) -> Response:
    if not _literal_suffix(request, "thumbnail"):
        return get_row(table, f"{row_id}/thumbnail", store, reader, ref)
    check_id(row_id)
    snap = store.snapshot(table, ref)
    image = reader.image_ref(snap, row_id)
    pixels.check_size(size)
    etag = f'"{image.sha256}-{size}-{format or "auto"}"'
    headers = {**version_headers(snap), "ETag": etag, "Cache-Control": IMMUTABLE if ref.pinned else "no-cache"}
    if etag_matches(request.headers.get("if-none-match"), etag.strip('"')):
        return Response(status_code=304, headers=headers)
    data, mime = request.app.state.thumbnailer.get(snap, image, size, format)
    return Response(data, media_type=mime, headers=headers)


@router.get("/{row_id:path}")
def get_row(table: str, row_id: str, store: StoreDep, reader: ReaderDep, ref: RefDep) -> JSON:
    check_id(row_id)
    snap = store.snapshot(table, ref)
    row = reader.row(snap, row_id)
    if "image" in snap.schema.names:
        row["image_url"] = f"/api/v1/tables/{quote(table)}/rows/{quote(row_id)}/image{ref_query(ref)}"
    return JSON(row, headers=version_headers(snap))


def _literal_suffix(request: Request, suffix: str) -> bool:
    """Whether the path really ends in ``/suffix``, not in an id whose encoded ``%2F`` decoded to one."""
    raw = request.scope.get("raw_path")
    return raw is None or raw.partition(b"?")[0].endswith(b"/" + suffix.encode())


def etag_matches(header: str | None, digest: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    return "*" in tags or digest in tags


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as inclusive (start, end); None serves the whole body.

    Several ranges, or a header that is not a byte range, are ignored (RFC 9110 allows it);
    a well-formed range that lies outside the image is a 416.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            if not last:
                return None
            length = int(last)
            if length <= 0:
                raise InvalidRange("empty suffix range", size=size)
            return max(0, size - length), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        raise InvalidRange(f"range {header[6:]} is outside the image of {size} bytes", size=size)
    return start, min(end, size - 1)
