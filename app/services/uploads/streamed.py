"""One staged write fed batch by batch, on a thread of its own: Lance writes while the next batch is checked.

An upload session gathers about one data file's worth of rows before writing them as uncommitted
fragments. Writing them all at the end of that span would leave the engine idle while the rows
are probed and hashed, and the probing idle while the engine encodes and writes. Instead the
write begins with the span's first batch: its rows go to the engine's writer as they are accepted
(at most ``DEPTH`` batches wait), and ``finish`` ends the span and returns its fragments, so the
session records their files exactly when it did before (a crash while writing leaves files no
record names, as it always could while a span was being written).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

__all__ = ["StreamedWrite"]

DEPTH = 2
_END = object()


class StreamedWrite:
    """``write(batches)`` running on its own thread over the batches ``put`` hands it until ``finish``."""

    def __init__(self, write: Callable[[Iterable[pa.RecordBatch]], list[Any]]) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(DEPTH)
        self._stop = threading.Event()
        self._result: list[Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(write,), daemon=True, name="lightbox-stage")
        self._thread.start()

    def _run(self, write: Callable[[Iterable[pa.RecordBatch]], list[Any]]) -> None:
        try:
            self._result = write(self._batches())
        except BaseException as exc:  # raised to the session by put or finish
            self._error = exc

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is _END:
                return
            yield item

    def put(self, batch: pa.RecordBatch) -> None:
        """Hand the writer one batch (waiting while ``DEPTH`` are queued); raises what the writer raised."""
        while True:
            self._raise()
            try:
                self._queue.put(batch, timeout=0.05)
                return
            except queue.Full:
                continue

    def finish(self) -> list[Any]:
        """End the stream and return what the write returned (the staged fragments)."""
        self._end()
        self._thread.join()
        self._raise()
        return self._result or []

    def cancel(self) -> list[Any]:
        """Stop after the batch being written; what was staged is returned (for removal), an error is not raised."""
        self._stop.set()
        self._end()
        self._thread.join()
        return self._result or []

    def _end(self) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(_END, timeout=0.05)
                return
            except queue.Full:
                continue

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error
        if not self._thread.is_alive() and self._result is None:
            raise RuntimeError("the staged write stopped before its batches ended")
