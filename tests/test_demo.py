"""`make demo` runs again on the same root: it builds only the tables that are missing and serves
what it finds, whatever happened to them in between (edits, tags, restores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.services import writes
from app.store import Store
from lightbox.cli import main
from lightbox.demo import DEMO_TABLES, build_demo


def test_the_demo_builds_twice_on_one_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "data")
    store = Store(root, refresh_seconds=0.0)
    first = build_demo(store, tmp_path / "sources")
    assert list(first) == list(DEMO_TABLES) and all(r is not None and r.added for r in first.values())
    writes.delete_rows(store, "samples", ids=["skimage/camera.png"])  # the table moves past its tag v1
    before = {name: store.latest(name).version for name in DEMO_TABLES}

    again = build_demo(store, tmp_path / "sources")
    assert again == {name: None for name in DEMO_TABLES}  # found, kept as it is
    assert {name: Store(root).latest(name).version for name in DEMO_TABLES} == before

    assert main(["demo", "--uri", root, "--no-serve"]) == 0  # the command too, printing where to look
    out = capsys.readouterr().out
    assert f"samples: found at version {before['samples']}" in out and "http://127.0.0.1:8000/" in out


def test_a_missing_demo_table_is_built_beside_a_found_one(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "data"), refresh_seconds=0.0)
    build_demo(store, tmp_path / "sources")
    store.drop("digits")
    again = build_demo(store, tmp_path / "sources")
    assert again["samples"] is None and again["digits"] is not None and again["digits"].added == 1797
