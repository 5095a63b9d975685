"""``POST /api/v1/tables/{t}/annotations``: COCO JSON (the file as the body) or YOLO labels
(``{"labels": {"<image stem>": "<txt>"}, "classes": [...]}``) into list columns, as one version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from app.bodies import read_json
from app.responses import JSON
from app.services import annotations as svc

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["annotations"])


@router.post("/annotations", openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
    "type": "object", "description": "a COCO instances file, or {labels: {stem: txt}, classes: [names]} for YOLO"}}}}})
async def import_annotations(table: str, request: Request,
                             format: Annotated[str, Query(description="coco or yolo")] = "coco",
                             match: Annotated[svc.Match, Query(description="auto, id, name or stem")] = "auto",
                             branch: Annotated[str | None, Query()] = None,
                             message: Annotated[str | None, Query()] = None,
                             author: Annotated[str | None, Query()] = None) -> JSON:
    doc: Any = await read_json(request, invalid=svc.InvalidAnnotations)  # the JSON limit, whatever the type
    parsed, normalised = svc.parse_body(format, doc)
    out = await run_in_threadpool(svc.import_annotations, request.app.state.store, table, parsed, match=match,
                                  normalised=normalised, branch=branch, message=message, author=author)
    return JSON(out)
