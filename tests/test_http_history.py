"""Refs (version, tag, branch, as_of), the version log, tags and restore through the service's app
(in this process).

The history is made the way users make it: ``run_ingest`` commits on main, and pylance itself
creates a branch, appends to it and tags it, so the service must read what Lance wrote.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import lance
import pyarrow as pa
import pytest
from lance.blob import blob_array
from PIL import Image

from app.store import Store
from app.store.schema import image_schema
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import InProcess
from tests.helpers import assert_error

T = "/api/v1/tables/t"


def png(value: int, size: tuple[int, int] = (6, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size, value).save(buf, format="PNG")
    return buf.getvalue()


def folder(base: Path, name: str, files: dict[str, bytes]) -> Path:
    path = base / name
    path.mkdir(parents=True)
    for file, data in files.items():
        (path / file).write_bytes(data)
    return path


def ingest(store: Store, source: Path, **options: Any) -> int:
    report = run_ingest(store, IngestOptions(table="t", sources=[str(source)], progress=False, **options))
    assert report.version is not None and not report.skipped
    return report.version


@dataclass
class History:
    """main: v1 a0-a2 (tag v1), v2 + b0-b1, v3 + d0; branch exp forked at v2: its v3 + e0 (tag exp-tag)."""

    root: str
    files: dict[str, bytes]
    ids: dict[str, set[str]]
    started: dt.datetime
    finished: dt.datetime


FILES = {"a0.png": png(10), "a1.png": png(20), "a2.png": png(30), "b0.png": png(40), "b1.png": png(50),
         "d0.png": png(60), "e0.png": png(70, (5, 5))}


def branch_rows(files: dict[str, bytes]) -> pa.Table:
    schema = image_schema()
    now = dt.datetime.now(dt.UTC)
    ids = list(files)
    datas = [files[i] for i in ids]
    cols = {"id": ids, "mime": ["image/png"] * len(ids), "width": [5] * len(ids), "height": [5] * len(ids),
            "mode": ["L"] * len(ids), "frames": [1] * len(ids), "size_bytes": [len(d) for d in datas],
            "sha256": [hashlib.sha256(d).hexdigest() for d in datas], "source": ids, "ingested_at": [now] * len(ids)}
    arrays = [blob_array(datas) if f.name == "image" else pa.array(cols[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    base = tmp_path_factory.mktemp("history")
    store = Store(str(base / "data"))
    started = dt.datetime.now(dt.UTC)
    pick = lambda *names: {n: FILES[n] for n in names}  # noqa: E731
    assert ingest(store, folder(base, "a", pick("a0.png", "a1.png", "a2.png")), message="first load",
                  author="alice", tag="v1") == 1
    time.sleep(1.1)  # distinct commit times, so as_of can fall between v1 and v2
    assert ingest(store, folder(base, "b", pick("b0.png", "b1.png")), message="second", author="bob") == 2
    ds = lance.dataset(store.table_uri("t"))
    branch = ds.create_branch("exp", 2)
    written = lance.write_dataset(branch_rows(pick("e0.png")), branch, mode="append")
    assert written.version == 3
    ds.tags.create("exp-tag", ("exp", 3))
    assert ingest(store, folder(base, "d", pick("d0.png")), message="third", author="carol") == 3
    ids = {"1": {"a0.png", "a1.png", "a2.png"}}
    ids["2"] = ids["1"] | {"b0.png", "b1.png"}
    ids["3"] = ids["2"] | {"d0.png"}
    ids["exp"] = ids["2"] | {"e0.png"}
    return History(store.uri, FILES, ids, started, dt.datetime.now(dt.UTC))


@pytest.fixture(scope="module")
def app(history: History) -> Iterator[InProcess]:
    served = InProcess(history.root)
    yield served
    served.close()


@pytest.fixture
def client(app: InProcess) -> Iterator[httpx.Client]:
    with app.http(timeout=30) as c:
        yield c


def ids_at(client: httpx.Client, query: str = "") -> tuple[set[str], httpx.Response]:
    response = client.post(f"{T}/query{query}", json={"columns": ["id"], "limit": 1000})
    assert response.status_code == 200, response.text
    return {r["id"] for r in response.json()["rows"]}, response


# -- refs -----------------------------------------------------------------------------------------


def test_each_ref_kind_reads_its_own_data(client: httpx.Client, history: History) -> None:
    for query, key, version, branch in (("", "3", "3", None), ("?version=1", "1", "1", None),
                                        ("?version=2", "2", "2", None), ("?version=3", "3", "3", None),
                                        ("?tag=v1", "1", "1", None), ("?branch=exp", "exp", "3", "exp"),
                                        ("?tag=exp-tag", "exp", "3", "exp")):
        ids, response = ids_at(client, query)
        assert ids == history.ids[key], query
        assert response.headers["x-lightbox-version"] == version, query
        assert response.headers.get("x-lightbox-branch") == branch, query
        count = client.get(f"{T}/count{query}")
        assert count.json() == {"count": len(history.ids[key])}, query
        assert count.headers["x-lightbox-version"] == version and count.headers.get("x-lightbox-branch") == branch
        info = client.get(f"{T}{query}").json()
        assert (info["version"], info["branch"], info["num_rows"]) == (int(version), branch, len(history.ids[key]))
    # bytes through a branch, a tag on it, and 404 where the row does not exist
    for query in ("?branch=exp", "?tag=exp-tag"):
        image = client.get(f"{T}/rows/e0.png/image{query}")
        assert image.status_code == 200 and image.content == history.files["e0.png"]
        assert image.headers["x-lightbox-branch"] == "exp"
    assert image.headers["cache-control"] == "public, max-age=31536000, immutable"  # a tag never moves
    assert client.get(f"{T}/rows/e0.png/image?branch=exp").headers["cache-control"] == "no-cache"
    assert_error(client.get(f"{T}/rows/e0.png"), 404, "row_not_found")
    assert_error(client.get(f"{T}/rows/d0.png?branch=exp"), 404, "row_not_found")
    assert_error(client.get(f"{T}/rows/b0.png?tag=v1"), 404, "row_not_found")
    assert client.get(f"{T}/rows/b0.png?version=2").json()["id"] == "b0.png"
    fetched = client.post(f"{T}/fetch?tag=exp-tag", json={"ids": ["e0.png", "d0.png"], "with_images": True}).json()
    assert [r["id"] for r in fetched["rows"]] == ["e0.png"] and fetched["missing"] == ["d0.png"]


def test_as_of_picks_the_newest_version_at_or_before(client: httpx.Client, history: History) -> None:
    entries = {e["version"]: e for e in client.get(f"{T}/versions?order=asc").json()}
    t1 = dt.datetime.fromisoformat(entries[1]["timestamp"])
    t2 = dt.datetime.fromisoformat(entries[2]["timestamp"])
    assert t2 - t1 > dt.timedelta(seconds=1)
    between = t1 + (t2 - t1) / 2
    for moment, version in ((between, "1"), (t1, "1"), (t2, "2"), (t2 - dt.timedelta(milliseconds=5), "1"),
                            (dt.datetime(2999, 1, 1, tzinfo=dt.UTC), "3")):
        response = client.get(f"{T}/count", params={"as_of": moment.isoformat()})
        assert response.status_code == 200, (moment, response.text)
        assert response.headers["x-lightbox-version"] == version, moment
        assert response.json()["count"] == len(history.ids[version])
    zulu = between.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"
    ids, response = ids_at(client, f"?as_of={zulu}")
    assert ids == history.ids["1"] and response.headers["x-lightbox-version"] == "1"
    assert_error(client.get(f"{T}/count", params={"as_of": (t1 - dt.timedelta(seconds=1)).isoformat()}), 404,
             "version_not_found")


@pytest.fixture
def local_zone_not_utc() -> Iterator[None]:
    """The process's local time zone set to UTC+05:30 for one test (pylance reports local times)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_timestamps_and_as_of_are_utc_whatever_the_local_zone(
    local_zone_not_utc: None, client: httpx.Client, history: History
) -> None:
    entries = {e["version"]: e for e in client.get(f"{T}/versions").json()}
    slack = dt.timedelta(seconds=2)
    for entry in entries.values():
        stamp = dt.datetime.fromisoformat(entry["timestamp"])
        assert stamp.utcoffset() == dt.timedelta(0)
        assert history.started - slack <= stamp <= history.finished + slack, entry
    t1 = dt.datetime.fromisoformat(entries[1]["timestamp"])
    t2 = dt.datetime.fromisoformat(entries[2]["timestamp"])
    between = (t1 + (t2 - t1) / 2).astimezone(dt.timezone(dt.timedelta(hours=-7)))  # any offset: same instant
    response = client.get(f"{T}/count", params={"as_of": between.isoformat()})
    assert response.headers["x-lightbox-version"] == "1"


