"""Saved views: a named filter + sort + columns (+ ref) kept in the table's config, through HTTP, the SDK
(sync and async) and the CLI, seen after a restart and by a replica, and listed with their error when the
table's schema no longer fits them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

import lightbox
from tests.helpers import assert_error, run_cli

V = "/api/v1/tables/digits/views"


@pytest.fixture
def root(tmp_path: Path, digits_root: Path) -> str:
    shutil.copytree(digits_root, tmp_path / "data")
    return str(tmp_path / "data")


def test_views_are_saved_listed_used_and_deleted_over_http(root: str, in_process: Any) -> None:
    with in_process(root).http() as http:
        assert http.get(V).json() == {"views": []}
        body = {"filter": "split = 'test'", "columns": ["id", "label"], "order_by": ["label desc"]}
        saved = http.put(f"{V}/test-set", json=body)
        assert saved.status_code == 200 and saved.json() == {"name": "test-set", **body, "ref": None, "error": None}
        assert http.get(V).json()["views"] == [saved.json()] and http.get(f"{V}/test-set").json() == saved.json()
        assert http.get("/api/v1/tables/digits/versions", params={"limit": 1}).status_code == 200

        rows = http.post("/api/v1/tables/digits/query", json={"view": "test-set", "limit": 100}).json()["rows"]
        assert len(rows) == 40 and set(rows[0]) == {"id", "label"}
        assert [r["label"] for r in rows] == sorted((r["label"] for r in rows), reverse=True)
        both = http.post("/api/v1/tables/digits/query", json={"view": "test-set", "filter": "label = 3"}).json()
        assert {r["label"] for r in both["rows"]} == {3}  # the view's filter ANDed with the request's
        assert http.get("/api/v1/tables/digits/count", params={"view": "test-set"}).json() == {"count": 40}
        assert http.get("/api/v1/tables/digits/count", params={"view": "test-set", "filter": "label = 3"}
                        ).json()["count"] == len(both["rows"])

        assert http.delete(f"{V}/test-set").status_code == 204
        assert_error(http.get(f"{V}/test-set"), 404, "view_not_found")
        assert_error(http.delete(f"{V}/test-set"), 404, "view_not_found")
        assert_error(http.post("/api/v1/tables/digits/query", json={"view": "test-set"}), 404, "view_not_found")


@pytest.mark.parametrize(("name", "body", "status", "code"), [
    ("bad name", {}, 400, "invalid_name"),
    ("-dash", {}, 400, "invalid_name"),
    ("x" * 129, {}, 400, "invalid_name"),
    ("ok", {"filter": "nope = 1"}, 400, "invalid_filter"),
    ("ok", {"filter": "label = "}, 400, "invalid_filter"),
    ("ok", {"columns": ["nope"]}, 400, "unknown_column"),
    ("ok", {"order_by": ["nope desc"]}, 400, "unknown_column"),
    ("ok", {"ref": {"tag": "nope"}}, 404, None),
    ("ok", {"ref": {"version": 1, "tag": "v1"}}, 400, "invalid_ref"),
    ("ok", {"ref": {"nope": 1}}, 400, "invalid_ref"),
    ("ok", {"filters": "label = 1"}, 422, "unknown_field"),
])
def test_bad_views_are_refused_and_nothing_is_stored(root: str, in_process: Any, name: str, body: dict[str, Any],
                                                     status: int, code: str | None) -> None:
    with in_process(root).http() as http:
        before = http.get("/api/v1/tables/digits").json()["version"]
        assert_error(http.put(f"{V}/{name}", json=body), status, code)
        assert http.get(V).json() == {"views": []}
        assert http.get("/api/v1/tables/digits").json()["version"] == before


def test_a_view_with_a_ref_reads_there_unless_the_request_names_one(root: str) -> None:
    with lightbox.connect(root) as client:
        t = client.table("digits")
        t.delete("label = 0")
        t.save_view("at-v1", "label = 0", ref={"tag": "v1"})
        assert t.count(view="at-v1") == t.at(tag="v1").count("label = 0") > 0
        assert t.at(version=t.info()["version"]).count(view="at-v1") == 0  # the handle's ref wins
        assert len(t.query(view="at-v1", limit=None)) == t.count(view="at-v1")


def test_a_view_with_a_ref_pages_by_cursor(root: str, in_process: Any) -> None:
    with in_process(root).http() as http:
        http.post("/api/v1/tables/digits/delete", json={"filter": "label = 0"})
        assert http.put(f"{V}/zeros", json={"filter": "label = 0", "ref": {"tag": "v1"}}).status_code == 200
        seen, cursor = [], None
        while True:
            page = http.post("/api/v1/tables/digits/query", json={"view": "zeros", "limit": 7, "cursor": cursor})
            assert page.status_code == 200, page.text
            seen += [r["id"] for r in page.json()["rows"]]
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        assert len(seen) == len(set(seen)) == http.get("/api/v1/tables/digits/count", params={"tag": "v1",
                                                                                         "filter": "label = 0"}
                                                       ).json()["count"] > 7


def test_views_survive_a_restart_and_later_writes(root: str) -> None:
    with lightbox.connect(root) as client:
        client.table("digits").save_view("threes", "label = 3", order_by="id")
    with lightbox.connect(root) as client:  # a new service over the same root
        t = client.table("digits")
        t.update("0/00000.png", {"split": "train"}, message="a later write")
        assert [v["name"] for v in t.views()] == ["threes"]
        assert t.count(view="threes") == t.count("label = 3")


def test_a_view_the_schema_no_longer_fits_is_listed_with_its_error(root: str, in_process: Any) -> None:
    """A restore to a version before curate takes its columns away: the view that filters on one is listed
    (restore carries the views over) with the error a query through it gets, a 400, never a 500."""
    with lightbox.connect(root) as client:
        t = client.table("digits")
        before = t.info()["version"]
        t.curate(label="label")
        t.save_view("suspects", "label_issue > 0.5", order_by="label_issue desc")
        t.save_view("threes", "label = 3")
        t.restore(version=before)
        views = {v["name"]: v for v in t.views()}
    assert set(views) == {"suspects", "threes"} and views["threes"]["error"] is None
    assert "label_issue" in views["suspects"]["error"]
    with in_process(root).http() as http:
        assert http.get(f"{V}/suspects").json()["error"] == views["suspects"]["error"]
        assert_error(http.post("/api/v1/tables/digits/query", json={"view": "suspects"}), 400, "invalid_filter")
        assert_error(http.get("/api/v1/tables/digits/count", params={"view": "suspects"}), 400, "invalid_filter")


def test_a_replica_sees_views_saved_through_it_and_through_the_writer(root: str, tuned_server: Any) -> None:
    writer = tuned_server(root)
    replica = tuned_server(root, writer_url=writer.url)
    with httpx.Client(base_url=replica.url, timeout=60) as through, \
            httpx.Client(base_url=writer.url, timeout=60) as direct:
        assert through.put(f"{V}/sevens", json={"filter": "label = 7"}).status_code == 200  # forwarded
        assert direct.put(f"{V}/eights", json={"filter": "label = 8"}).status_code == 200
        for http in (through, direct):
            assert [v["name"] for v in http.get(V).json()["views"]] == ["eights", "sevens"]
        assert through.get("/api/v1/tables/digits/count", params={"view": "sevens"}).json()["count"] == \
            direct.get("/api/v1/tables/digits/count", params={"filter": "label = 7"}).json()["count"]
        assert through.delete(f"{V}/sevens").status_code == 204
        assert [v["name"] for v in direct.get(V).json()["views"]] == ["eights"]


def test_cli_views_and_view_on_query_count_search_export(root: str, tmp_path: Path) -> None:
    def cli(*args: str) -> str:
        done = run_cli(*args, "--uri", root)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("view", "save", "digits", "fours", "--filter", "label = 4", "-c", "id,label", "--order-by", "id desc")
    assert cli("view", "list", "digits").strip() == "fours: label = 4"
    assert json.loads(cli("view", "show", "digits", "fours"))["columns"] == ["id", "label"]
    with lightbox.connect(root) as client:
        fours = client.table("digits").count("label = 4")
    assert cli("count", "digits", "--view", "fours").strip() == str(fours)
    rows = json.loads(cli("query", "digits", "--view", "fours", "--format", "json"))
    assert len(rows) == fours and set(rows[0]) == {"id", "label"} and rows[0]["id"] > rows[-1]["id"]
    hits = json.loads(cli("search", "digits", "--like", "0/00000.png", "--view", "fours", "-k", "3",
                          "--format", "json"))
    assert len(hits) == 3 and {h["label"] for h in hits} == {4}
    out = cli("export", "digits", str(tmp_path / "fours.parquet"), "--view", "fours")
    assert f"exported {fours} rows" in out
    cli("view", "delete", "digits", "fours")
    assert cli("view", "list", "digits").strip() == ""
    missing = run_cli("count", "digits", "--view", "fours", "--uri", root)
    assert missing.returncode != 0 and "no view 'fours'" in missing.stderr


def test_torch_dataset_through_a_view(root: str, live_server: Any) -> None:
    """The dataset opens its own clients by URL (forked workers do too): a real server."""
    pytest.importorskip("torch")
    with lightbox.Client(live_server(root).url) as client:
        t = client.table("digits")
        t.save_view("ones", "label = 1", columns=["label"])
        ds = t.torch_dataset(view="ones")
        assert len(ds) == t.count("label = 1")
        assert all(ds[i]["label"] == 1 for i in range(len(ds)))
