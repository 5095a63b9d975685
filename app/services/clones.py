"""Zero-copy clones and the guard tags that keep their files alive.

A clone shares its source's data files at one version. Lance's cleanup keeps tagged versions and the
versions branches fork from but knows nothing of clones, so ``clone`` tags the source version
``lightbox-clone-<new>``: retention keeps every file the clone reads. While the clone exists its
guard cannot be moved or deleted; dropping the clone releases it.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from app.errors import Conflict, InvalidName, TableExists, TagNotFound
from app.store import Ref, Store
from app.store.clones import shallow_clone
from app.store.commits import commit_props
from app.store.tags import CLONE_TAG_PREFIX


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
    # a guard left by a clone dropped outside Lightbox is moved to guard this one
    store.tags(name).put(CLONE_TAG_PREFIX + new_name, snap.version, snap.branch)
    where = f"version {snap.version}" + (f" of branch {snap.branch}" if snap.branch else "")
    head = shallow_clone(store, snap, new_name, commit_props(message or f"clone of {name} at {where}", author,
                                                             {"lightbox:op": "clone"}))
    return {"name": new_name, "source": name, "source_version": snap.version, "version": head.version,
            "num_rows": head.count()}


def clones_of(store: Store, name: str) -> list[str]:
    """Tables cloned from ``name`` that still exist (each left its protecting tag on ``name``)."""
    names = (tag.removeprefix(CLONE_TAG_PREFIX) for tag in store.tags(name).list()
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
        if tag in store.tags(other).list():
            with suppress(TagNotFound):  # deleted meanwhile: what was wanted
                store.tags(other).delete(tag)
