"""History: the version log, tags, restore."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.errors import BadRequest, Conflict, InvalidName, NotFound, VersionNotFound
from app.services.clones import refuse_guard_change
from app.services.diff import diff
from app.store import Ref, Store
from app.store.history import commit_restore
from app.store.upserts import write_turn
from app.store.writes import check_tag_name, default_author, tag_version

MAX_PAGE = 1000


class TagNotFound(NotFound):
    code = "tag_not_found"


def list_versions(store: Store, name: str, *, branch: str | None = None, limit: int = 100,
                  before: int | None = None, ascending: bool = False) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the log (newest first unless ``ascending``) and the cursor for the next page."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    head = store.latest(name, branch)
    numbers = store.log.numbers(head, name, branch)
    if ascending:
        chosen = [v for v in numbers if before is None or v > before][: limit + 1]
    else:
        chosen = [v for v in reversed(numbers) if before is None or v < before][: limit + 1]
    more = len(chosen) > limit
    chosen = chosen[:limit]
    tags = tags_by_version(store, name, branch)
    page = [{**store.log.entry(head, name, v, branch), "tags": tags.get(v, [])} for v in chosen]
    for entry in page:
        earlier = bisect.bisect_left(numbers, entry["version"]) - 1
        previous = store.log.entry(head, name, numbers[earlier], branch)["num_rows"] if earlier >= 0 else 0
        entry["rows_delta"] = delta = entry["num_rows"] - previous
        counts = entry.pop("counts", None) or {}
        entry["rows_added"] = counts.get("inserted", max(delta, 0))
        entry["rows_removed"] = counts.get("deleted", max(-delta, 0))
        entry["rows_updated"] = counts.get("updated", 0)
    return page, (chosen[-1] if more and chosen else None)


def tags_by_version(store: Store, name: str, branch: str | None = None) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for tag, info in store.latest(name).tags.list().items():
        if info.get("branch") == branch:
            out.setdefault(int(info["version"]), []).append(tag)
    return {v: sorted(t) for v, t in out.items()}


def list_tags(store: Store, name: str) -> list[dict[str, Any]]:
    tags = store.latest(name).tags.list()
    return [
        {"name": tag, "version": int(info["version"]), "branch": info.get("branch"),
         "created_at": _iso(info.get("created_at")), "updated_at": _iso(info.get("updated_at"))}
        for tag, info in sorted(tags.items())
    ]


def create_tag(store: Store, name: str, tag: str, ref: Ref) -> dict[str, Any]:
    refuse_guard_change(store, name, tag)
    check_tag_name(tag)
    snap = store.snapshot(name, ref)
    if snap.branch is not None:
        return _tag_branch(store, name, tag, snap.branch, snap.version)
    tag_version(store, name, tag, snap.version)
    return {"name": tag, "version": snap.version, "branch": None}


def move_tag(store: Store, name: str, tag: str, ref: Ref) -> dict[str, Any]:
    refuse_guard_change(store, name, tag)
    check_tag_name(tag)
    snap = store.snapshot(name, ref)
    if tag not in store.latest(name).tags.list():
        try:
            return create_tag(store, name, tag, ref)
        except Conflict:  # created meanwhile by another request: move it
            pass
    with tag_change(name, tag):
        store.own(name).tags.update(tag, (snap.branch, snap.version) if snap.branch else snap.version)
    store.invalidate(name)
    return {"name": tag, "version": snap.version, "branch": snap.branch}


def delete_tag(store: Store, name: str, tag: str) -> None:
    if tag not in store.latest(name).tags.list():
        raise TagNotFound(f"table {name!r} has no tag {tag!r}", tag=tag)
    refuse_guard_change(store, name, tag)  # a guard whose clone is gone may go
    with tag_change(name, tag):
        store.own(name).tags.delete(tag)
    store.invalidate(name)


@contextmanager
def tag_change(name: str, tag: str) -> Iterator[None]:
    """A 404 for a tag deleted by another request between the look and the change."""
    try:
        yield
    except (ValueError, OSError) as exc:
        if "not found" not in str(exc).lower():
            raise
        raise TagNotFound(f"table {name!r} has no tag {tag!r}", tag=tag) from exc


def _tag_branch(store: Store, name: str, tag: str, branch: str, version: int) -> dict[str, Any]:
    check_tag_name(tag)
    if tag in store.latest(name).tags.list():
        raise Conflict(f"tag {tag!r} already exists", tag=tag)
    try:
        store.own(name).tags.create(tag, (branch, version))
    except ValueError as exc:
        if "conflict" in str(exc).lower():  # created meanwhile by another request
            raise Conflict(f"tag {tag!r} already exists", tag=tag) from exc
        raise InvalidName(f"invalid tag name {tag!r}", tag=tag) from exc
    return {"name": tag, "version": version, "branch": branch}


def restore(store: Store, name: str, ref: Ref, *, message: str | None = None,
            author: str | None = None) -> dict[str, Any]:
    """Commit a new latest version whose content is that of ``ref`` (nothing is copied).

    It is logged as ``restore`` with the counts ``diff`` gives from the latest it replaces."""
    if ref == Ref():
        raise BadRequest("say what to restore: a version, tag or as_of")
    snap = store.snapshot(name, ref)
    if snap.branch is not None:
        raise BadRequest("restore takes a version of main; bring branch changes over with a merge")
    head = store.latest(name)
    if snap.version == head.version:
        raise Conflict(f"version {snap.version} is already the latest", version=snap.version)
    with write_turn(store, name):  # other writers wait, so the counts are against what is replaced
        base = store.fresh(name)
        change = diff(store.snapshot(name, Ref(version=base.version)), snap)
        props = {"lightbox:op": "restore", "author": author or default_author(),
                 "__lance_commit_message": message or f"restore version {snap.version}",
                 "lightbox:inserted": str(len(change.added)), "lightbox:deleted": str(len(change.removed)),
                 "lightbox:updated": str(len(change.changed))}
        try:
            restored = commit_restore(base, snap.version, props)
        except (ValueError, OSError) as exc:
            if "conflict" in str(exc).lower():
                raise Conflict(f"table {name!r} changed during the restore; try again") from exc
            raise VersionNotFound(f"cannot restore version {snap.version}: {exc}") from exc
    store.invalidate(name)
    return {"version": restored.version, "restored": snap.version, "num_rows": restored.count_rows()}


def _iso(value: Any) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else (str(value) if value is not None else None)