def test_refs_naming_nothing_are_404_and_two_refs_are_400(client: httpx.Client) -> None:
    nothing = ("?version=99", "?tag=nope", "?branch=nope", "?as_of=2000-01-01T00:00:00Z")
    for query in nothing:
        assert_error(client.get(f"{T}/count{query}"), 404, "version_not_found")
        assert_error(client.post(f"{T}/query{query}", json={}), 404, "version_not_found")
        assert_error(client.post(f"{T}/fetch{query}", json={"ids": ["a0.png"]}), 404, "version_not_found")
        assert_error(client.get(f"{T}/rows/a0.png{query}"), 404, "version_not_found")
        assert_error(client.get(f"{T}/rows/a0.png/thumbnail{query}"), 404, "version_not_found")
    two = ("?version=1&tag=v1", "?tag=v1&branch=exp", "?branch=exp&as_of=2999-01-01T00:00:00Z",
           "?version=1&as_of=2999-01-01T00:00:00Z")
    for query in two:
        err = assert_error(client.get(f"{T}/count{query}"), 400, "invalid_ref")
        assert "at most one" in err["message"]
        assert_error(client.post(f"{T}/query{query}", json={}), 400, "invalid_ref")
        assert_error(client.post(f"{T}/fetch{query}", json={"ids": []}), 400, "invalid_ref")
        assert_error(client.get(f"{T}/rows/a0.png/image{query}"), 400, "invalid_ref")
    for query in ("?version=x", "?version=-1", "?version=1.5", "?as_of=not-a-time", f"?version={2**64}"):
        assert_error(client.get(f"{T}/count{query}"), 400, "invalid_ref")


