"""Zero-copy clones and version retention (``POST /clone``, ``POST /optimize``), checked on disk too.

A clone shares its source's data files: it holds none of its own until it is written to, and the
source version it reads is tagged so that pruning the source never deletes files the clone needs.
``optimize`` compacts, folds new rows into indexes and prunes untagged versions older than the
retention, keeping tagged versions and the versions branches were forked from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import lance
import pyarrow as pa
import pytest

from app.store import Store
from tests.conftest import InProcess
from tests.helpers import arrow_stream, assert_error, run_cli

ARROW = "application/vnd.apache.arrow.stream"
CLONE_TAG = "lightbox-clone-"


def data_files(table_dir: Path) -> list[Path]:
    return sorted((table_dir / "data").glob("*.lance")) if (table_dir / "data").is_dir() else []


class Api:
    def __init__(self, app: InProcess, http: httpx.Client, pictures: list[bytes]) -> None:
        self.app = app
        self.http = http
        self.pictures = pictures

    def add(self, table: str, labels: dict[str, int], *, picture: int = 0, **params: str) -> int:
        rows = pa.table({"id": list(labels), "image": pa.array([self.pictures[picture]] * len(labels), pa.binary()),
                         "label": pa.array(list(labels.values()), pa.int64()),
                         "split": [("test" if v % 2 else "train") for v in labels.values()]})
        response = self.http.post(f"/api/v1/tables/{table}/rows", content=arrow_stream(rows),
                                  headers={"content-type": ARROW}, params=params)
        assert response.status_code == 201 and not response.json()["skipped"], response.text
        return response.json()["version"]

    def labels(self, table: str, **ref: Any) -> dict[str, int]:
        response = self.http.post(f"/api/v1/tables/{table}/query", params=ref,
                                  json={"columns": ["id", "label"], "limit": 10_000})
        assert response.status_code == 200, response.text
        return {r["id"]: r["label"] for r in response.json()["rows"]}

    def image(self, table: str, key: str, **ref: Any) -> bytes:
        response = self.http.get(f"/api/v1/tables/{table}/rows/{key}/image", params=ref)
        assert response.status_code == 200, response.text
        return response.content

    def versions(self, table: str) -> list[int]:
        response = self.http.get(f"/api/v1/tables/{table}/versions", params={"order": "asc", "limit": 1000})
        assert response.status_code == 200, response.text
        return [v["version"] for v in response.json()]

    def tags(self, table: str) -> dict[str, int]:
        return {t["name"]: t["version"] for t in self.http.get(f"/api/v1/tables/{table}/tags").json()["tags"]}

    def optimize(self, table: str, **params: Any) -> dict[str, Any]:
        response = self.http.post(f"/api/v1/tables/{table}/optimize", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def create(self, table: str) -> None:
        made = self.http.post("/api/v1/tables", json={"name": table, "schema": [
            {"name": "label", "type": "int64"}, {"name": "split", "type": "string"}]})
        assert made.status_code == 201, made.text


@pytest.fixture
def api(store: Store, in_process, samples_dir: Path) -> Api:
    app = in_process(store.uri)
    pictures = [(samples_dir / n).read_bytes() for n in ("horse.png", "chessboard_GRAY.png", "multipage.tif")]
    with app.http() as http:
        yield Api(app, http, pictures)


# -- clone -------------------------------------------------------------------------------------
def test_clone_shares_files_is_independent_and_protects_its_source(api: Api, store: Store) -> None:
    root = Path(store.uri)
    api.create("src")
    api.add("src", {f"r{i}": i for i in range(5)}, tag="v1")
    untagged = api.add("src", {"r5": 5}, picture=1)
    api.add("src", {"r6": 6}, picture=2)
    at_v1 = api.labels("src", tag="v1")
    at_untagged = api.labels("src", version=untagged)

    by_tag = api.http.post("/api/v1/tables/src/clone", json={"name": "by-tag", "tag": "v1"})
    assert by_tag.status_code == 201, by_tag.text
    assert by_tag.json()["source_version"] == api.tags("src")["v1"] and by_tag.json()["num_rows"] == 5
    by_version = api.http.post("/api/v1/tables/src/clone", json={"name": "by-version", "version": untagged})
    assert by_version.status_code == 201, by_version.text
    assert by_version.json()["num_rows"] == 6

    # no bytes copied: the clones' folders hold no data files, the source's do
    assert data_files(root / "src.lance")
    for clone in ("by-tag", "by-version"):
        assert data_files(root / f"{clone}.lance") == [], clone
    assert api.labels("by-tag") == at_v1 and api.labels("by-version") == at_untagged
    assert api.image("by-version", "r5") == api.pictures[1] and api.image("by-tag", "r0") == api.pictures[0]
    listed = {t["name"] for t in api.http.get("/api/v1/tables").json()["tables"]}
    assert {"src", "by-tag", "by-version"} <= listed
    tags = api.tags("src")
    assert (tags[CLONE_TAG + "by-tag"], tags[CLONE_TAG + "by-version"]) == (tags["v1"], untagged)
    # the source's files are the clones' too: it cannot be dropped while they exist
    refused = assert_error(api.http.delete("/api/v1/tables/src"), 409)
    assert refused["detail"]["clones"] == ["by-tag", "by-version"]
    assert api.labels("src", tag="v1") == at_v1

    # a clone is writable on its own; its new data lands in its own folder
    api.add("by-version", {"c1": 100}, picture=2)
    patched = api.http.patch("/api/v1/tables/by-version/rows/r0", json={"label": 1000})
    assert patched.status_code == 200, patched.text
    assert data_files(root / "by-version.lance")
    assert api.labels("by-version") == {**at_untagged, "c1": 100, "r0": 1000}
    assert api.labels("src")["r0"] == 0 and "c1" not in api.labels("src")
    assert data_files(root / "by-tag.lance") == []

    # pruning the clone never touches the files it borrows from the source
    source_files = data_files(root / "src.lance")
    api.optimize("by-version", retention_seconds=0)
    assert data_files(root / "src.lance") == source_files
    assert api.labels("src", tag="v1") == at_v1 and api.image("src", "r5") == api.pictures[1]
    assert api.labels("by-version") == {**at_untagged, "c1": 100, "r0": 1000}

    # the source moves on and prunes everything untagged; both clones still read every row and image
    api.http.post("/api/v1/tables/src/delete", json={"filter": "label < 3"})
    api.http.patch("/api/v1/tables/src/rows/r5", json={"label": 55})
    api.add("src", {"r7": 7})
    pruned = api.optimize("src", retention_seconds=0)
    assert pruned["old_versions_removed"] > 0
    assert untagged in api.versions("src")  # kept for the clone
    assert api.labels("by-tag") == at_v1
    for key in at_v1:
        assert api.image("by-tag", key) == api.pictures[0], key
    assert set(api.labels("by-version")) == set(at_untagged) | {"c1"}
    assert api.image("by-version", "r5") == api.pictures[1] and api.image("by-version", "r1") == api.pictures[0]
    assert lance.dataset(str(root / "by-version.lance")).count_rows() == 7  # the engine agrees, from disk

    # dropping a clone releases its tag on the source; the other clone keeps its own
    assert api.http.delete("/api/v1/tables/by-version").status_code == 204
    tags = api.tags("src")
    assert CLONE_TAG + "by-version" not in tags and CLONE_TAG + "by-tag" in tags
    api.optimize("src", retention_seconds=0)
    assert untagged not in api.versions("src")  # nothing protects it any more
    assert_error(api.http.get("/api/v1/tables/src", params={"version": untagged}), 404)
    assert api.labels("by-tag") == at_v1
    assert assert_error(api.http.delete("/api/v1/tables/src"), 409)["detail"]["clones"] == ["by-tag"]
    assert api.http.delete("/api/v1/tables/by-tag").status_code == 204
    assert api.http.delete("/api/v1/tables/src").status_code == 204
    assert api.http.get("/api/v1/tables").json()["tables"] == []


def test_clone_refusals(api: Api) -> None:
    api.create("src")
    api.add("src", {"r0": 0}, tag="v1")
    assert api.http.post("/api/v1/tables/src/clone", json={"name": "copy"}).status_code == 201  # latest
    assert api.labels("copy") == {"r0": 0}
    assert_error(api.http.post("/api/v1/tables/src/clone", json={"name": "copy"}), 409, "table_exists")
    assert_error(api.http.post("/api/v1/tables/src/clone", json={"name": "src", "tag": "v1"}), 409, "table_exists")
    assert_error(api.http.post("/api/v1/tables/nope/clone", json={"name": "x"}), 404, "table_not_found")
    assert_error(api.http.post("/api/v1/tables/src/clone", json={"name": "x", "tag": "nope"}), 404)
    assert_error(api.http.post("/api/v1/tables/src/clone", json={"name": "x", "version": 99}), 404)
    assert_error(api.http.post("/api/v1/tables/src/clone", json={"name": "bad name!"}), 400)
    assert_error(api.http.post("/api/v1/tables/src/clone", json={"name": "x", "version": 1, "tag": "v1"}), 400)
    assert_error(api.http.post("/api/v1/tables/src/clone", json={}), 400)
    names = {t["name"] for t in api.http.get("/api/v1/tables").json()["tables"]}
    assert names == {"src", "copy"}
    assert set(api.tags("src")) == {"v1", CLONE_TAG + "copy"}


# -- retention and maintenance -----------------------------------------------------------------
def test_optimize_prunes_untagged_versions_and_keeps_tagged_and_branch_ones(api: Api, store: Store) -> None:
    api.create("t")
    v2 = api.add("t", {"a": 1})
    v3 = api.add("t", {"b": 2}, tag="keep")
    v4 = api.add("t", {"c": 3}, picture=1)
    made = api.http.post("/api/v1/tables/t/branches", json={"name": "br", "version": v4})
    assert made.status_code == 201, made.text
    api.add("t", {"d": 4})
    api.http.delete("/api/v1/tables/t/rows/a")
    api.add("t", {"e": 5})
    before = api.versions("t")
    latest = before[-1]
    at = {v: api.labels("t", version=v) for v in (v2, v3, v4)}  # warm the server's handles on them too
    assert api.image("t", "a", version=v2) == api.pictures[0]
    fragments = len(lance.dataset(store.table_uri("t")).get_fragments())
    assert fragments >= 4

    kept_all = api.optimize("t")  # the default retention (days) prunes nothing yet
    assert kept_all["old_versions_removed"] == 0
    compacted = kept_all["version"]
    assert compacted > latest  # compaction commits (never rewrites history)
    assert len(lance.dataset(store.table_uri("t")).get_fragments()) < fragments
    assert kept_all["fragments_removed"] > kept_all["fragments_added"] >= 1
    assert set(before) <= set(api.versions("t"))

    pruned = api.optimize("t", retention_seconds=0)  # a tagged version is older than that: no failure
    assert pruned["old_versions_removed"] > 0
    after = api.versions("t")
    assert len(after) < len(before)
    assert v3 in after and v4 in after and compacted in after  # tagged, branched from, latest
    assert v2 not in after and latest - 1 not in after
    for gone in (v2, latest - 1):
        assert_error(api.http.get("/api/v1/tables/t", params={"version": gone}), 404, "version_not_found")
        assert_error(api.http.post("/api/v1/tables/t/query", params={"version": gone}, json={}), 404)
        assert_error(api.http.get("/api/v1/tables/t/rows/a/image", params={"version": gone}), 404)
    assert api.labels("t", tag="keep") == at[v3]
    assert api.image("t", "b", tag="keep") == api.pictures[0]
    assert api.labels("t", version=v4) == at[v4]
    assert api.labels("t", branch="br") == at[v4]
    assert api.image("t", "c", branch="br") == api.pictures[1]
    assert api.labels("t") == {"b": 2, "c": 3, "d": 4, "e": 5}
    assert lance.dataset(store.table_uri("t")).validate() is None

    # the branch still works: write to it, merge it back
    api.add("t", {"f": 6}, branch="br")
    merged = api.http.post("/api/v1/tables/t/branches/br/merge", json={})
    assert merged.status_code == 200 and merged.json()["merged"] is True, merged.text
    assert api.labels("t")["f"] == 6


@pytest.mark.parametrize(("column", "kind"), [("label", "BTREE"), ("split", "BITMAP")])
def test_optimize_folds_new_rows_into_indexes(api: Api, column: str, kind: str) -> None:
    api.create("t")
    api.add("t", {f"r{i}": i for i in range(6)})
    made = api.http.post("/api/v1/tables/t/indexes", json={"column": column, "type": kind})
    assert made.status_code == 201, made.text
    name = made.json()["name"]

    def index() -> dict[str, Any]:
        response = api.http.get("/api/v1/tables/t/indexes")
        assert response.status_code == 200, response.text
        found = {i["name"]: i for i in response.json()["indexes"]}
        assert found[name]["type"] and found[name]["columns"] == [column]
        return found[name]

    assert (index()["num_indexed_rows"], index()["num_unindexed_rows"]) == (6, 0)
    api.add("t", {"n1": 11, "n2": 12})
    api.add("t", {"n3": 13})
    assert index()["num_unindexed_rows"] == 3
    api.optimize("t", retention_seconds=0)
    assert (index()["num_indexed_rows"], index()["num_unindexed_rows"]) == (9, 0)
    # the index answers filters with every row, old and new
    count = api.http.get("/api/v1/tables/t/count", params={"filter": "label >= 11" if column == "label"
                                                           else "split = 'test'"}).json()["count"]
    assert count == (3 if column == "label" else 5)  # labels 1, 3, 5, 11, 13 are odd


def test_optimize_and_index_errors(api: Api) -> None:
    assert_error(api.http.post("/api/v1/tables/nope/optimize"), 404, "table_not_found")
    api.create("t")
    api.add("t", {"a": 1})
    assert_error(api.http.post("/api/v1/tables/t/optimize", params={"retention_seconds": -1}), 400)
    assert_error(api.http.post("/api/v1/tables/t/indexes", json={"column": "nope", "type": "BTREE"}), 400)
    assert_error(api.http.post("/api/v1/tables/t/indexes", json={"column": "label", "type": "MAGIC"}), 400)
    assert_error(api.http.post("/api/v1/tables/t/indexes", json={"column": "label", "type": "IVF_PQ"}), 400)
    assert hashlib.sha256(api.image("t", "a")).hexdigest() == hashlib.sha256(api.pictures[0]).hexdigest()


# -- a clone's guard ---------------------------------------------------------------------------
def test_a_clone_guard_cannot_be_removed_and_retention_keeps_what_the_clone_reads(
        api: Api, store: Store, live_server) -> None:
    import lancedb

    from lightbox.errors import LightboxError

    root = Path(store.uri)
    guard = CLONE_TAG + "c"
    api.create("src")
    api.add("src", {f"r{i}": i for i in range(6)})
    api.add("src", {f"s{i}": 10 + i for i in range(4)}, picture=1)
    deleted = api.http.post("/api/v1/tables/src/delete", json={"filter": "label = 1 OR label = 11"})
    assert deleted.status_code == 200, deleted.text
    # the cloned version has deletions: the clone reads the source's deletion files too
    made = api.http.post("/api/v1/tables/src/clone", json={"name": "c"})
    assert made.status_code == 201 and made.json()["num_rows"] == 8, made.text
    expected = api.labels("c")
    pictures = {key: api.image("c", key) for key in expected}
    assert set(expected) == {"r0", "r2", "r3", "r4", "r5", "s0", "s2", "s3"}
    guarded_at = api.tags("src")[guard]
    # a branch forked at the same version, and a clone of a version of that branch
    branched = api.http.post("/api/v1/tables/src/branches", json={"name": "b", "version": guarded_at})
    assert branched.status_code == 201, branched.text
    api.http.post("/api/v1/tables/src/delete", params={"branch": "b"}, json={"filter": "label = 3"})
    from_branch = api.http.post("/api/v1/tables/src/clone", json={"name": "cb", "branch": "b"})
    assert from_branch.status_code == 201, from_branch.text
    on_branch = api.labels("src", branch="b")
    assert set(on_branch) == set(expected) - {"r3"} and api.labels("cb") == on_branch
    assert_error(api.http.delete("/api/v1/tables/src/branches/b"), 409)  # its guard reads it

    def refused(response: httpx.Response) -> None:
        error = assert_error(response, 409, "clone_guard")
        assert error["detail"]["clone"] == "c" and "'c'" in error["message"], error

    # native API: neither deleted nor moved nor re-created
    refused(api.http.delete(f"/api/v1/tables/src/tags/{guard}"))
    refused(api.http.put(f"/api/v1/tables/src/tags/{guard}", json={"version": 1}))
    refused(api.http.put(f"/api/v1/tables/src/tags/{guard}", json={}))
    refused(api.http.post("/api/v1/tables/src/tags", json={"name": guard, "version": 1}))
    # nor is the prefix anyone's to use by hand
    assert_error(api.http.post("/api/v1/tables/src/tags", json={"name": CLONE_TAG + "x", "version": 1}), 400)
    assert_error(api.http.put(f"/api/v1/tables/src/tags/{CLONE_TAG}y", json={"version": 1}), 400)
    # the LanceDB protocol, with LanceDB's own client (over a socket: its core is Rust) and on the wire
    server = live_server(store.uri)
    db = lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url)
    tbl = db.open_table("src")
    for attempt in (lambda: tbl.tags.delete(guard), lambda: tbl.tags.update(guard, 1),
                    lambda: tbl.tags.create(CLONE_TAG + "z", 1)):
        with pytest.raises(Exception):  # noqa: B017 - the client wraps the 4xx in its own error types
            attempt()
    refused(api.http.post("/v1/table/src/tags/delete/", json={"tag": guard}))
    refused(api.http.post("/v1/table/src/tags/update/", json={"tag": guard, "version": 1}))
    # the SDK and the CLI (over HTTP and on the data root)
    with api.app.sdk() as client, pytest.raises(LightboxError) as sdk_error:
        client.table("src").untag(guard)
    assert sdk_error.value.status == 409 and sdk_error.value.code == "clone_guard"
    with api.app.sdk() as client, pytest.raises(LightboxError):
        client.table("src").tag(guard, 1, move=True)
    for where in (("--server", server.url), ("--uri", store.uri)):
        ran = run_cli("tags", "src", "delete", guard, *where)
        assert ran.returncode != 0 and "clone" in ran.stderr, (ran.stdout, ran.stderr)
    assert api.tags("src")[guard] == guarded_at

    # the source moves on: more deletions, an update, new rows, compaction, retention 0
    api.http.post("/api/v1/tables/src/delete", json={"filter": "label = 2 OR label = 12"})
    api.http.patch("/api/v1/tables/src/rows/r3", json={"label": 33})
    api.http.delete("/api/v1/tables/src/rows/r0")
    api.add("src", {"n0": 100}, picture=2)
    api.optimize("src")
    pruned = api.optimize("src", retention_seconds=0)
    assert pruned["old_versions_removed"] > 0
    assert api.labels("c") == expected
    for key, picture in pictures.items():
        assert api.image("c", key) == picture, key
    assert lance.dataset(str(root / "c.lance")).validate() is None
    assert lance.dataset(str(root / "src.lance")).validate() is None
    assert api.labels("src", tag=guard) == expected
    assert api.labels("src", branch="b") == on_branch == api.labels("cb")
    for key in on_branch:
        assert api.image("src", key, branch="b") == pictures[key] == api.image("cb", key), key
    assert lance.dataset(str(root / "cb.lance")).validate() is None

    # the clone writes (deletions of its own) and prunes itself: the source's guarded version is intact
    api.http.post("/api/v1/tables/c/delete", json={"filter": "label = 0"})
    api.add("c", {"cn": 7})
    api.optimize("c", retention_seconds=0)
    assert api.labels("c") == {**{k: v for k, v in expected.items() if v != 0}, "cn": 7}
    assert api.image("c", "s3") == pictures["s3"]
    assert api.labels("src", tag=guard) == expected and api.image("src", "s0", tag=guard) == pictures["s0"]

    # dropping the clone releases the guard; the source may then prune the cloned version
    assert api.http.delete("/api/v1/tables/c").status_code == 204
    assert guard not in api.tags("src")
    assert api.http.delete("/api/v1/tables/cb").status_code == 204
    assert api.http.delete("/api/v1/tables/src/branches/b").status_code == 204  # no guard reads it now
    api.optimize("src", retention_seconds=0)
    assert guarded_at not in api.versions("src")
    assert lance.dataset(str(root / "src.lance")).validate() is None


def test_retention_waits_while_a_clone_has_no_guard(api: Api, store: Store, live_server) -> None:
    root = Path(store.uri)
    api.create("src")
    api.add("src", {f"r{i}": i for i in range(4)})
    api.http.post("/api/v1/tables/src/delete", json={"filter": "label = 1"})
    assert api.http.post("/api/v1/tables/src/clone", json={"name": "c"}).status_code == 201
    expected = api.labels("c")
    # a clone of the clone reads the source's files through the clone: its guard covers them
    assert api.http.post("/api/v1/tables/c/clone", json={"name": "c2"}).status_code == 201
    api.http.post("/api/v1/tables/src/delete", json={"filter": "label = 0"})
    pruned = api.optimize("src", retention_seconds=0)
    assert "retention_skipped" not in pruned and pruned["old_versions_removed"] > 0, pruned
    assert api.labels("c2") == expected and api.image("c2", "r2") == api.pictures[0]
    assert assert_error(api.http.delete("/api/v1/tables/c"), 409)["detail"]["clones"] == ["c2"]
    lance.dataset(str(root / "src.lance")).tags.delete(CLONE_TAG + "c")  # removed behind Lightbox's back
    api.http.post("/api/v1/tables/src/delete", json={"filter": "label = 2"})
    api.optimize("src")
    kept = api.optimize("src", retention_seconds=0)
    assert kept["old_versions_removed"] == 0 and "['c', 'c2']" in kept["retention_skipped"], kept
    ran = run_cli("optimize", "src", "--server", live_server(store.uri).url)
    assert ran.returncode == 0 and "warning" in ran.stderr and "'c'" in ran.stderr, (ran.stdout, ran.stderr)
    assert api.labels("c") == expected and api.image("c", "r3") == api.pictures[0]
    assert lance.dataset(str(root / "c.lance")).validate() is None

    assert api.labels("c2") == expected

    # once the clones are gone, retention prunes again
    assert api.http.delete("/api/v1/tables/c2").status_code == 204
    assert api.http.delete("/api/v1/tables/c").status_code == 204
    pruned = api.optimize("src", retention_seconds=0)
    assert pruned["old_versions_removed"] > 0 and "retention_skipped" not in pruned
    assert api.labels("src") == {"r3": 3}
