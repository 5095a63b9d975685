"""``POST /api/v1/tables/{t}/curate``: label issues, duplicates and uniqueness as columns, one version."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from app.models import RequestBody
from app.responses import JSON
from app.services import curate as svc

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["curate"])


class CurateBody(RequestBody):
    label: str | None = Field(default=None, description="the label column; without it, duplicates and "
                                                        "uniqueness only")
    column: str | None = Field(default=None, description="the vector column (the table's only one by default)")
    k: int = Field(default=10, description=f"neighbours voting on each label, 1 to {svc.MAX_K}")
    threshold: float | None = Field(default=None, description="near-duplicate distance; by default the one "
                                                              "calibrated for the column's model")


@router.post("/curate", status_code=201)
async def curate(table: str, body: CurateBody, request: Request,
                 message: Annotated[str | None, Query(description="kept with the version in the log")] = None,
                 author: Annotated[str | None, Query(description="kept with the version in the log")] = None) -> JSON:
    """Write ``label_issue``, ``suggested_label``, ``duplicate_of`` and ``uniqueness`` for every row of main."""
    state = request.app.state
    spec = svc.CurateSpec(label=body.label, column=body.column, k=body.k, threshold=body.threshold,
                          message=message, author=author)
    out = await run_in_threadpool(svc.curate, state.store, state.searcher.indexes, table, spec)
    return JSON(out, status_code=201)