def test_concurrent_requests_at_different_refs_each_get_their_own_data(
    app: InProcess, history: History
) -> None:
    refs = [("?version=1", "1", "1"), ("?version=2", "2", "2"), ("?tag=exp-tag", "exp", "3"), ("", "3", "3"),
            ("?branch=exp", "exp", "3")]

    def hammer(worker: int) -> int:
        checked = 0
        with app.http(timeout=30) as own:
            for i in range(12):
                query, key, version = refs[(worker + i) % len(refs)]
                ids, response = ids_at(own, query)
                assert ids == history.ids[key], (query, ids)
                assert response.headers["x-lightbox-version"] == version
                count = own.get(f"{T}/count{query}")
                assert count.json()["count"] == len(history.ids[key]) and count.headers["x-lightbox-version"] == version
                for row_id in ("b0.png", "e0.png", "d0.png"):
                    image = own.get(f"{T}/rows/{row_id}/image{query}")
                    if row_id in history.ids[key]:
                        assert image.status_code == 200 and image.content == history.files[row_id], (query, row_id)
                    else:
                        assert image.status_code == 404, (query, row_id)
                checked += 1
        return checked

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(hammer, range(8))) == 8 * 12


# -- the version log ------------------------------------------------------------------------------


def test_versions_show_message_author_operation_rows_and_tags(client: httpx.Client) -> None:
    response = client.get(f"{T}/versions")
    assert response.status_code == 200
    entries = response.json()
    assert "x-lightbox-next-cursor" not in response.headers
    assert [e["version"] for e in entries] == [3, 2, 1]  # newest first
    by_version = {e["version"]: e for e in entries}
    for version, message, author, rows in ((1, "first load", "alice", 3), (2, "second", "bob", 5),
                                           (3, "third", "carol", 6)):
        entry = by_version[version]
        assert {"version", "timestamp", "message", "author", "operation", "num_rows", "tags"} <= set(entry)
        assert (entry["message"], entry["author"], entry["num_rows"]) == (message, author, rows), entry
        dt.datetime.fromisoformat(entry["timestamp"])
    assert by_version[2]["operation"] == by_version[3]["operation"] == "insert"
    assert by_version[1]["operation"] in ("create", "insert")
    assert by_version[1]["tags"] == ["v1"] and by_version[2]["tags"] == [] and by_version[3]["tags"] == []
    assert by_version[3]["rows_delta"] == 1
    branch = client.get(f"{T}/versions?branch=exp").json()
    assert branch[0]["version"] == 3 and branch[0]["num_rows"] == 6 and branch[0]["tags"] == ["exp-tag"]


