"""``/indexes``, ``/optimize`` and ``/embeddings``: table maintenance."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from app.deps import RefDep, StoreDep
from app.models import RequestBody
from app.responses import JSON, version_headers
from app.services import maintenance
from app.services.embed import embed_with_model

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["maintenance"])


class IndexBody(RequestBody):
    column: str
    type: str
    name: str | None = None
    metric: str | None = None
    num_partitions: int | None = Field(default=None, ge=1, le=2**31 - 1)
    num_sub_vectors: int | None = Field(default=None, ge=1, le=2**31 - 1)
    num_bits: int | None = Field(default=None, ge=1, le=64)
    # full-text (FTS) indexes: how the text is split into words (Lance's tokenizer settings)
    with_position: bool | None = Field(default=None, description="keep word positions for phrase queries "
                                                                  "(default true)")
    base_tokenizer: Literal["simple", "whitespace", "raw", "ngram"] | None = None
    language: str | None = Field(default=None, max_length=40)
    stem: bool | None = None
    remove_stop_words: bool | None = None
    lower_case: bool | None = None
    ascii_folding: bool | None = None


class EmbedBody(RequestBody):
    model: str
    source: str = "image"
    column: str | None = None


@router.get("/indexes")
def list_indexes(table: str, request: Request, store: StoreDep, ref: RefDep) -> JSON:
    """The version's indexes; a vector index also reports the recall it was tuned to and measured."""
    snap, indexes = maintenance.list_indexes(store, request.app.state.searcher.indexes, table, ref)
    return JSON({"indexes": indexes}, headers=version_headers(snap))


@router.post("/indexes", status_code=201)
def create_index(table: str, body: IndexBody, request: Request, store: StoreDep) -> JSON:
    params: dict[str, Any] = body.model_dump(exclude={"column", "type"}, exclude_none=True)
    with request.app.state.metrics.index_build(body.type):
        out = maintenance.create_index(store, table, body.column, body.type, params)
    return JSON(out, status_code=201)


@router.delete("/indexes/{index}")
def drop_index(table: str, index: str, store: StoreDep) -> JSON:
    """Drop an index from main's latest version (one new version); older versions and tags keep theirs."""
    return JSON(maintenance.drop_index(store, table, index))


@router.post("/optimize")
def optimize(table: str, request: Request, store: StoreDep,
             retention_seconds: Annotated[float | None, Query(ge=0)] = None,
             message: Annotated[str | None, Query(description="kept with the version in the log")] = None,
             author: Annotated[str | None, Query(description="kept with the version in the log")] = None) -> JSON:
    """Compact, fold new rows into indexes, prune untagged versions older than the retention setting
    (``retention_seconds`` overrides it for this call; tagged versions are never pruned)."""
    state = request.app.state
    seconds = retention_seconds if retention_seconds is not None else state.settings.retention_days * 86400
    return JSON(maintenance.optimize(store, state.searcher.indexes, table, seconds, message=message, author=author))


@router.post("/embeddings", status_code=201)
async def embed(table: str, body: EmbedBody, request: Request,
                message: Annotated[str | None, Query(description="kept with the version in the log")] = None,
                author: Annotated[str | None, Query(description="kept with the version in the log")] = None) -> JSON:
    """Add or refresh a vector column computed by ``model`` from ``source`` (one new version)."""
    state = request.app.state
    out = await run_in_threadpool(embed_with_model, state.store, state.registry, table, body.model, source=body.source,
                                  column=body.column, message=message, author=author)
    return JSON(out, status_code=201)
