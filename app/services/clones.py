"""Zero-copy clones and the guard tags that keep their files alive.

A clone shares its source's data files at one version. Lance's cleanup keeps tagged versions and the
versions branches fork from but knows nothing of clones, so ``clone`` tags the source version
``lightbox-clone-<new>``: retention keeps every file the clone reads. While the clone exists its
guard cannot be moved or deleted; dropping the clone releases it.
"""

from __future__ import annotations

from typing import Any

from app.errors import Conflict, InvalidName, TableExists
from app.store import Ref, Store
from app.store.notes import write_note
from app.store.writes import CLONE_TAG_PREFIX, default_author


class CloneGuarded(Conflict):
    code = "clone_guard"


def clone(store: Store, name: str, new_name: str, ref: Ref, *, message: str | None = None,
          author: str | None = None) -> dict[str, Any]:
    """A new table sharing the source's data files at ``ref`` (no bytes copied).

    The source version is tagged ``lightbox-clone-<new>`` so retention never deletes files the clone
    reads; dropping the clone through Lightbox removes that tag.
    """
    if store.exists(new_name):
        raise TableExists(f"table {new_name!r} already exists", table=new_name)
    snap = store.snapshot(name, ref)
    source = store.fresh(name)
    tag = CLONE_TAG_PREFIX + new_name
    point = (snap.branch, snap.version) if snap.branch else snap.version
    if tag in source.tags.list():  # left by a clone dropped outside Lightbox: make it guard this one
        source.tags.update(tag, point)
    else:
        source.tags.create(tag, point)
    source.shallow_clone(store.table_uri(new_name), (snap.branch, snap.version) if snap.branch else snap.version,
                         **({"storage_options": store.storage_options} if store.storage_options else {}))
    store.invalidate(name)
    clone_ds = store.latest(new_name)
    where = f"version {snap.version}" + (f" of branch {snap.branch}" if snap.branch else "")
    write_note(store.table_uri(new_name), clone_ds, None, storage_options=store.storage_options, props={
        "lightbox:op": "clone", "author": author or default_author(),
        "__lance_commit_message": message or f"clone of {name} at {where}"})
    return {"name": new_name, "source": name, "source_version": snap.version, "version": clone_ds.version,
            "num_rows": clone_ds.count_rows()}


def clones_of(store: Store, name: str) -> list[str]:
    """Tables cloned from ``name`` that still exist (each left its protecting tag on ``name``)."""
    names = (tag.removeprefix(CLONE_TAG_PREFIX) for tag in store.latest(name).tags.list()
             if tag.startswith(CLONE_TAG_PREFIX))
    return sorted(n for n in names if n != name and store.exists(n))


def guarded_clone(store: Store, name: str, tag: str) -> str | None:
    """The clone whose files ``tag`` on ``name`` keeps alive, when it is a guard and the clone exists."""
    if not tag.startswith(CLONE_TAG_PREFIX):
        return None
    clone_name = tag.removeprefix(CLONE_TAG_PREFIX)
    try:
        return clone_name if clone_name != name and store.exists(clone_name) else None
    except InvalidName:
        return None


def refuse_guard_change(store: Store, name: str, tag: str) -> None:
    """409 when ``tag`` guards a clone that still exists: moving or deleting it would let retention
    prune files the clone reads. Dropping the clone releases it."""
    clone_name = guarded_clone(store, name, tag)
    if clone_name is not None:
        raise CloneGuarded(f"tag {tag!r} keeps the files of clone {clone_name!r} alive; drop the clone to release it",
                           tag=tag, clone=clone_name)


def release_clone(store: Store, dropped: str) -> None:
    """Forget the protecting tag a clone put on its source (called when the clone is dropped)."""
    tag = CLONE_TAG_PREFIX + dropped
    for other in store.names():
        if other == dropped:
            continue
        if tag in store.latest(other).tags.list():
            store.own(other).tags.delete(tag)
            store.invalidate(other)
