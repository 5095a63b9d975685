"""Dependencies handed to route handlers: the store, the row reader, and the request's ref."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.store import Ref, RowReader, Store


# async: they do no I/O, and a sync dependency costs a threadpool hop per request (measured).
async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_reader(request: Request) -> RowReader:
    return request.app.state.reader


async def get_ref(
    version: Annotated[str | None, Query(description="a version number")] = None,
    tag: Annotated[str | None, Query(description="a tag name")] = None,
    branch: Annotated[str | None, Query(description="a branch name (its latest version)")] = None,
    as_of: Annotated[str | None, Query(description="RFC 3339: the newest version at or before it")] = None,
) -> Ref:
    return Ref.parse(version=version, tag=tag, branch=branch, as_of=as_of)


StoreDep = Annotated[Store, Depends(get_store)]
ReaderDep = Annotated[RowReader, Depends(get_reader)]
RefDep = Annotated[Ref, Depends(get_ref)]
