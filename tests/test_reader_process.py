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

from ingest import reader_process, walk
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


def walked_with(folder: Path, workers: int, **options: object) -> tuple[list[dict[str, object]], list[object], Walker]:
    """Rows, skips and batch sizes of a walk with ``options``, and the walker (for its metadata's leftovers)."""
    walker = Walker([str(folder)], labels_from_dirs=True, workers=workers, max_file_bytes=LIMIT, **options)  # type: ignore[arg-type]
    rows: list[dict[str, object]] = []
    skips: list[tuple[int, str, str]] = []
    sizes: list[tuple[int, int]] = []  # each batch's image bytes, without and with its last row
    files = 0
    for batch in walker.batches():
        rows.extend(batch.rows.to_pylist())
        skips.extend((files + at, skip.reason, skip.message) for at, skip in batch.skipped)
        images = [len(r) for r in batch.rows.column("image").to_pylist()]
        sizes.append((sum(images[:-1]), sum(images)))
        files += batch.files
    return rows, [skips, sizes], walker


def test_the_side_file_joins_the_same_whoever_reads(folder: Path, tmp_path: Path,
                                                   started: list[reader_process.FileReader]) -> None:
    """A CSV keyed by id, by file name and by stem, with a key that matches nothing, a repeated key and a
    label column of its own: the columns, the files without a row and the unused keys are the same."""
    lines = ["file,label,score"]
    lines += [f"a/{i:04d}.png,x{i},{i / 2}" for i in range(1, 60, 2)]  # by id
    lines += [f"{i:04d}.png,y{i},{i}" for i in range(0, 40, 2)]  # by file name
    lines += [f"{i:04d},z{i},{i}" for i in range(100, 140, 2)]  # by stem
    lines += ["nowhere.png,n,0", "a/0001.png,again,1"]  # no file; a repeated key (the first row wins)
    csv = tmp_path / "meta.csv"
    csv.write_text("\n".join(lines) + "\n")
    here = walked_with(folder, 1, metadata=str(csv), key="file", batch_rows=64)
    assert not started
    there = walked_with(folder, 2, metadata=str(csv), key="file", batch_rows=64)
    assert len(started) == 1  # read by columns, by the helper
    assert there[0] == here[0] and there[1][0] == here[1][0]
    assert there[2].metadata.unmatched() == here[2].metadata.unmatched() == ["nowhere.png"]
    assert there[2].metadata.duplicates == ["a/0001.png"]
    by_id = {r["id"]: r for r in there[0]}
    assert by_id["a/0001.png"]["label"] == "x1" and by_id["b/0002.png"]["label"] == "y2"
    assert by_id["b/0100.png"]["score"] == 100 and by_id["b/0200.png"]["label"] is None


@pytest.mark.parametrize("cap", [None, 2_000])
def test_batches_are_cut_by_bytes(folder: Path, cap: int | None, started: list[reader_process.FileReader]) -> None:
    """A batch ends at the row that brings it to ``batch_bytes``, and before a row that would take it past the
    service's cap, whoever reads the files (by columns, the batches may end earlier: at a chunk's end)."""
    options = {"batch_rows": 1000, "batch_bytes": 3_000,
               "max_batch_bytes": cap and cap + walk.BATCH_SLACK}
    here = walked_with(folder, 1, **options)
    there = walked_with(folder, 2, **options)
    assert len(started) == 1
    assert there[0] == here[0] and there[1][0] == here[1][0]
    for before_last, whole in [*here[1][1], *there[1][1]]:
        assert before_last < 3_000 and whole <= (cap or LIMIT + 3_000)
    assert max(whole for _, whole in here[1][1]) >= (cap or 3_000) - 100  # the bounds were reached


def test_a_run_lists_its_folders_in_its_helper_while_its_session_begins(
        folder: Path, tmp_path: Path, started: list[reader_process.FileReader],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One helper process per run: it lists the folders (asked before the session begins), then reads the files;
    the table holds what a run without it would write."""
    from app.store import Store
    from ingest.pipeline import IngestOptions, run_ingest

    asked: list[str] = []
    real = reader_process.FileReader.ask_listing
    monkeypatch.setattr(reader_process.FileReader, "ask_listing", lambda self, root: (asked.append(root),
                                                                                      real(self, root))[1])
    store = Store(str(tmp_path / "root"))
    report = run_ingest(store, IngestOptions(table="two", sources=[str(folder)], labels_from_dirs=True,
                                             max_file_bytes=LIMIT, workers=2, progress=False))
    assert asked == [str(folder)] and len(started) == 1 and started[0].proc.poll() is not None
    alone = run_ingest(store, IngestOptions(table="one", sources=[str(folder)], labels_from_dirs=True,
                                            max_file_bytes=LIMIT, workers=1, progress=False))
    assert len(started) == 1
    assert (report.added, len(report.skipped)) == (alone.added, len(alone.skipped)) == (FIRST_CHUNK + 300, 5)
    columns = ["id", "label", "sha256", "width", "source"]
    one, two = (store.head(t).read(columns).sort_by("id").to_pylist() for t in ("one", "two"))
    assert one == two
