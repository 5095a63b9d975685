"""A table's tags: names for versions, listed and changed through one facade (``Store.tags(name)``).

Lance keeps tags in the table's refs folder, beside every branch's, so any handle of the table lists
them all, and a change needs a handle of its own (a shared one refuses it: ``app.store.handles``). Each
change takes the table's write turn, so the check before it (is the name free? does it point there
already?) and the change see no other write in between, and Lance's errors become the service's here,
once: a tag made meanwhile is a 409, a tag or version that is not there a 404, a name Lance refuses a 400.
Tags are read from storage on every listing, so a change needs no cached handle refreshed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from app.errors import Conflict, InvalidName, TagNotFound, VersionNotFound
from app.store.commits import write_turn

if TYPE_CHECKING:
    from app.store.catalog import Store

__all__ = ["CLONE_TAG_PREFIX", "TAG_RE", "TAG_RE_HINT", "Tags", "check_tag_name"]

TAG_RE_HINT = "use up to 128 letters, digits, '.', '_' or '-', not starting or ending with '.'"
TAG_RE = re.compile(r"^[A-Za-z0-9_-](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9_-])?$")
# A clone's guard: the tag on its source version that keeps the files the clone reads from being pruned.
# Only ``clone`` makes these; a hand-made one could guard the wrong version or be mistaken for a guard.
CLONE_TAG_PREFIX = "lightbox-clone-"


def check_tag_name(tag: str) -> str:
    """The tag, if Lance takes it as a ref name; else a 400 (Lance itself reports it as an I/O error)."""
    # fullmatch, not match: the pattern's `$` also matches before a final newline ("v1\n")
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag) or ".." in tag or tag.endswith(".lock"):
        raise InvalidName(f"invalid tag name {tag!r}: {TAG_RE_HINT}", tag=tag)
    if tag.startswith(CLONE_TAG_PREFIX):
        raise InvalidName(f"tag names starting with {CLONE_TAG_PREFIX!r} are reserved for clone guards", tag=tag)
    return tag


class Tags:
    """The tags of one table. Names are checked by the callers that take them from users
    (``check_tag_name``): clone guards carry a prefix users may not."""

    def __init__(self, store: Store, name: str) -> None:
        self._store, self._name = store, name

    def list(self) -> dict[str, dict[str, Any]]:
        """Tag -> ``{"version", "branch", "created_at", "updated_at", "manifest_size"}`` (Lance's record)."""
        return self._store.latest(self._name).tags.list()

    def get(self, tag: str) -> dict[str, Any] | None:
        return self.list().get(tag)

    def create(self, tag: str, version: int, branch: str | None = None, *, again_ok: bool = True) -> None:
        """Point a new tag at a version of a branch (main when None). Tagging the version the tag already
        names is a no-op (with ``again_ok``, else a 409); a tag on another version is a 409."""
        with write_turn(self._store, self._name):
            current = self.get(tag)
            if current is not None:
                if again_ok and int(current["version"]) == version and current.get("branch") == branch:
                    return
                if current.get("branch") == branch and int(current["version"]) == version:
                    raise Conflict(f"tag {tag!r} already exists", tag=tag)
                raise Conflict(f"tag {tag!r} already points at version {current['version']}", tag=tag,
                               version=current["version"])
            try:
                self._store.own(self._name).tags.create(tag, _point(version, branch))
            except (ValueError, OSError) as exc:
                text = str(exc).lower()
                if "conflict" in text or "already exists" in text:  # made meanwhile by another process
                    raise Conflict(f"tag {tag!r} was created meanwhile; look again", tag=tag) from exc
                if "not found" in text:
                    raise VersionNotFound(f"table {self._name!r} has no version {version}", version=version) from exc
                raise InvalidName(f"invalid tag name {tag!r}: {TAG_RE_HINT}", tag=tag) from exc

    def put(self, tag: str, version: int, branch: str | None = None) -> None:
        """Point a tag at a version, whether or not it exists yet (move it when it does)."""
        with write_turn(self._store, self._name):
            if self.get(tag) is None:
                self.create(tag, version, branch)
            else:
                self.move(tag, version, branch)

    def move(self, tag: str, version: int, branch: str | None = None) -> None:
        """Point an existing tag at another version (404 when there is no such tag)."""
        with write_turn(self._store, self._name), self._found(tag):
            self._store.own(self._name).tags.update(tag, _point(version, branch))

    def delete(self, tag: str) -> None:
        """Delete a tag (404 when there is no such tag); the version it named stays."""
        with write_turn(self._store, self._name):
            if self.get(tag) is None:
                raise TagNotFound(f"table {self._name!r} has no tag {tag!r}", tag=tag)
            with self._found(tag):
                self._store.own(self._name).tags.delete(tag)

    @contextmanager
    def _found(self, tag: str) -> Iterator[None]:
        """A 404 for a tag Lance does not find (deleted by another process since it was looked at)."""
        try:
            yield
        except (ValueError, OSError) as exc:
            if "not found" not in str(exc).lower():
                raise
            raise TagNotFound(f"table {self._name!r} has no tag {tag!r}", tag=tag) from exc


def _point(version: int, branch: str | None) -> int | tuple[str, int]:
    return (branch, version) if branch else version
