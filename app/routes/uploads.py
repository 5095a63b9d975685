"""``POST /rows``: add images (multipart) or rows (an Arrow IPC stream) as one version.

Uploads go through the same pipeline as ``lightbox ingest``: every image is probed, hashed and
checked, a bad one is skipped with its reason, ids stay unique (``mode=upsert`` replaces rows
whose id exists), and the table's vector columns are filled with the models they record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from app.bodies import read_body, takes_upload, upload_limit
from app.deps import StoreDep
from app.errors import BadRequest, PayloadTooLarge, TableNotFound, Unprocessable, UnsupportedMediaType
from app.responses import ARROW_STREAM, JSON
from app.store.ids import check_id_column, check_ids
from app.store.schema import check_image_bytes

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["writes"])
OPTIONS = ("mode", "dedup", "message", "author", "tag", "branch")


@router.post("/rows", status_code=201)
@takes_upload
async def add_rows(table: str, request: Request, store: StoreDep) -> JSON:
    if not store.exists(table):
        raise TableNotFound(f"table {table!r} does not exist; create it with POST /api/v1/tables", table=table)
    limit = upload_limit(request)
    content_type = request.headers.get("content-type", "")
    options = {k: v for k, v in request.query_params.items() if k in OPTIONS}
    if content_type.startswith("multipart/form-data"):
        files, form_options = await _multipart(request, limit)
        options.update(form_options)
    elif content_type.startswith(ARROW_STREAM):
        rows = _arrow_rows(await read_body(request))
        check_image_bytes(rows)
        if "image" not in rows.column_names:  # plain rows for a table that is not an image table
            return JSON(await run_in_threadpool(_add_plain_rows, store, table, rows, options), status_code=201)
        files = _arrow_files(rows)
    else:
        raise UnsupportedMediaType("send images as multipart/form-data or rows as " + ARROW_STREAM)
    report = await run_in_threadpool(_ingest, store, request.app.state.registry, table, files, options)
    request.app.state.metrics.ingested(table, report["inserted"] + report["updated"], len(report["skipped"]))
    if report["skipped"] and not (report["inserted"] or report["updated"] or report["unchanged"]):
        raise Unprocessable(_nothing_written(report["skipped"]), skipped=report["skipped"])
    return JSON(report, status_code=201)


def _nothing_written(skipped: list[dict[str, Any]]) -> str:
    """One line naming why every file was skipped (the first few; all are in ``detail.skipped``)."""
    shown = "; ".join(f"{s['file']}: {s['reason']} ({s['message']})" if s["message"] else f"{s['file']}: {s['reason']}"
                      for s in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return f"nothing was written: every file was skipped: {shown}{more}"


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
    return [(name, data, _meta_for(metadata, i, name)) for i, (name, data) in enumerate(uploads)], options


def _meta_for(metadata: Any, index: int, name: str) -> dict[str, Any]:
    """Metadata of one file: a list in file order, or an object keyed by file name."""
    if metadata is None:
        return {}
    if isinstance(metadata, list):
        if index < len(metadata) and isinstance(metadata[index], dict):
            return metadata[index]
        return {}
    if isinstance(metadata, dict):
        found = metadata.get(name)
        return found if isinstance(found, dict) else {}
    raise BadRequest("metadata must be a JSON list (one object per file) or an object keyed by file name")


def _arrow_rows(body: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadRequest(f"the body is not an Arrow IPC stream: {exc}") from exc


def _add_plain_rows(store: Any, table: str, rows: pa.Table, options: dict[str, str],
                    delete_ids: Callable[[set[str]], list[str]] | None = None) -> dict[str, Any]:
    """Rows of any schema, cast to the table's; ids (when the table has them) stay unique."""
    from app.services.writes import append_rows

    return append_rows(store, table, rows, mode=options.get("mode", "insert"), branch=options.get("branch"),
                       message=options.get("message"), author=options.get("author"), tag=options.get("tag"),
                       delete_ids=delete_ids)


def _arrow_files(rows: pa.Table) -> list[tuple[str, bytes, dict[str, Any]]]:
    if "id" not in rows.column_names:
        raise Unprocessable("an Arrow upload of images needs an 'id' column beside 'image'")
    check_id_column(rows.column("id"))
    out = []
    for row in rows.to_pylist():
        image = row.pop("image")
        if isinstance(image, dict):  # {bytes, path} as Hugging Face writes it
            image = image.get("bytes")
        out.append((row["id"], image or b"", row))
    return out


def upload_id(name: str, meta: dict[str, Any]) -> Any:
    """The id a file is stored under: its metadata's ``id`` when given (as is), else its file name."""
    given = meta.get("id")
    return name if given is None else given


def _ingest(store: Any, registry: Any, table: str, files: list[tuple[str, bytes, dict[str, Any]]],
            options: dict[str, str], *, strict: bool = False,
            delete_ids: Callable[[set[str]], list[str]] | None = None) -> dict[str, Any]:
    """Run the ingest pipeline on in-memory files; ``strict`` and ``delete_ids`` as in ``IngestOptions``."""
    from app.store.upserts import write_turn
    from ingest.pipeline import IngestError, IngestOptions, RowsRefused, run_ingest
    from ingest.sources import MemorySource

    mode = options.get("mode", "insert")
    dedup = options.get("dedup", "id")
    if mode not in ("insert", "upsert") or dedup not in ("id", "content", "none"):
        raise BadRequest("mode is insert|upsert and dedup is id|content|none")
    check_ids(upload_id(name, meta) for name, _, meta in files)  # one bad id refuses the upload: nothing is written
    opts = IngestOptions(table=table, sources=[MemorySource(files)], id_mode="path", dedup=dedup,  # type: ignore[arg-type]
                         mode=mode, message=options.get("message"), author=options.get("author"),  # type: ignore[arg-type]
                         tag=options.get("tag"), branch=options.get("branch"), progress=False, registry=registry,
                         workers=1, strict=strict, delete_ids=delete_ids)
    try:
        with write_turn(store, table):  # the id check and the commit, with no other keyed write between
            report = run_ingest(store, opts)
    except RowsRefused as exc:
        raise Unprocessable(str(exc), refused=[{"file": s.file.split(":", 1)[-1], "reason": s.reason,
                                                "message": s.message} for s in exc.refused]) from exc
    except IngestError as exc:
        raise Unprocessable(str(exc)) from exc
    return {"version": report.version or report.previous_version,
            "inserted": report.added - report.updated - report.unchanged, "updated": report.updated,
            "unchanged": report.unchanged, **({"deleted": report.deleted} if delete_ids else {}), "tag": report.tag,
            "skipped": [{"file": s.file.split(":", 1)[-1], "reason": s.reason, "message": s.message}
                        for s in report.skipped]}
