"""Two real `lightbox serve` processes over one data root: when one drops a table and creates
another under the same name, the other serves the new table (rows, image bytes, thumbnails,
queries, search hits, pinned versions) within its refresh interval, never the old one; and when
the table is dropped for good, the other answers 404."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import lightbox
from tests.serve_procs import ServeProcess

REFRESH = 0.5
SLACK = 1.0
ENV = {"LIGHTBOX_LATEST_REFRESH_SECONDS": str(REFRESH)}


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    uri = str(tmp_path / "data")
    started: list[ServeProcess] = []
    try:
        for name in ("a", "b"):
            started.append(ServeProcess(uri, env=ENV, log=tmp_path / f"{name}.log"))
        for server in started:
            server.wait_ready()
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


def build(client: lightbox.Client, files: dict[str, Path], label: int) -> None:
    """create (v1), add (v2), embed (v3): both tables reach the same version numbers."""
    t = client.create_table("t", [{"name": "label", "type": "int64"}])
    added = t.add(list(files.values()), ids=list(files), metadata=[{"label": label + i} for i in range(len(files))])
    assert added["inserted"] == len(files)
    t.embed("builtin")


def view(http: httpx.Client, table: lightbox.Table, ids: list[str]) -> dict:
    """Everything the reading process serves about table ``t``."""
    rows = table.query(columns=["id", "label", "sha256"], limit=None).to_pylist()
    first = ids[0]
    return {
        "rows": sorted((r["id"], r["label"], r["sha256"]) for r in rows),
        "row": table.get(first)["label"],
        "image": table.image_bytes(first),
        "thumbnail": table.thumbnail(first, size=32),
        "pinned": sorted(table.at(version=2).query(columns=["id", "label"], limit=None).column("id").to_pylist()),
        "hits": sorted(table.search(like=first, k=10, columns=["id"]).column("id").to_pylist()),
        "versions": [v["version"] for v in table.versions()],
        "count": http.get("/api/v1/tables/t/count").json(),
    }


@pytest.mark.long
def test_a_dropped_and_recreated_table_is_seen_by_the_other_process(two_servers, samples_dir: Path) -> None:
    a, b = two_servers
    old_files = {"a": samples_dir / "astronaut.png", "b": samples_dir / "camera.png", "c": samples_dir / "horse.png"}
    new_files = {"a": samples_dir / "rocket.jpg", "d": samples_dir / "china.jpg",
                 "e": samples_dir / "chessboard_GRAY.png", "f": samples_dir / "camera.webp"}
    with lightbox.Client(a.url) as ca, lightbox.Client(b.url) as cb, httpx.Client(base_url=a.url) as ha, \
            httpx.Client(base_url=b.url) as hb:
        build(cb, old_files, 10)
        time.sleep(REFRESH + SLACK)
        before = view(ha, ca.table("t"), ["a"])
        assert before["rows"] == view(hb, cb.table("t"), ["a"])["rows"]
        assert before["image"] == old_files["a"].read_bytes()
        assert sorted(before["hits"]) == ["b", "c"]

        cb.drop_table("t")
        build(cb, new_files, 20)
        expected = view(hb, cb.table("t"), ["a"])
        assert expected["versions"] == before["versions"]  # the same numbers: only identity tells them apart
        time.sleep(REFRESH + SLACK)
        after = view(ha, ca.table("t"), ["a"])
        assert after == expected
        assert after["image"] == new_files["a"].read_bytes()
        assert after["row"] == 20 and after["hits"] == ["d", "e", "f"]
        assert after["pinned"] == ["a", "d", "e", "f"]

        # a branch deleted and created again under its name: the same version numbers, other rows
        tb, ta = cb.table("t"), ca.table("t")
        tb.create_branch("b", version=3)
        tb.branch("b").update("a", {"label": 31})
        time.sleep(REFRESH + SLACK)
        assert ta.at(branch="b").get("a")["label"] == 31
        assert [v["message"] for v in ha.get("/api/v1/tables/t/versions?branch=b&limit=1").json()] == ["update 1 row"]
        tb.delete_branch("b")
        tb.create_branch("b", version=3)
        tb.branch("b").update("a", {"label": 32}, message="again")
        time.sleep(REFRESH + SLACK)
        assert ta.at(branch="b").get("a")["label"] == 32
        assert [v["message"] for v in ha.get("/api/v1/tables/t/versions?branch=b&limit=1").json()] == ["again"]

        cb.drop_table("t")
        time.sleep(REFRESH + SLACK)
        for path in ("/api/v1/tables/t/rows/a", "/api/v1/tables/t/rows/a/image", "/api/v1/tables/t/rows/a/thumbnail",
                     "/api/v1/tables/t/rows/a?version=2", "/api/v1/tables/t/versions"):
            response = ha.get(path)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"]["code"]
        for path, body in (("/api/v1/tables/t/query", {}), ("/api/v1/tables/t/search", {"image_id": "a"})):
            response = ha.post(path, json=body)
            assert response.status_code == 404, (path, response.text)
