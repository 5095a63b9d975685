"""One script of commands, run twice: on a data root (``--uri ROOT``) and against a live server on
another root (``--server URL``). Both must leave the same tables and versions and print the same
output, because both are the same SDK calls (in-process app, or HTTP).

The two roots start from the same files. The script: ingest with metadata, a tag, a message and
embeddings; an ingest on a branch; a tag on the branch; a row changed; query, count, search, diff,
log, describe, export; a branch forked from a version of another; merge, restore, clone.

``ingest`` is one staged upload session on either side, so the ingest steps run on each side's own
target too, and give the same versions and summary (the ``root``/``server`` line aside).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from app.store import Ref, Store
from lightbox.cli import main
from tests.conftest import LiveServer

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?")
SPEED = re.compile(r" in \d+\.\d s \([\d,]+ images/s\)")
WHERE = re.compile(r"^(root|server)     .*$", re.M)  # where an ingest wrote: the root, or the service


@dataclass
class Side:
    """One way of running the script: a folder of its own, its root, and the flags naming its target."""

    name: str
    folder: Path
    root: str
    target: list[str]

    def argv(self, step: list[str]) -> list[str]:
        return [a.format(dir=self.folder) for a in step] + self.target

    def normal(self, text: str) -> str:
        """The output with what differs by nature between two roots removed: their folders and times."""
        text = WHERE.sub("<WHERE>", text.replace(str(self.folder), "<DIR>"))
        return SPEED.sub(" in <S>", TIME.sub("<TIME>", text))


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path) -> Iterator[tuple[Side, Side]]:
    """Two folders with the same source files; the second root served by one live server for the module."""
    made = []
    for name in ("uri", "server"):
        folder = tmp_path_factory.mktemp(f"both_{name}")
        shutil.copytree(digits_dir / "images", folder / "images")
        shutil.copy(digits_dir / "digits.csv", folder / "digits.csv")
        for i, path in enumerate(sorted((digits_dir / "images" / "7").glob("*.png"))[:5]):  # new files for a branch
            (folder / "extra" / "7").mkdir(parents=True, exist_ok=True)
            shutil.copy(path, folder / "extra" / "7" / f"x{i}.png")
        (folder / "out").mkdir()
        made.append((name, folder, str(folder / "data")))
    for _, _, root in made:  # both roots exist before the script (the server's before it starts)
        Path(root).mkdir()
    server = LiveServer(made[1][2]).start()
    yield (Side(made[0][0], made[0][1], made[0][2], ["--uri", made[0][2]]),
           Side(made[1][0], made[1][1], made[1][2], ["--server", server.url]))
    server.stop()


SCRIPT: list[list[str]] = [
    ["ingest", "{dir}/images", "--table", "d", "--labels-from-dirs", "--metadata", "{dir}/digits.csv", "--key", "file",
     "--embed", "builtin", "--tag", "v1", "-m", "first load", "--author", "ada", "--no-progress"],
    ["ingest", "{dir}/extra", "--table", "d", "--branch", "more", "--labels-from-dirs", "-m", "sevens on a branch",
     "--author", "ada", "--no-progress"],
    ["tags", "d", "create", "more-1", "--branch", "more"],
    ["row", "d", "3/00003.png", "--set", "label=8", "-m", "relabel a three", "--author", "bob"],
    ["row", "d", "3/00003.png", "0/00000.png", "-c", "id,label,split,ink", "--format", "json"],
    ["query", "d", "-f", "label = 8", "-c", "id,label,split", "--order-by", "id", "-n", "0", "--format", "json"],
    ["query", "d", "--branch", "more", "-f", "id LIKE '7/x%'", "-c", "id,label", "--order-by", "id"],
    ["count", "d", "-f", "split = 'test'"],
    ["count", "d", "--at", "v1", "-f", "label = 3"],
    ["search", "d", "--like", "3/00003.png", "-k", "5", "-c", "id,label", "--format", "json"],
    ["search", "d", "--like", "3/00003.png", "-k", "3", "-f", "label = 7", "--branch", "more", "-c", "id"],
    ["diff", "d", "v1", "main", "--ids"],
    ["diff", "d", "v1", "more", "--ids"],
    ["log", "d"],
    ["log", "d", "--branch", "more", "--oneline"],
    ["describe", "d", "--json"],
    ["export", "d", "{dir}/out/v1-threes.parquet", "--at", "v1", "-f", "label = 3", "--columns", "label,split"],
    ["branch", "d", "fork", "--branch", "more", "--at", "1"],
    ["branch", "d"],
    ["merge", "d", "more", "-m", "bring the sevens in", "--author", "cy"],
    ["restore", "d", "--at", "v1", "-m", "back to the first load", "--author", "cy"],
    ["clone", "d", "d-more", "--at", "more-1"],
    ["query", "d-more", "-c", "id,label", "-n", "0", "--order-by", "id", "--format", "csv"],
    ["tables"],
]


def run(side: Side, step: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(side.argv(step))
    out, err = capsys.readouterr()
    assert code == 0, (side.name, step, err)
    if step[0] == "describe":  # the bytes a table keeps may differ by a few (its files hold their own times)
        described = json.loads(out)
        assert described.pop("size")["bytes"] > 0
        out = json.dumps(described, sort_keys=True)
    return side.normal(out)


def test_the_same_script_gives_the_same_tables_versions_and_output(sides: tuple[Side, Side],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    uri, server = sides
    for step in SCRIPT:
        assert run(uri, step, capsys) == run(server, step, capsys), step
    a, b = Store(uri.root), Store(server.root)
    assert a.names() == b.names() == ["d", "d-more"]
    for name, branch in (("d", None), ("d", "more"), ("d", "fork"), ("d-more", None)):
        assert log_of(a, name, branch) == log_of(b, name, branch), (name, branch)
        assert rows_of(a, name, branch) == rows_of(b, name, branch), (name, branch)
    assert sorted(a.latest("d").tags.list()) == sorted(b.latest("d").tags.list()) == \
        ["lightbox-clone-d-more", "more-1", "v1"]
    exported = [pq.read_table(side.folder / "out" / "v1-threes.parquet").to_pylist() for side in sides]
    assert exported[0] == exported[1] and len(exported[0]) == Store(uri.root).snapshot(
        "d", Ref(tag="v1")).count("label = 3")


def log_of(store: Store, name: str, branch: str | None) -> list[tuple[object, ...]]:
    from app.services.history import list_versions

    page, _ = list_versions(store, name, branch=branch, limit=1000, ascending=True)
    return [(v["version"], v["operation"], v["message"], v["author"], v["num_rows"], v["rows_added"],
             v["rows_removed"], v["rows_updated"], tuple(v["tags"])) for v in page]


def rows_of(store: Store, name: str, branch: str | None) -> list[dict[str, object]]:
    table = store.latest(name, branch).to_table(columns=["id", "label", "sha256"])
    return sorted(table.to_pylist(), key=lambda r: str(r["id"]))
