"""``/indexes``, ``/optimize`` and ``/embeddings``: table maintenance."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from app.deps import RefDep, StoreDep
from app.errors import BadRequest
from app.models import RequestBody
from app.responses import JSON, version_headers
from app.services.describe import index_report
from app.services.embed import embed_table
from app.store import maintenance
from embeddings.registry import UnknownModel

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["maintenance"])
MAX_RETENTION_SECONDS = 100 * 366 * 86400  # a century: longer is "keep everything", and must still fit Lance's int64


class IndexBody(RequestBody):
    column: str
    type: str
    name: str | None = None
    metric: str | None = None
    num_partitions: int | None = Field(default=None, ge=1, le=2**31 - 1)
    num_sub_vectors: int | None = Field(default=None, ge=1, le=2**31 - 1)
    num_bits: int | None = Field(default=None, ge=1, le=64)


class EmbedBody(RequestBody):
    model: str
    source: str = "image"
    column: str | None = None


@router.get("/indexes")
def list_indexes(table: str, request: Request, store: StoreDep, ref: RefDep) -> JSON:
    """The version's indexes; a vector index also reports the recall it was tuned to and measured."""
    snap = store.snapshot(table, ref)
    return JSON({"indexes": index_report(snap, request.app.state.searcher.indexes)}, headers=version_headers(snap))


@router.post("/indexes", status_code=201)
def create_index(table: str, body: IndexBody, request: Request, store: StoreDep) -> JSON:
    params: dict[str, Any] = body.model_dump(exclude={"column", "type"}, exclude_none=True)
    with request.app.state.metrics.index_build(body.type):
        out = maintenance.create_index(store, table, body.column, body.type, params)
    return JSON(out, status_code=201)


@router.post("/optimize")
def optimize(table: str, request: Request, store: StoreDep,
             retention_seconds: Annotated[float | None, Query(ge=0)] = None,
             message: Annotated[str | None, Query(description="kept with the version in the log")] = None,
             author: Annotated[str | None, Query(description="kept with the version in the log")] = None) -> JSON:
    """Compact, fold new rows into indexes, prune untagged versions older than the retention setting
    (``retention_seconds`` overrides it for this call; tagged versions are never pruned)."""
    if retention_seconds is not None and not 0 <= retention_seconds <= MAX_RETENTION_SECONDS:  # inf, nan, 1e308
        raise BadRequest(f"retention_seconds must be a number from 0 to {MAX_RETENTION_SECONDS}",
                         retention_seconds=str(retention_seconds))

    seconds = retention_seconds if retention_seconds is not None else request.app.state.settings.retention_days * 86400
    keeper = request.app.state.searcher.indexes
    # the keeper folds the vector indexes of the tables it keeps, under its own lock; smaller tables'
    # (hand-made) vector indexes are folded by optimize itself
    kept = store.fresh(table).count_rows() >= keeper.min_rows
    out = maintenance.optimize(store, table, timedelta(seconds=seconds), message=message, author=author,
                               fold_vectors=not kept)
    folded = keeper.fold(table, merge=True)  # build, merge and tune vector indexes
    if folded:
        out["vector_indexes"] = folded
        out["version"] = store.latest(table).version
    return JSON(out)


@router.post("/embeddings", status_code=201)
async def embed(table: str, body: EmbedBody, request: Request,
                message: Annotated[str | None, Query(description="kept with the version in the log")] = None,
                author: Annotated[str | None, Query(description="kept with the version in the log")] = None) -> JSON:
    """Add or refresh a vector column computed by ``model`` from ``source`` (one new version)."""
    state = request.app.state
    try:
        embedder = await run_in_threadpool(state.registry.get, body.model)
    except UnknownModel as exc:
        raise BadRequest(str(exc), model=body.model) from exc
    out = await run_in_threadpool(embed_table, state.store, table, embedder, source=body.source, column=body.column,
                             message=message, author=author)
    return JSON(out, status_code=201)
