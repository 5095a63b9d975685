"""An ingest killed with SIGKILL mid-write leaves the table exactly at its previous version.

Lance publishes a version only when its manifest lands, so the data files a killed run leaves
behind are unreferenced orphans: the table still opens at version N with its rows, validates, and
re-running the same ingest adds every row exactly once.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import REPO_ROOT, cli_command, cli_env
from tests.test_probe import png_chunk

N_FILES = 30_000
PER_FOLDER = 1_000


def _png_factory() -> tuple[bytes, bytes]:
    """The fixed head and tail of a small grey PNG; a tEXt chunk in between makes each file unique."""
    width = height = 16
    raw = b"".join(b"\x00" + bytes((x * 16 + y) & 255 for x in range(width)) for y in range(height))
    head = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(raw)))
    return head, png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def many_pngs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """30,000 distinct valid PNGs in 30 folders: enough that writing them takes a visible while."""
    root = tmp_path_factory.mktemp("many") / "pngs"
    head, tail = _png_factory()
    ids = set()
    for i in range(N_FILES):
        folder = f"f{i // PER_FOLDER:02d}"
        if i % PER_FOLDER == 0:
            (root / folder).mkdir(parents=True)
        name = f"{folder}/{i:05d}.png"
        (root / name).write_bytes(head + png_chunk(b"tEXt", b"n\x00" + str(i).encode()) + tail)
        ids.add(name)
    return root, ids


def _data_files(table_dir: Path) -> dict[str, int]:
    data = table_dir / "data"
    return {e.name: e.stat().st_size for e in os.scandir(data)} if data.exists() else {}


def _kill_once_writing(proc: subprocess.Popen[bytes], table_dir: Path, before: set[str]) -> dict[str, int]:
    """SIGKILL the run as soon as it has put bytes into new data files; returns what it had written."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        fresh = {n: s for n, s in _data_files(table_dir).items() if n not in before}
        if sum(fresh.values()) > 0:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return fresh
        time.sleep(0.005)
    proc.kill()
    proc.wait(timeout=30)
    pytest.fail(f"the ingest {'finished' if proc.returncode == 0 else 'stopped'} before it wrote anything "
                f"that could be interrupted (exit {proc.returncode}); give it more files")


@pytest.mark.parametrize("new_column", [False, True], ids=["append", "append-adding-a-column"])
def test_sigkill_mid_ingest_keeps_the_previous_version(tmp_path: Path, many_pngs: tuple[Path, set[str]],
                                                       new_column: bool) -> None:
    """``new_column``: the run also brings a column (``--labels-from-dirs``), added by the run's one commit."""
    source, big_ids = many_pngs
    uri = tmp_path / "data"
    table_dir = uri / "big.lance"

    # Version N: a small table of its own files.
    first = tmp_path / "first"
    first.mkdir()
    head, tail = _png_factory()
    for i in range(20):
        (first / f"seed_{i:02d}.png").write_bytes(head + png_chunk(b"tEXt", b"seed\x00" + bytes([i])) + tail)
    store = Store(str(uri), refresh_seconds=0.0)
    report = run_ingest(store, IngestOptions(table="big", sources=[str(first)], progress=False))
    n = report.version
    assert n is not None
    seed_ids = {f"seed_{i:02d}.png" for i in range(20)}
    before = set(_data_files(table_dir))

    # A big run, killed while it writes.
    args = ["ingest", str(source), "--table", "big", "--uri", str(uri), *(["--labels-from-dirs"] if new_column else [])]
    proc = subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=cli_env(), cwd=REPO_ROOT)
    written = _kill_once_writing(proc, table_dir, before)
    assert proc.returncode == -signal.SIGKILL
    assert sum(written.values()) > 0  # it really was killed mid-write, with data on disk

    # The table is untouched: version N, its rows, a valid dataset.
    fresh = Store(str(uri), refresh_seconds=0.0)
    ds = fresh.latest("big")
    assert ds.version == n
    assert [v["version"] for v in ds.versions()] == list(range(1, n + 1))
    assert sorted(ds.to_table(columns=["id"]).column("id").to_pylist()) == sorted(seed_ids)
    assert "label" not in ds.schema.names
    ds.validate()
    row_ids = ds.to_table(columns=["id"], with_row_id=True)
    blobs = dict(ds.read_blobs("image", ids=row_ids.column("_rowid").to_pylist()))
    for key, rid in zip(row_ids.column("id").to_pylist(), row_ids.column("_rowid").to_pylist(), strict=True):
        assert blobs[rid] == (first / key).read_bytes()

    # The same ingest again, to completion: every row exactly once.
    done = subprocess.run(cli_command(*args), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=cli_env(), cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"added      {N_FILES} images" in done.stdout
    ds = Store(str(uri), refresh_seconds=0.0).latest("big")
    assert ds.version == n + 1
    ids = ds.to_table(columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == N_FILES + len(seed_ids)
    assert set(ids) == big_ids | seed_ids
    if new_column:
        labels = dict(zip(ids, ds.to_table(columns=["label"]).column("label").to_pylist(), strict=True))
        assert all(labels[i] is None for i in seed_ids) and labels["f07/07001.png"] == "f07"
    ds.validate()
