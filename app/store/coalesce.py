"""Concurrent searches that differ only in their query vector, answered by one Lance call.

Lance spends about a millisecond of fixed cost on every vector search (planning, the centroid
lookup, reading the hits' columns) beside the partitions it scans, and its ``nearest`` takes a
matrix of queries as one search. Measured at 200k x 384 (IVF_FLAT, 1,024 lists, 12 probes, one
process on 2 shared cores): one query at a time 1.5-1.9 CPU-ms a query, whatever the threads; in
batches of 4 0.9, of 8 0.7, with identical hits.

So under load the request threads that arrive while a search of the same kind runs gather into the
next batch, which its first thread sends once a lane is free (``lanes`` batches of one kind at once:
one by default, since Lance spreads a batch over the cores itself; measured with 8 threads, one lane
made batches of 4.3 at 1.1 CPU-ms a query, two lanes batches of 2.5 at 1.7). A request that finds
no company goes at once: nothing waits for a batch to fill, and a lone client sees the single-query
path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Coalescer"]


@dataclass
class _Batch:
    queries: list[Any]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Any] | None = None
    error: BaseException | None = None


class Coalescer:
    """Gathers concurrent calls with one key into batches (see the module's docstring)."""

    def __init__(self, lanes: int = 1, max_batch: int = 16) -> None:
        self.lanes = lanes
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._open: dict[Hashable, _Batch] = {}  # per key: the batch still taking queries
        self._running: dict[Hashable, int] = {}  # per key: batches being answered
        self.batches = 0  # batches sent, and the queries they held (tests and metrics read them)
        self.queries = 0

    def run(self, key: Hashable, query: Any, answer: Callable[[list[Any]], list[Any]]) -> Any:
        """``answer(queries)[i]`` for this call's query, ``answer`` called once per batch of calls that
        share ``key`` (it must answer each query as a call of its own would)."""
        with self._cond:
            batch = self._open.get(key)
            if batch is not None and len(batch.queries) < self.max_batch:
                slot = len(batch.queries)
                batch.queries.append(query)
            else:
                batch, slot = _Batch([query]), 0
                self._open[key] = batch
                while self._running.get(key, 0) >= self.lanes:  # the leader waits for a free lane, while
                    self._cond.wait()  # the calls arriving meanwhile join its batch
                if self._open.get(key) is batch:
                    del self._open[key]
                self._running[key] = self._running.get(key, 0) + 1
        if slot:
            batch.done.wait()
            if batch.error is not None:
                raise batch.error
            assert batch.results is not None
            return batch.results[slot]
        try:
            batch.results = answer(batch.queries)
        except BaseException as exc:
            batch.error = exc
            raise
        finally:
            with self._cond:
                self._running[key] -= 1
                if not self._running[key]:
                    del self._running[key]
                self.batches += 1
                self.queries += len(batch.queries)
                self._cond.notify_all()
            batch.done.set()
        return batch.results[0]
