"""How every commit of the store is made: who made it, what it records, whose turn it is, and races.

This module sits at the bottom of ``app.store``: it imports no other module of the package at run
time, so every write module (``catalog``, ``writes``, ``upserts``, ``evolve``, ``fragments``, the ref
facades, ``maintenance``) builds on it without an import circle.

**Properties.** A version records its author, message and what it did in Lance's transaction
properties (``commit_props``, ``count_props``): ``author`` (the caller's, else the login name of the
process), ``__lance_commit_message``, ``lightbox:op`` and the row counts ``lightbox:inserted`` etc.

**The write turn.** Writes to one table take turns (``write_turn``): a lock per table in this process,
and an advisory file lock beside the table's files for other processes on the same local data root.
Keyed writes need it because the uncommitted ``merge_insert`` route loses the set of keys a merge
inserted, which is what would let Lance see two concurrent inserts of one new id as a conflict (it
rebases them onto each other instead, and the id is stored twice). Ref changes (tags, branches), config
changes, restores, clones, merges, computed columns and the pruning of old versions take it too, so a
check and the change it guards (is the tag free? did the table move since the counts were taken? which
tags keep which versions?) see no other write in between. Object storage has no file
lock: there one process writes (the others are replicas that forward their writes to it,
``app.replica``), and its in-process turn is the one that counts. Three kinds of commit go without it,
each because Lance resolves it against concurrent commits itself and holding every other writer for
its length would stall them: compaction and index builds (they change no row; ``retry_commit`` plans
them again when preempted), and a streamed plain append (``writes.append_stream``: Lance rebases an
append onto whatever committed meanwhile; a writer that checks ids before appending holds the turn
itself, as uploads do).

**Commit races.** What Lance calls retryable is tried again (bounded, with backoff); the rest is a 409.

Lance commits optimistically. A commit that finds a newer version rebases onto it when the two
transactions are compatible, and otherwise fails. Seen with pylance 14.0.2 (messages, since the
errors come as plain ``OSError``/``ValueError``):

- "Retryable commit conflict for version N: This Rewrite transaction was preempted by concurrent
  transaction Update ...": a compaction whose fragments a concurrent write changed. Planning it
  again on the new latest succeeds.
- "Commit conflict for version N: ..." (incompatible, or "Failed to commit the transaction after
  20 retries"): trying again at once is unlikely to help; the client decides.
- "Ref conflict error: tag x already exists": a tag or branch made meanwhile by another writer.

None of these is the server's fault, so none may leave as a 500.
"""

from __future__ import annotations

import getpass
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from app.errors import CommitConflict

if TYPE_CHECKING:
    from app.store.catalog import Store

try:
    import fcntl
except ImportError:  # not POSIX: writers in other processes are not serialised
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")
ATTEMPTS = 6  # a compaction preempted five times in a row lost to a steady stream of writes: let the client say
BACKOFF_SECONDS = 0.05
RETRIES = 12  # a keyed write that lost its commit to another process's plans again on the new latest, this often
LOCK_FILE = "_lightbox_write.lock"

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_held = threading.local()  # the tables whose turn this thread holds (a turn may be taken again inside)


def default_author() -> str:
    """Who a version is by when the caller names no one: the login name of this process."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def commit_props(message: str | None = None, author: str | None = None,
                 extra: dict[str, str] | None = None) -> dict[str, str]:
    """A version's transaction properties: its author (the caller's, else ``default_author``), its
    message when there is one, then ``extra`` (``lightbox:op``, what a merge merged, ...)."""
    props = {"author": author or default_author()}
    if message:
        props["__lance_commit_message"] = message
    return {**props, **(extra or {})}


def count_props(counts: dict[str, int]) -> dict[str, str]:
    """Row counts as the log reads them back (``lightbox:inserted``, ``lightbox:updated``, ...)."""
    return {f"lightbox:{k}": str(v) for k, v in counts.items()}


@contextmanager
def write_turn(store: Store, name: str) -> Iterator[None]:
    """Hold the table's write turn: across threads here, and across processes on a local root.

    Re-entrant within a thread, so a caller holding the turn can make writes itself.
    """
    uri = store.table_uri(name)
    held: set[str] = _held.__dict__.setdefault("uris", set())
    if uri in held:
        yield
        return
    with _locks_guard:
        lock = _locks.setdefault(uri, threading.Lock())
    with lock:
        held.add(uri)
        try:
            yield from _file_turn(store, uri)
        finally:
            held.discard(uri)


def holds_turn(store: Store, name: str) -> bool:
    """Whether this thread holds the table's write turn."""
    return store.table_uri(name) in _held.__dict__.get("uris", set())


def _file_turn(store: Store, uri: str) -> Iterator[None]:
    folder = uri.removeprefix("file://")
    if fcntl is None or not store.is_local or not os.path.isdir(folder):
        yield
        return
    with open(os.path.join(folder, LOCK_FILE), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def conflict_of(exc: BaseException) -> str | None:
    """"retryable", "conflict", or None for an error that is not a commit race."""
    text = str(exc).lower()
    if "retryable commit conflict" in text or "preempted by concurrent transaction" in text:
        return "retryable"
    if "commit conflict" in text or "ref conflict" in text or "too many concurrent writers" in text:
        return "conflict"
    return None


def retry_commit(call: Callable[[], T], *, table: str, what: str, attempts: int = ATTEMPTS) -> T:
    """Run ``call`` (which plans on a fresh handle and commits), again while Lance says the race is
    retryable; a commit race it does not win is a 409 that says to try again."""
    for attempt in range(attempts):
        try:
            return call()
        except (OSError, ValueError, RuntimeError) as exc:
            kind = conflict_of(exc)
            if kind is None:
                raise
            if kind == "retryable" and attempt + 1 < attempts:
                time.sleep(random.uniform(0.5, 1.5) * BACKOFF_SECONDS * 2**attempt)
                continue
            raise lost_race(table, what, exc) from exc
    raise AssertionError("unreachable")


def lost_race(table: str, what: str, exc: BaseException) -> CommitConflict:
    """The 409 for a write that lost a commit race with a concurrent writer."""
    return CommitConflict(f"{what} on table {table!r} lost a race with a concurrent write; try again",
                          table=table, reason=str(exc).split(", /")[0][:300])
