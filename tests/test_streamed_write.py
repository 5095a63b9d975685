"""An upload's span of rows is written while the session goes on: the writer sees each batch as it is put.

The real engine write is covered by the upload-session tests (a staged span's files, aborts, expiry);
here the writer is a plain function, to show the overlap itself and how errors and aborts travel.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import pyarrow as pa
import pytest

from app.services.uploads.streamed import StreamedWrite

WAIT = 30.0  # a bound on waiting for the writer thread, never a measured duration


def batch(n: int) -> pa.RecordBatch:
    return pa.record_batch({"x": [n]})


def test_the_writer_takes_each_batch_before_the_next_is_put() -> None:
    seen: list[int] = []
    took = threading.Event()

    def write(batches: Iterable[pa.RecordBatch]) -> list[int]:
        for b in batches:
            seen.append(b.column(0)[0].as_py())
            took.set()
        return list(seen)

    stream = StreamedWrite(write)
    for n in range(3):
        took.clear()
        stream.put(batch(n))
        assert took.wait(WAIT)  # written while the caller still holds the span open
        assert seen == list(range(n + 1))
    assert stream.finish() == [0, 1, 2]


def test_a_failed_write_is_raised_to_the_session() -> None:
    def write(batches: Iterable[pa.RecordBatch]) -> list[int]:
        next(iter(batches))
        raise OSError("disk full")

    stream = StreamedWrite(write)
    stream.put(batch(0))
    with pytest.raises(OSError, match="disk full"):
        for n in range(100):  # the writer has stopped taking batches: a put or the finish raises
            stream.put(batch(n))
        stream.finish()


def test_cancel_stops_the_write_and_returns_what_it_staged() -> None:
    def write(batches: Iterable[pa.RecordBatch]) -> list[str]:
        return [f"file-{b.column(0)[0].as_py()}" for b in batches]

    stream = StreamedWrite(write)
    stream.put(batch(1))
    assert stream.cancel() in (["file-1"], [])  # the batch in hand is written or dropped, never left running
    assert StreamedWrite(write).finish() == []