def test_versions_paging_and_order(client: httpx.Client) -> None:
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = client.get(f"{T}/versions", params=params)
        seen += [e["version"] for e in response.json()]
        pages += 1
        cursor = response.headers.get("x-lightbox-next-cursor")
        if cursor is None:
            break
    assert seen == [3, 2, 1] and pages == 2
    ascending = client.get(f"{T}/versions", params={"order": "asc", "limit": 1})
    assert [e["version"] for e in ascending.json()] == [1]
    cursor = ascending.headers["x-lightbox-next-cursor"]
    rest = client.get(f"{T}/versions", params={"order": "asc", "limit": 5, "cursor": cursor})
    assert [e["version"] for e in rest.json()] == [2, 3] and "x-lightbox-next-cursor" not in rest.headers
    for bad in ({"limit": 0}, {"limit": 5000}, {"order": "sideways"}, {"cursor": "x"}):
        assert_error(client.get(f"{T}/versions", params=bad), 400)
    assert_error(client.get("/api/v1/tables/nope/versions"), 404, "table_not_found")


# -- tags and restore (each test writes, so each has its own table) -------------------------------


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Main only: v1 a0-a2 (tag v1), v2 + b0-b1, v3 + d0; built once, copied by each test."""
    base = tmp_path_factory.mktemp("small")
    store = Store(str(base / "data"))
    pick = lambda *names: {n: FILES[n] for n in names}  # noqa: E731
    ingest(store, folder(base, "a", pick("a0.png", "a1.png", "a2.png")), tag="v1")
    ingest(store, folder(base, "b", pick("b0.png", "b1.png")))
    ingest(store, folder(base, "d", pick("d0.png")))
    return base / "data"


@pytest.fixture
def small(small_root: Path, tmp_path: Path, in_process: Callable[..., InProcess]
          ) -> Iterator[tuple[httpx.Client, Store]]:
    """A copy of ``small_root`` of the test's own, served in this process."""
    shutil.copytree(small_root, tmp_path / "data")
    store = Store(str(tmp_path / "data"))
    with in_process(store.uri).http(timeout=30) as c:
        yield c, store


def tags_of(client: httpx.Client) -> dict[str, tuple[int, str | None]]:
    response = client.get(f"{T}/tags")
    assert response.status_code == 200
    return {t["name"]: (t["version"], t["branch"]) for t in response.json()["tags"]}


def test_tag_create_move_delete(small: tuple[httpx.Client, Store]) -> None:
    client, store = small
    assert tags_of(client) == {"v1": (1, None)}
    created = client.post(f"{T}/tags", json={"name": "release", "version": 2})
    assert created.status_code == 201 and created.json() == {"name": "release", "version": 2, "branch": None}
    assert tags_of(client) == {"v1": (1, None), "release": (2, None)}
    assert client.get(f"{T}/count?tag=release").json() == {"count": 5}
    assert lance.dataset(store.table_uri("t")).tags.list()["release"]["version"] == 2  # really in Lance
    head = client.post(f"{T}/tags", json={"name": "head"})  # no ref: the latest version
    assert head.status_code == 201 and head.json()["version"] == 3
    again = client.post(f"{T}/tags", json={"name": "release", "version": 2})  # same place: a no-op
    assert again.status_code == 201 and tags_of(client)["release"] == (2, None)
    dup = client.post(f"{T}/tags", json={"name": "release", "version": 1})
    assert "release" in assert_error(dup, 409, "conflict")["message"]
    assert_error(client.post(f"{T}/tags", json={"name": "v1", "version": 3}), 409, "conflict")
    # move
    moved = client.put(f"{T}/tags/release", json={"version": 1})
    assert moved.status_code == 200 and moved.json()["version"] == 1
    assert tags_of(client)["release"] == (1, None)
    assert client.get(f"{T}/count?tag=release").json() == {"count": 3}
    versions = {e["version"]: e["tags"] for e in client.get(f"{T}/versions").json()}
    assert versions == {1: ["release", "v1"], 2: [], 3: ["head"]}
    put_new = client.put(f"{T}/tags/fresh")  # PUT of an unknown tag creates it at the latest version
    assert put_new.status_code == 200 and tags_of(client)["fresh"] == (3, None)
    # delete
    deleted = client.delete(f"{T}/tags/release")
    assert deleted.status_code == 204 and deleted.content == b""
    assert "release" not in tags_of(client)
    assert_error(client.delete(f"{T}/tags/release"), 404, "tag_not_found")
    assert_error(client.get(f"{T}/count?tag=release"), 404, "version_not_found")
    # errors
    assert_error(client.post(f"{T}/tags", json={"name": "ghost", "version": 99}), 404, "version_not_found")
    assert_error(client.put(f"{T}/tags/v1", json={"version": 99}), 404, "version_not_found")
    for bad in ("bad name", ".hidden", "a..b", "ends.", "x.lock", "slash/y", "", "x" * 200, "semi;colon"):
        err = assert_error(client.post(f"{T}/tags", json={"name": bad, "version": 1}), 400, "invalid_name")
        assert "tag name" in err["message"]
    assert_error(client.put(f"{T}/tags/bad%20name", json={"version": 1}), 400, "invalid_name")
    assert_error(client.post(f"{T}/tags", json={"version": 1}), 400)  # no name
    assert_error(client.post(f"{T}/tags", json={"name": "x", "version": 1, "tag": "v1"}), 400, "invalid_ref")
    assert_error(client.post("/api/v1/tables/nope/tags", json={"name": "x"}), 404, "table_not_found")
    # a tag on a branch (made by pylance), then moved back onto main
    lance.dataset(store.table_uri("t")).create_branch("exp", 2)
    on_branch = client.post(f"{T}/tags", json={"name": "exp-head", "branch": "exp"})
    assert on_branch.status_code == 201 and on_branch.json() == {"name": "exp-head", "version": 2, "branch": "exp"}
    assert tags_of(client)["exp-head"] == (2, "exp")
    count = client.get(f"{T}/count?tag=exp-head")
    assert count.json() == {"count": 5} and count.headers["x-lightbox-branch"] == "exp"
    assert_error(client.post(f"{T}/tags", json={"name": "exp-head", "branch": "exp"}), 409, "conflict")
    assert_error(client.post(f"{T}/tags", json={"name": "nob", "branch": "nope"}), 404, "version_not_found")
    assert client.put(f"{T}/tags/exp-head", json={"version": 3}).json()["branch"] is None
    assert tags_of(client)["exp-head"] == (3, None)
    count = client.get(f"{T}/count?tag=exp-head")
    assert count.json() == {"count": 6} and "x-lightbox-branch" not in count.headers
    assert set(tags_of(client)) == {"v1", "head", "fresh", "exp-head"}


