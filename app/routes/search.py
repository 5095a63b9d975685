"""``POST /search``: a JSON body, or a multipart upload of an image (plus the same fields as form parts).

One body answers similarity (vector, text, image_id, image), keywords, or both fused (hybrid):
``app.services.hybrid``."""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import quote

import pyarrow as pa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import Field, ValidationError

from app.bodies import read_json, takes_upload, upload_limit
from app.deps import RefDep
from app.errors import BadRequest, PayloadTooLarge
from app.models import RequestBody, request_error
from app.responses import JSON, arrow_response, ref_query, version_headers, wants_arrow
from app.services.hybrid import find
from app.services.search import Searcher, SearchSpec
from app.store import Ref, Snapshot

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["search"])


class SearchBody(RequestBody):
    vector: list[float] | None = None
    text: str | None = None
    image_id: str | None = None
    k: int = Field(default=10)
    filter: str | None = None
    columns: list[str] | None = None
    column: str | None = None
    nprobes: int | None = Field(default=None, ge=1, le=2**31 - 1)
    refine_factor: int | None = Field(default=None, ge=1, le=2**31 - 1)
    keywords: str | None = Field(default=None, description='keyword query: words, "a phrase", +must, -must_not')
    keyword_columns: list[str] | None = None
    offset: int = Field(default=0, ge=0, le=2**31 - 1)
    fusion: Literal["rrf", "linear"] = "rrf"
    weight: float = Field(default=0.5, ge=0.0, le=1.0)


UPLOAD_SCHEMA = {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}


@router.post("/search", openapi_extra={"requestBody": {"content": {
    "application/json": {"schema": SearchBody.model_json_schema()},
    "multipart/form-data": {"schema": UPLOAD_SCHEMA},
}}})
@takes_upload
async def search(table: str, request: Request, ref: RefDep) -> Response:
    spec = await _spec(request)
    searcher: Searcher = request.app.state.searcher
    snap, hits = await run_in_threadpool(find, searcher, table, ref, spec)
    headers = version_headers(snap)
    if wants_arrow(request.headers.get("accept")):
        return arrow_response(hits.schema, hits.to_batches(), headers)
    return JSON({"hits": hit_rows(table, ref, snap, hits)}, headers=headers)


def hit_rows(table: str, ref: Ref, snap: Snapshot, hits: pa.Table) -> list[dict[str, Any]]:
    """The hits as JSON rows; in an image table each carries the URL of its image at the same ref."""
    rows = hits.to_pylist()
    if "image" in snap.schema.names:
        where = f"/api/v1/tables/{quote(table)}/rows/"
        for row in rows:
            if row.get("id") is not None:
                row["image_url"] = f"{where}{quote(row['id'])}/image{ref_query(ref)}"
    return rows


async def _spec(request: Request) -> SearchSpec:
    limit = upload_limit(request)
    content_type = request.headers.get("content-type", "")
    image: bytes | None = None
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=20)
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                image = await value.read()
                if len(image) > limit:
                    raise PayloadTooLarge(f"upload exceeds the limit of {limit} bytes", limit=limit)
            else:
                fields[key] = _form_value(key, value)
        raw: Any = fields
    else:
        raw = await read_json(request, empty={})  # the JSON limit, whatever the declared type
    try:
        parsed = SearchBody.model_validate(raw)
    except ValidationError as exc:
        raise request_error(list(exc.errors())) from exc
    return SearchSpec(**parsed.model_dump(), image=image)


def _form_value(key: str, value: str) -> Any:
    if key in ("vector", "columns", "keyword_columns"):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise BadRequest(f"form field {key!r} must be JSON") from exc
    return value
