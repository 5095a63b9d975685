"""A folder of many small files is read by a helper process; the rows and skips are the same as read here.

The folder holds more files than the first chunk the walk reads itself, and, past that chunk, the
files a reader must get right: a broken symlink, a FIFO (it must not block), a file over the size
limit (past the first 64 KiB read), an empty file (a row: the service refuses it) and a name that
is not UTF-8. The walk with one worker (everything read in
this process) is the reference.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ingest import reader_process
from ingest.walk import FIRST_CHUNK, Walker

LIMIT = 70_000  # past the first 64 KiB read: the limit is checked with fstat


def small_png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), i % 256, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
    for i in range(FIRST_CHUNK + 300):
        (root / ("a" if i % 2 else "b") / f"{i:04d}.png").write_bytes(small_png(i))
    late = root / "b"
    (late / "zz-broken.png").symlink_to(root / "missing.png")
    os.mkfifo(late / "zz-fifo.png")
    (late / "zz-large.png").write_bytes(b"x" * (LIMIT + 1))
    (late / "zz-empty.png").write_bytes(b"")
    (late / os.fsdecode(b"zz-\xff.png")).write_bytes(small_png(1))
    return root


def walked(folder: Path, workers: int) -> tuple[list[dict[str, object]], list[tuple[int, str, str]], int]:
    walker = Walker([str(folder)], labels_from_dirs=True, workers=workers, max_file_bytes=LIMIT, batch_rows=100)
    rows: list[dict[str, object]] = []
    skips: list[tuple[int, str, str]] = []
    files = 0
    for batch in walker.batches():
        rows.extend(batch.rows.to_pylist())
        skips.extend((files + at, skip.reason, skip.message) for at, skip in batch.skipped)
        files += batch.files
    return rows, skips, files


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[reader_process.FileReader]:
    """The helper processes started (the real ones, recorded)."""
    found: list[reader_process.FileReader] = []
    real = reader_process.FileReader.__init__

    def record(self: reader_process.FileReader) -> None:
        real(self)
        found.append(self)

    monkeypatch.setattr(reader_process.FileReader, "__init__", record)
    return found


def test_a_helper_process_reads_what_this_process_would(folder: Path, started: list[reader_process.FileReader]) -> None:
    here = walked(folder, workers=1)
    assert not started
    there = walked(folder, workers=2)
    assert len(started) == 1 and started[0].proc.poll() == 0  # the helper was used, and has ended
    assert there == here
    rows, skips, files = there
    assert files == FIRST_CHUNK + 300 + 5 and len(rows) == FIRST_CHUNK + 300 + 1  # the empty file: the service's
    assert [s[1:] for s in skips] == [("unreadable", "No such file or directory"), ("unreadable", "not a regular file"),
                                      ("too_large", f"{LIMIT + 1} bytes exceeds the limit of {LIMIT}"),
                                      ("invalid_id", "id 'b/zz-\\udcff.png' is not valid UTF-8")]


def test_a_run_stopped_early_ends_its_helper(folder: Path, started: list[reader_process.FileReader]) -> None:
    batches = Walker([str(folder)], workers=2, batch_rows=10).batches()
    for _ in range(FIRST_CHUNK // 10 + 3):  # past the first chunk: the helper is reading
        next(batches)
    batches.close()
    assert len(started) == 1 and started[0].proc.poll() is not None
