"""Commit races: what Lance calls retryable is tried again (bounded, with backoff); the rest is a 409.

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

import random
import time
from collections.abc import Callable
from typing import TypeVar

from app.errors import CommitConflict

T = TypeVar("T")
ATTEMPTS = 6  # a compaction preempted five times in a row lost to a steady stream of writes: let the client say
BACKOFF_SECONDS = 0.05


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
