"""``lightbox tables | log | tags | restore`` on a data root and against a live server."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.helpers import Ran, run_cli


def cli(*args: str) -> Ran:
    return run_cli(*args)


@pytest.fixture
def two_versions(store: Store, samples_dir: Path, tmp_path: Path) -> Store:
    run_ingest(store, IngestOptions(table="pics", sources=[str(samples_dir)], message="first load", author="ada",
                                    progress=False))
    more = tmp_path / "more"
    more.mkdir()
    (more / "copy.png").write_bytes((samples_dir / "camera.png").read_bytes())
    run_ingest(store, IngestOptions(table="pics", sources=[str(more)], message="one more", author="bob",
                                    progress=False))
    return store


@pytest.mark.parametrize("mode", ["uri", "server"])
def test_history_commands(mode: str, two_versions: Store, samples_dir: Path, live_server) -> None:
    target = ["--uri", two_versions.uri] if mode == "uri" else ["--server", live_server(two_versions.uri).url]
    n = len(list(samples_dir.iterdir()))

    tables = cli("tables", *target)
    assert tables.returncode == 0, tables.stderr
    assert f"pics\tversion 2\t{n + 1} rows" in tables.stdout

    tagged = cli("tags", "pics", "create", "first", "--at", "1", *target)
    assert tagged.returncode == 0, tagged.stderr
    assert "tagged version 1 of pics as first" in tagged.stdout
    clash = cli("tags", "pics", "create", "first", "--at", "2", *target)
    assert clash.returncode != 0 and "already" in clash.stderr

    log = cli("log", "pics", "--oneline", "--reverse", *target)
    assert log.returncode == 0, log.stderr
    lines = log.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("1\t") and "ada\tfirst load (first)" in lines[0]
    assert lines[1].startswith("2\t") and "bob\tone more" in lines[1]

    restored = cli("restore", "pics", "--at", "first", *target)
    assert restored.returncode == 0, restored.stderr
    assert f"restored version 1 as new version 3 ({n} rows)" in restored.stdout
    assert Store(two_versions.uri).latest("pics").count_rows() == n

    missing = cli("restore", "pics", "--at", "99", *target)
    assert missing.returncode != 0 and "no version 99" in missing.stderr

    untag = cli("tags", "pics", "delete", "first", *target)
    assert untag.returncode == 0 and "deleted tag first" in untag.stdout
