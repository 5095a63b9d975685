"""``/branches``, ``/branches/{b}/merge``, ``/diff`` and ``/clone``: Git-like collaboration."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.deps import StoreDep
from app.errors import BadRequest
from app.models import RequestBody
from app.responses import JSON
from app.routes.history import RefBody
from app.services import branches as svc
from app.services import clones
from app.services.diff import diff, parse_ref_text, with_values
from app.services.query import MAX_POSITION

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["branches"])


class BranchBody(RefBody):
    name: str


class MergeBody(RequestBody):
    into: str = "main"
    on_conflict: Literal["fail", "theirs", "ours"] = "fail"
    message: str | None = None
    author: str | None = None


class CloneBody(RefBody):
    name: str


@router.get("/branches")
def list_branches(table: str, store: StoreDep) -> JSON:
    return JSON({"branches": svc.list_branches(store, table)})


@router.post("/branches", status_code=201)
def create_branch(table: str, body: BranchBody, store: StoreDep) -> JSON:
    return JSON(svc.create_branch(store, table, body.name, body.ref()), status_code=201)


@router.delete("/branches/{branch}", status_code=204)
def delete_branch(table: str, branch: str, store: StoreDep) -> Response:
    svc.delete_branch(store, table, branch)
    return Response(status_code=204)


@router.post("/branches/{branch}/merge")
def merge_branch(table: str, branch: str, store: StoreDep, body: MergeBody | None = None) -> JSON:
    body = body or MergeBody()
    return JSON(svc.merge(store, table, branch, into=body.into, on_conflict=body.on_conflict,
                          message=body.message, author=body.author))


@router.get("/diff")
def diff_refs(table: str, store: StoreDep, from_: Annotated[str, Query(alias="from")],
              to: Annotated[str, Query()] = "main", limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
              cursor: Annotated[str | None, Query()] = None,
              vectors: Annotated[str, Query(pattern="^(list|count)$", description="count: rows whose vectors "
                                            "alone changed are counted, not listed")] = "list") -> JSON:
    try:
        offset = int(cursor) if cursor else 0
    except ValueError:
        offset = -1
    if not 0 <= offset <= MAX_POSITION:
        raise BadRequest("cursor must come from a previous diff page", cursor=cursor)
    a = store.snapshot(table, parse_ref_text(store, table, from_))
    b = store.snapshot(table, parse_ref_text(store, table, to))
    d = diff(a, b)
    page = with_values(a, b, d, d.page(limit, offset, vectors_as_count=vectors == "count"))
    return JSON({"from": {"version": a.version, "branch": a.branch}, "to": {"version": b.version, "branch": b.branch},
                 **page})


@router.post("/clone", status_code=201)
def clone_table(table: str, body: CloneBody, store: StoreDep,
                message: Annotated[str | None, Query(description="kept with the version in the log")] = None,
                author: Annotated[str | None, Query(description="kept with the version in the log")] = None) -> JSON:
    return JSON(clones.clone(store, table, body.name, body.ref(), message=message, author=author), status_code=201)