def rows_with_digests(client: httpx.Client, query: str = "") -> list[tuple[str, str]]:
    response = client.post(f"{T}/query{query}", json={"columns": ["id", "sha256"], "limit": 1000})
    assert response.status_code == 200
    return sorted((r["id"], r["sha256"]) for r in response.json()["rows"])


def test_restore_a_tag_makes_a_new_version_with_its_rows(small: tuple[httpx.Client, Store]) -> None:
    client, store = small
    v1 = rows_with_digests(client, "?tag=v1")
    assert v1 == sorted((n, hashlib.sha256(FILES[n]).hexdigest()) for n in ("a0.png", "a1.png", "a2.png"))
    restored = client.post(f"{T}/restore", json={"tag": "v1"})
    assert restored.status_code == 200, restored.text
    assert restored.json() == {"version": 4, "restored": 1, "num_rows": 3}
    assert rows_with_digests(client) == v1
    assert client.get(f"{T}/count").headers["x-lightbox-version"] == "4"
    assert rows_with_digests(client, "?version=3") != v1  # history is kept
    assert lance.dataset(store.table_uri("t")).version == 4
    log = client.get(f"{T}/versions?limit=1").json()[0]
    assert log["version"] == 4 and log["num_rows"] == 3 and log["operation"] == "restore"
    image = client.get(f"{T}/rows/a1.png/image")
    assert image.content == FILES["a1.png"]
    assert_error(client.get(f"{T}/rows/b0.png"), 404, "row_not_found")
    # restoring what is already the latest is a conflict; a version, via the query string, also works
    assert_error(client.post(f"{T}/restore", json={"version": 4}), 409, "conflict")
    assert_error(client.post(f"{T}/restore?version=4"), 409, "conflict")
    again = client.post(f"{T}/restore?version=2")
    assert again.status_code == 200 and again.json() == {"version": 5, "restored": 2, "num_rows": 5}
    assert [r[0] for r in rows_with_digests(client)] == ["a0.png", "a1.png", "a2.png", "b0.png", "b1.png"]
    assert_error(client.post(f"{T}/restore", json={}), 400)
    assert_error(client.post(f"{T}/restore", json={"version": 99}), 404, "version_not_found")
    assert_error(client.post(f"{T}/restore", json={"tag": "nope"}), 404, "version_not_found")
    assert_error(client.post(f"{T}/restore", json={"version": 1, "tag": "v1"}), 400, "invalid_ref")
