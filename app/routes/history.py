"""``/versions``, ``/tags`` and ``/restore``."""

from __future__ import annotations

from typing import Annotated, ClassVar

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import Field

from app.deps import RefDep, StoreDep
from app.models import RequestBody
from app.responses import JSON
from app.services import history as svc
from app.store import Ref

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["history"])
MAX_VERSION = 2**63 - 1  # Lance's versions are 64-bit


class RefBody(RequestBody):
    """A ref in a JSON body; the same rules as the query parameters."""

    field_hints: ClassVar[dict[str, str]] = {"from": "version", "ref": "version", "at": "version",
                                             "source": "version", "parent": "version"}

    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    tag: str | None = None
    branch: str | None = None
    as_of: str | None = None

    def ref(self) -> Ref:
        return Ref.parse(version=self.version, tag=self.tag, branch=self.branch, as_of=self.as_of)


class TagBody(RefBody):
    name: str


@router.get("/versions")
def versions(table: str, store: StoreDep, branch: str | None = None,
             limit: Annotated[int, Query()] = 100, cursor: Annotated[int | None, Query(ge=0, le=MAX_VERSION)] = None,
             order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc") -> JSON:
    page, next_cursor = svc.list_versions(store, table, branch=branch, limit=limit, before=cursor,
                                          ascending=order == "asc")
    headers = {"X-Lightbox-Next-Cursor": str(next_cursor)} if next_cursor is not None else {}
    return JSON(page, headers=headers)


@router.get("/tags")
def list_tags(table: str, store: StoreDep) -> JSON:
    return JSON({"tags": svc.list_tags(store, table)})


@router.post("/tags", status_code=201)
def create_tag(table: str, body: TagBody, store: StoreDep) -> JSON:
    return JSON(svc.create_tag(store, table, body.name, body.ref()), status_code=201)


@router.put("/tags/{tag}")
def put_tag(table: str, tag: str, store: StoreDep, body: RefBody | None = None) -> JSON:
    return JSON(svc.move_tag(store, table, tag, body.ref() if body else Ref()))


@router.delete("/tags/{tag}", status_code=204)
def delete_tag(table: str, tag: str, store: StoreDep) -> Response:
    svc.delete_tag(store, table, tag)
    return Response(status_code=204)


@router.post("/restore")
def restore(table: str, store: StoreDep, ref: RefDep, body: RefBody | None = None,
            message: Annotated[str | None, Query(description="kept with the version in the log")] = None,
            author: Annotated[str | None, Query(description="kept with the version in the log")] = None) -> JSON:
    return JSON(svc.restore(store, table, body.ref() if body and body.ref() != Ref() else ref,
                            message=message, author=author))
