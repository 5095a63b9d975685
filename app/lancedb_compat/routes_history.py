"""Versions, tags and restore, on the history services."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query

from app.deps import StoreDep
from app.errors import BadRequest
from app.lancedb_compat.fields import ListTagsBody, ListVersionsBody, RestoreBody, TagBody
from app.lancedb_compat.request import body_ref, int_field, str_field, table_name
from app.lancedb_compat.routing import compat_router, table_route
from app.responses import JSON
from app.services import history as svc
from app.store import Ref

router = compat_router()
Delimiter = Annotated[str | None, Query()]


@table_route(router, "version/list")
def list_versions(table_id: str, store: StoreDep, body: ListVersionsBody, delimiter: Delimiter = None,
                  branch: str | None = None) -> JSON:
    name = table_name(table_id, delimiter)
    branch = str_field(body, "branch") or branch
    descending = bool(body.get("descending"))
    limit = int_field(body, "limit", minimum=1)
    entries: list[dict[str, Any]] = []
    cursor: int | None = None
    while True:  # the whole log, a page at a time (oldest first unless asked)
        page, cursor = svc.list_versions(store, name, branch=branch, limit=svc.MAX_PAGE, before=cursor,
                                         ascending=not descending)
        entries.extend(page)
        if cursor is None or (limit is not None and len(entries) >= limit):
            break
    versions = [_version(e) for e in entries[:limit]]
    return JSON({"versions": versions, "page_token": None})


def _version(entry: dict[str, Any]) -> dict[str, Any]:
    stamp = datetime.fromisoformat(entry["timestamp"])
    metadata = {k: str(entry[k]) for k in ("message", "author", "operation", "num_rows") if entry.get(k) is not None}
    if entry.get("tags"):
        metadata["tags"] = ",".join(entry["tags"])
    return {"version": entry["version"], "timestamp": entry["timestamp"],
            "timestamp_millis": int(stamp.timestamp() * 1000),
            "manifest_path": f"_versions/{2**64 - 1 - entry['version']:020d}.manifest", "metadata": metadata}


@table_route(router, "tags/list")
def list_tags(table_id: str, store: StoreDep, body: ListTagsBody, delimiter: Delimiter = None) -> JSON:
    name = table_name(table_id, delimiter)
    tags = {t["name"]: {"branch": t["branch"], "version": t["version"], "manifestSize": t["manifest_size"]}
            for t in svc.list_tags(store, name, sizes=True)}
    if delimiter is not None:  # the namespace spec wraps the map
        return JSON({"tags": tags, "page_token": None})
    return JSON(tags)


def _tag_ref(body: dict[str, Any]) -> tuple[str, Ref]:
    tag = str_field(body, "tag")
    if not tag:
        raise BadRequest("give the tag's name in 'tag'")
    if body.get("version") is None:
        raise BadRequest("give the version the tag points at in 'version'")
    return tag, body_ref({"version": body["version"], "branch": body.get("branch")})


@table_route(router, "tags/create")
def create_tag(table_id: str, store: StoreDep, body: TagBody, delimiter: Delimiter = None) -> JSON:
    tag, ref = _tag_ref(body)
    return JSON(svc.create_tag(store, table_name(table_id, delimiter), tag, ref))


@table_route(router, "tags/update")
def update_tag(table_id: str, store: StoreDep, body: TagBody, delimiter: Delimiter = None) -> JSON:
    tag, ref = _tag_ref(body)
    return JSON(svc.move_tag(store, table_name(table_id, delimiter), tag, ref))


@table_route(router, "tags/delete")
def delete_tag(table_id: str, store: StoreDep, body: TagBody, delimiter: Delimiter = None) -> JSON:
    tag = str_field(body, "tag")
    if not tag:
        raise BadRequest("give the tag's name in 'tag'")
    svc.delete_tag(store, table_name(table_id, delimiter), tag)
    return JSON({})


@table_route(router, "tags/version")
def tag_version(table_id: str, store: StoreDep, body: TagBody, delimiter: Delimiter = None) -> JSON:
    tag = str_field(body, "tag")
    if not tag:
        raise BadRequest("give the tag's name in 'tag'")
    snap = store.snapshot(table_name(table_id, delimiter), Ref.parse(tag=tag))
    return JSON({"version": snap.version, "branch": snap.branch})


@table_route(router, "restore")
def restore(table_id: str, store: StoreDep, body: RestoreBody, delimiter: Delimiter = None) -> JSON:
    name = table_name(table_id, delimiter)
    ref = body_ref(body)
    if ref == Ref():
        raise BadRequest("give the version to restore in 'version'")
    return JSON({"version": svc.restore(store, name, ref, latest_ok=True)["version"]})
