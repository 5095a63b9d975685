"""History: the version log, tags, restore."""

from __future__ import annotations

import bisect
from typing import Any

from app.errors import BadRequest, Conflict, TagNotFound
from app.services.clones import refuse_guard_change
from app.services.diff import diff
from app.store import Ref, Store
from app.store.commits import commit_props, count_props, write_turn
from app.store.config import VIEW_PREFIX, carry_config, read_config
from app.store.history import restore_version
from app.store.tags import check_tag_name

__all__ = ["MAX_PAGE", "TagNotFound", "create_tag", "delete_tag", "list_tags", "list_versions", "move_tag",
           "restore", "tags_by_version"]

MAX_PAGE = 1000


def list_versions(store: Store, name: str, *, branch: str | None = None, limit: int = 100,
                  before: int | None = None, ascending: bool = False) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the log (newest first unless ``ascending``) and the cursor for the next page."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    numbers = store.versions(name, branch)
    if ascending:
        chosen = [v for v in numbers if before is None or v > before][: limit + 1]
    else:
        chosen = [v for v in reversed(numbers) if before is None or v < before][: limit + 1]
    more = len(chosen) > limit
    chosen = chosen[:limit]
    tags = tags_by_version(store, name, branch)
    page = [{**store.version_entry(name, v, branch), "tags": tags.get(v, [])} for v in chosen]
    for entry in page:
        earlier = bisect.bisect_left(numbers, entry["version"]) - 1
        previous = store.version_entry(name, numbers[earlier], branch)["num_rows"] if earlier >= 0 else 0
        entry["rows_delta"] = delta = entry["num_rows"] - previous
        counts = entry.pop("counts", None) or {}
        entry["rows_added"] = counts.get("inserted", max(delta, 0))
        entry["rows_removed"] = counts.get("deleted", max(-delta, 0))
        entry["rows_updated"] = counts.get("updated", 0)
    return page, (chosen[-1] if more and chosen else None)


def tags_by_version(store: Store, name: str, branch: str | None = None) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for tag, info in store.tags(name).list().items():
        if info.get("branch") == branch:
            out.setdefault(int(info["version"]), []).append(tag)
    return {v: sorted(t) for v, t in out.items()}


def list_tags(store: Store, name: str, *, sizes: bool = False) -> list[dict[str, Any]]:
    """Every tag, by name; ``sizes`` adds the size of the manifest each names (LanceDB's clients show it)."""
    tags = store.tags(name).list()
    return [
        {"name": tag, "version": int(info["version"]), "branch": info.get("branch"),
         "created_at": _iso(info.get("created_at")), "updated_at": _iso(info.get("updated_at")),
         **({"manifest_size": info.get("manifest_size") or 0} if sizes else {})}
        for tag, info in sorted(tags.items())
    ]


def create_tag(store: Store, name: str, tag: str, ref: Ref) -> dict[str, Any]:
    """Name the version ``ref`` resolves to. Naming a version of main again with its tag is a no-op;
    a tag on a branch's version that exists already is a 409 (the API's contract)."""
    refuse_guard_change(store, name, tag)
    check_tag_name(tag)
    snap = store.snapshot(name, ref)
    store.tags(name).create(tag, snap.version, snap.branch, again_ok=snap.branch is None)
    return {"name": tag, "version": snap.version, "branch": snap.branch}


def move_tag(store: Store, name: str, tag: str, ref: Ref) -> dict[str, Any]:
    """Point a tag at the version ``ref`` resolves to, making it when it does not exist."""
    refuse_guard_change(store, name, tag)
    check_tag_name(tag)
    snap = store.snapshot(name, ref)
    store.tags(name).put(tag, snap.version, snap.branch)
    return {"name": tag, "version": snap.version, "branch": snap.branch}


def delete_tag(store: Store, name: str, tag: str) -> None:
    if store.tags(name).get(tag) is None:
        raise TagNotFound(f"table {name!r} has no tag {tag!r}", tag=tag)
    refuse_guard_change(store, name, tag)  # a guard whose clone is gone may go
    store.tags(name).delete(tag)


def restore(store: Store, name: str, ref: Ref, *, message: str | None = None, author: str | None = None,
            latest_ok: bool = False) -> dict[str, Any]:
    """Commit a new latest version whose content is that of ``ref`` (nothing is copied).

    It is logged as ``restore`` with the counts ``diff`` gives from the latest it replaces. Restoring
    the latest version is a 409, or with ``latest_ok`` a no-op (LanceDB's clients take it as done)."""
    if ref == Ref():
        raise BadRequest("say what to restore: a version, tag or as_of")
    snap = store.snapshot(name, ref)
    if latest_ok and snap.version == store.head(name, snap.branch).version:
        return {"version": snap.version, "restored": snap.version, "num_rows": snap.count()}
    if snap.branch is not None:
        raise BadRequest("restore takes a version of main; bring branch changes over with a merge")
    if snap.version == store.head(name).version:
        raise Conflict(f"version {snap.version} is already the latest", version=snap.version)
    with write_turn(store, name):  # other writers wait, so the counts are against what is replaced
        base = store.head(name, fresh=True)
        change = diff(base, snap)
        counts = {"inserted": len(change.added), "deleted": len(change.removed), "updated": len(change.changed)}
        props = commit_props(message or f"restore version {snap.version}", author,
                             {"lightbox:op": "restore", **count_props(counts)})
        views = read_config(store, name, VIEW_PREFIX, fresh=True)
        version, rows = restore_version(store, name, base.version, snap.version, props)
        carry_config(store, name, VIEW_PREFIX, views)  # saved views are the table's, not the version's
    return {"version": version, "restored": snap.version, "num_rows": rows}


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (str(value) if value is not None else None)
