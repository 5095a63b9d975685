"""Row writes: ``PATCH``/``DELETE /rows/{id}`` and ``POST /delete`` (by filter). Each is one version."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from app.deps import StoreDep
from app.models import RequestBody
from app.responses import JSON
from app.services import writes as svc
from app.store.ids import check_id

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["writes"])
Branch = Annotated[str | None, Query(description="write to this branch instead of main")]
Message = Annotated[str | None, Query(description="kept with the version in the log")]


@router.patch("/rows/{row_id:path}")
def patch_row(table: str, row_id: str, store: StoreDep, values: Annotated[dict[str, Any], Body()],
              branch: Branch = None, message: Message = None, author: str | None = None,
              tag: str | None = None) -> JSON:
    check_id(row_id)
    return JSON(svc.patch_row(store, table, row_id, values, branch=branch, message=message, author=author, tag=tag))


@router.delete("/rows/{row_id:path}")
def delete_row(table: str, row_id: str, store: StoreDep, branch: Branch = None, message: Message = None,
               author: str | None = None, tag: str | None = None) -> JSON:
    check_id(row_id)  # a '..' segment is refused here, whatever a client or proxy did to the path
    return JSON(svc.delete_rows(store, table, ids=[row_id], branch=branch, message=message, author=author, tag=tag))


class DeleteBody(RequestBody):
    filter: str | None = None
    message: str | None = None
    author: str | None = None
    tag: str | None = None


@router.post("/delete")
def delete_where(table: str, store: StoreDep, body: DeleteBody, branch: Branch = None) -> JSON:
    return JSON(svc.delete_rows(store, table, filter_text=body.filter or "", branch=branch,
                                message=body.message, author=body.author, tag=body.tag))
