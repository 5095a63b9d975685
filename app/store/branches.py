"""A table's branches, listed, made and deleted through one facade (``Store.branches(name)``).

A branch is Lance's own (``tree/<name>`` in the table's folder, sharing the parent's files; its versions
are its own). Changes take the table's write turn and a handle of their own, and Lance's errors become
the service's here: a branch made meanwhile is a 409, one that is not there a 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.errors import BranchNotFound, Conflict, InvalidName
from app.store.commits import conflict_of, write_turn
from app.store.refs import Ref, check_name

if TYPE_CHECKING:
    from app.store.catalog import Store

__all__ = ["Branches"]


class Branches:
    """The branches of one table."""

    def __init__(self, store: Store, name: str) -> None:
        self._store, self._name = store, name

    def list(self) -> dict[str, dict[str, Any]]:
        """Branch -> ``{"parent_branch", "parent_version", ...}`` (Lance's record)."""
        return self._store.latest(self._name).branches.list()

    def get(self, branch: str) -> dict[str, Any]:
        """One branch's record; 404 when the table has no such branch."""
        info = self.list().get(branch)
        if info is None:
            raise BranchNotFound(f"table {self._name!r} has no branch {branch!r}", branch=branch)
        return info

    def create(self, branch: str, ref: Ref) -> dict[str, Any]:
        """A branch forked at ``ref``; returns its name, parent and version."""
        check_name(branch, "branch")
        if branch == "main":
            raise InvalidName("'main' is the trunk's name; pick another branch name")
        store, name = self._store, self._name
        snap = store.snapshot(name, ref)
        with write_turn(store, name):
            main = store.fresh(name)
            if branch in main.branches.list():
                raise Conflict(f"branch {branch!r} already exists", branch=branch)
            try:
                main.create_branch(branch, (snap.branch, snap.version))
            except (ValueError, OSError) as exc:
                if not conflict_of(exc):
                    raise
                raise Conflict(f"branch {branch!r} already exists", branch=branch) from exc
            store.invalidate(name)
        return {"name": branch, "parent_branch": snap.branch, "parent_version": snap.version,
                "version": store.latest(name, branch).version}

    def delete(self, branch: str) -> None:
        """Delete a branch (its versions go; versions other branches fork from stay readable there)."""
        with write_turn(self._store, self._name):
            main = self._store.fresh(self._name)
            if branch not in main.branches.list():
                raise BranchNotFound(f"table {self._name!r} has no branch {branch!r}", branch=branch)
            try:
                main.branches.delete(branch)
            except (ValueError, OSError) as exc:
                raise Conflict(f"branch {branch!r} cannot be deleted: {exc}", branch=branch) from exc
            self._store.invalidate(self._name)
