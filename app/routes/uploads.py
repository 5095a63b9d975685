"""Uploads: ``POST /rows`` (one request, one version) and upload sessions (many batches, one version).

A session: ``POST .../uploads`` begins it (its options: mode, dedup, branch, embed, message, author,
tag), ``POST .../uploads/{id}/batches`` sends rows (an Arrow IPC stream, or multipart files) and
answers what was accepted and what was skipped with why, ``POST .../uploads/{id}/commit`` publishes
every batch as one version, ``DELETE .../uploads/{id}`` drops it, ``GET .../uploads/{id}`` shows its
state. Nothing of a session is visible before its commit. The handlers parse and render; the
use case is ``app.services.uploads``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import pyarrow as pa
from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool

from app.bodies import read_body, takes_upload, upload_limit
from app.deps import StoreDep
from app.errors import BadRequest, PayloadTooLarge, TableNotFound, UnsupportedMediaType
from app.models import RequestBody
from app.responses import ARROW_STREAM, JSON
from app.services.uploads import (
    UploadOptions,
    Uploads,
    add_images,
    arrow_rows,
    files_table,
    meta_for,
    refuse_nothing_written,
)
from app.services.writes import append_rows
from app.store.schema import check_image_bytes

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["writes"])
ARROW_ROWS = "lightbox.arrow_rows"  # the scope extension of an in-process client (``lightbox._inprocess``)
OPTIONS = ("mode", "dedup", "message", "author", "tag", "branch")


@router.post("/rows", status_code=201)
@takes_upload
async def add_rows(table: str, request: Request, store: StoreDep) -> JSON:
    if not store.exists(table):
        raise TableNotFound(f"table {table!r} does not exist; create it with POST /api/v1/tables", table=table)
    options = {k: v for k, v in request.query_params.items() if k in OPTIONS}
    rows, form_options = await _rows(request)
    options.update(form_options)
    if "image" not in rows.column_names:  # plain rows for a table that is not an image table
        out = await run_in_threadpool(append_rows, store, table, rows, mode=options.get("mode", "insert"),
                                      branch=options.get("branch"), message=options.get("message"),
                                      author=options.get("author"), tag=options.get("tag"))
        return JSON(out, status_code=201)
    opts = UploadOptions.parse(options)
    report = await run_in_threadpool(add_images, store, request.app.state.registry, table, rows, opts)
    request.app.state.metrics.ingested(table, report["inserted"] + report["updated"], len(report["skipped"]))
    refuse_nothing_written(report)
    return JSON(report, status_code=201)


class UploadBegin(RequestBody):
    """The options of an upload session, fixed for all its batches."""

    mode: Literal["insert", "upsert"] = "insert"
    dedup: Literal["id", "content", "none"] = "id"
    branch: str | None = None
    embed: str | None = None
    embed_text: str | None = None
    message: str | None = None
    author: str | None = None
    tag: str | None = None
    verify: Literal["header", "decode"] = "header"
    max_pixels: int | None = None


@router.post("/uploads", status_code=201)
def begin_upload(table: str, request: Request, body: Annotated[UploadBegin | None, Body()] = None) -> JSON:
    opts = UploadOptions.parse((body or UploadBegin()).model_dump(exclude_none=True))
    return JSON(_uploads(request).begin(table, opts), status_code=201)


@router.get("/uploads/{upload_id}")
def upload_state(table: str, upload_id: str, request: Request) -> JSON:
    return JSON(_uploads(request).state(table, upload_id))


@router.post("/uploads/{upload_id}/batches")
@takes_upload
async def upload_batch(table: str, upload_id: str, request: Request) -> JSON:
    uploads = _uploads(request)
    await run_in_threadpool(uploads.get, table, upload_id)  # a 404 before the body is read
    rows, _ = await _rows(request)
    report = await run_in_threadpool(uploads.add, table, upload_id, rows)
    request.app.state.metrics.ingested(table, report["accepted"], len(report["skipped"]))
    return JSON(report)


class UploadCommit(RequestBody):
    tag: str | None = None  # tag the new version so (instead of, or besides giving, the session's tag)


@router.post("/uploads/{upload_id}/commit", status_code=201)
def commit_upload(table: str, upload_id: str, request: Request,
                  body: Annotated[UploadCommit | None, Body()] = None) -> JSON:
    return JSON(_uploads(request).commit(table, upload_id, (body or UploadCommit()).tag), status_code=201)


@router.delete("/uploads/{upload_id}")
def abort_upload(table: str, upload_id: str, request: Request) -> JSON:
    return JSON(_uploads(request).abort(table, upload_id))


def _uploads(request: Request) -> Uploads:
    return request.app.state.uploads  # type: ignore[no-any-return]


async def _rows(request: Request) -> tuple[pa.Table, dict[str, str]]:
    """The rows a request carries (an Arrow IPC stream, or multipart files and a metadata part), and the
    options a multipart form names. A client in this process (``lightbox.connect(root)``) hands its Arrow
    rows over as they are, in the ASGI scope: nothing to serialize and parse again."""
    handed = request.scope.get("extensions", {}).get(ARROW_ROWS)
    if isinstance(handed, pa.RecordBatch | pa.Table):
        rows = handed if isinstance(handed, pa.Table) else pa.Table.from_batches([handed])
        check_image_bytes(rows)
        return rows, {}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        files, options = await _multipart(request, upload_limit(request))
        return files_table(files), options
    if content_type.startswith(ARROW_STREAM):
        rows = arrow_rows(await read_body(request))
        check_image_bytes(rows)
        return rows, {}
    raise UnsupportedMediaType("send images as multipart/form-data or rows as " + ARROW_STREAM)


async def _multipart(request: Request, limit: int) -> tuple[list[tuple[str, bytes, dict[str, Any]]], dict[str, str]]:
    form = await request.form(max_files=10_000, max_fields=100)
    uploads: list[tuple[str, bytes]] = []
    options: dict[str, str] = {}
    metadata: Any = None
    total = 0
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            data = await value.read()
            total += len(data)
            if total > limit:
                raise PayloadTooLarge(f"upload exceeds the limit of {limit} bytes", limit=limit)
            uploads.append((value.filename or key, data))
        elif key == "metadata":
            try:
                metadata = json.loads(value)
            except ValueError as exc:
                raise BadRequest(f"the metadata part is not JSON: {exc}") from exc
        elif key in OPTIONS:
            options[key] = value
    if not uploads:
        raise BadRequest("no files in the upload")
    return [(name, data, meta_for(metadata, i, name)) for i, (name, data) in enumerate(uploads)], options
