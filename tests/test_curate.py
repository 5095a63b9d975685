"""Curate: label issues, duplicates and uniqueness written as ordinary columns in one version, through
the SDK, HTTP and the CLI (all in this process), on the 200 digits with builtin vectors."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import lightbox
from app.services.curate.method import Neighbours, duplicate_groups, label_scores, originals, uniqueness
from tests.helpers import assert_error, run_cli

FLIPS = {"0/00000.png": 8, "1/00001.png": 7, "2/00002.png": 5}
RESULTS = ["label_issue", "suggested_label", "duplicate_of", "uniqueness"]


@pytest.fixture
def root(tmp_path: Path, digits_root: Path) -> str:
    """A writable copy of the digits root (200 digits, labels from their folders, builtin vectors)."""
    shutil.copytree(digits_root, tmp_path / "data")
    return str(tmp_path / "data")


def _image(root: str, row_id: str) -> bytes:
    with lightbox.connect(root) as client:
        return client.table("digits").image_bytes(row_id)


def _rows(table: Any, **kw: Any) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in table.query(columns=["id", "label", *RESULTS], limit=None, **kw).to_pylist()}


def test_curate_writes_ordinary_columns_in_one_version(root: str) -> None:
    copy = _image(root, "5/00005.png")
    with lightbox.connect(root) as client:
        t = client.table("digits")
        for row_id, wrong in FLIPS.items():
            t.update(row_id, {"label": wrong}, message="a wrong label")
        t.add([copy], metadata=[{"label": 5}], ids=["copy-of-5.png"])
        before = t.info()["version"]
        out = t.curate(label="label", message="find mistakes", author="ann")
        assert out["version"] == before + 1 and out["operation"] == "curate" and out["columns"] == RESULTS
        entry = t.versions(limit=1, newest_first=True)[0]
        assert (entry["operation"], entry["message"], entry["author"]) == ("curate", "find mistakes", "ann")
        assert entry["rows_updated"] == 201

        # sort and filter on them like any column: the flipped labels lead, and their digit is suggested
        top = t.query(columns=["id", "suggested_label"], order_by="label_issue desc", limit=3).to_pylist()
        assert {r["id"] for r in top} == set(FLIPS)
        assert all(r["suggested_label"] == int(r["id"].split("/")[0]) for r in top)
        assert t.query("duplicate_of IS NOT NULL", columns=["id", "duplicate_of"]).to_pylist() == [
            {"id": "copy-of-5.png", "duplicate_of": "5/00005.png"}]  # the row ingested first is the original
        rows = _rows(t)
        median = float(np.median([r["uniqueness"] for r in rows.values()]))
        assert rows["copy-of-5.png"]["uniqueness"] < median and rows["5/00005.png"]["uniqueness"] < median
        assert all(0.0 <= r["uniqueness"] <= 1.0 and 0.0 <= r["label_issue"] <= 1.0 for r in rows.values())
        assert max(r["uniqueness"] for r in rows.values()) == 1.0

        # diff and time travel see them as a change of every row
        change = t.diff(before, out["version"])
        assert change["counts"] == {"added": 0, "removed": 0, "changed": 201}
        assert "label_issue" in change["changed"][0]["columns"]
        assert "label_issue" not in t.at(version=before).query(limit=1).column_names

        # relabelling a suspect is an ordinary write with its message
        t.update("0/00000.png", {"label": 0}, message="fix the label curate found")
        assert t.versions(limit=1, newest_first=True)[0]["message"] == "fix the label curate found"
        assert t.delete("duplicate_of IS NOT NULL", message="drop the copy")["deleted"] == 1
        entry = t.versions(limit=1, newest_first=True)[0]
        assert (entry["operation"], entry["message"], entry["rows_removed"]) == ("delete", "drop the copy", 1)


def test_a_second_curate_after_new_rows_updates_every_row_in_one_version(root: str) -> None:
    copy = _image(root, "3/00003.png")
    with lightbox.connect(root) as client:
        t = client.table("digits")
        t.curate(label="label")
        t.add([copy, _image(root, "4/00004.png")], metadata=[{"label": 3}, {"label": 4}],
              ids=["late-3.png", "late-4.png"])
        assert _rows(t)["late-3.png"]["uniqueness"] is None  # not curated yet
        before = t.info()["version"]
        again = t.curate(label="label")
        assert again["version"] == before + 1 and again["rows"] == 202
        rows = _rows(t)
        assert all(r["uniqueness"] is not None and r["label_issue"] is not None for r in rows.values())
        assert rows["late-3.png"]["duplicate_of"] == "3/00003.png"
        assert rows["late-4.png"]["duplicate_of"] == "4/00004.png"
        # nothing changed since: no new version
        assert t.curate(label="label")["version"] == again["version"]


def test_without_a_label_column_duplicates_and_uniqueness_only(root: str) -> None:
    with lightbox.connect(root) as client:
        t = client.table("digits")
        out = t.curate()
        assert out["columns"] == ["duplicate_of", "uniqueness"] and out["label"] is None
        names = t.info()["schema"]
        assert {"duplicate_of", "uniqueness"} <= {f["name"] for f in names}
        assert not {"label_issue", "suggested_label"} & {f["name"] for f in names}
        # a label column added later: the next curate adds the label columns in one version
        with_labels = t.curate(label="label")
        assert with_labels["columns"] == RESULTS and t.count("label_issue IS NULL") == 0


@pytest.mark.parametrize(("body", "status", "code", "says"), [
    ({"label": "nope"}, 400, "invalid_curate", "does not exist"),
    ({"label": "vector"}, 400, "invalid_curate", "is a vector column"),
    ({"label": "image"}, 400, "invalid_curate", "holds images"),
    ({"label": "ink"}, 400, "invalid_curate", "cannot hold a class label"),
    ({"label": "label", "k": 0}, 400, "invalid_curate", "between 1 and 100"),
    ({"label": "label", "k": 101}, 400, "invalid_curate", "between 1 and 100"),
    ({"label": "label", "threshold": -1}, 400, "invalid_curate", "threshold"),
    ({"column": "label"}, 400, "no_vector_column", "not a vector column"),
    ({"k": "many"}, 400, "invalid_request", "body.k"),
])
def test_bad_curate_requests_are_4xx_with_candidates(root: str, in_process: Any, body: dict[str, Any], status: int,
                                                     code: str | None, says: str) -> None:
    with in_process(root).http() as http:
        before = http.get("/api/v1/tables/digits").json()["version"]
        error = assert_error(http.post("/api/v1/tables/digits/curate", json=body), status, code)
        assert says in json.dumps(error)
        if code == "invalid_curate" and "label" in body and body.get("k") is None and "threshold" not in body:
            assert error["detail"]["candidates"] == ["label", "split"]
        assert http.get("/api/v1/tables/digits").json()["version"] == before


def test_a_table_without_vectors_is_told_to_embed(tmp_path: Path, in_process: Any) -> None:
    with in_process(str(tmp_path / "data")).http() as http:
        assert http.post("/api/v1/tables", json={"name": "t", "schema": [{"name": "label", "type": "int64"}]}
                         ).status_code == 201
        error = assert_error(http.post("/api/v1/tables/t/curate", json={"label": "label"}), 400, "no_vector_column")
        assert "lightbox embed" in error["message"]
        assert_error(http.post("/api/v1/tables/nope/curate", json={}), 404, "table_not_found")


def test_sdk_cli_and_http_agree(tmp_path: Path, digits_root: Path, in_process: Any) -> None:
    roots = {door: str(tmp_path / door) for door in ("sdk", "cli", "http")}
    for uri in roots.values():
        shutil.copytree(digits_root, uri)
    with lightbox.connect(roots["sdk"]) as client:
        client.table("digits").curate(label="label", k=5)
    done = run_cli("curate", "digits", "--label", "label", "-k", "5", "--uri", roots["cli"])
    assert done.returncode == 0, done.stderr
    assert "curated 200 rows of digits as version 2" in done.stdout
    with in_process(roots["http"]).http() as http:
        assert http.post("/api/v1/tables/digits/curate", json={"label": "label", "k": 5}).status_code == 201
    found = []
    for uri in roots.values():
        with lightbox.connect(uri) as client:
            found.append(client.table("digits").query(columns=["id", *RESULTS], order_by="id", limit=None))
    assert found[0].equals(found[1]) and found[0].equals(found[2])


def test_the_async_client_curates_and_keeps_views(root: str, in_process: Any) -> None:
    app = in_process(root)

    async def run() -> tuple[dict[str, Any], list[dict[str, Any]], int]:
        async with app.async_sdk() as client:
            t = client.table("digits")
            out = await t.curate(label="label")
            await t.save_view("suspects", "label_issue > 0.5")
            return out, await t.views(), await t.count(view="suspects")

    out, views, suspects = asyncio.run(run())
    assert out["columns"] == RESULTS and [v["name"] for v in views] == ["suspects"]
    with lightbox.connect(root) as client:
        assert suspects == client.table("digits").count("label_issue > 0.5")


# -- the method on arrays ------------------------------------------------------------------------------
def _near(pairs: list[list[tuple[int, float]]]) -> Neighbours:
    width = max(len(p) for p in pairs)
    positions = np.full((len(pairs), width), -1, np.int64)
    distances = np.full((len(pairs), width), np.inf, np.float32)
    for i, row in enumerate(pairs):
        for j, (pos, dist) in enumerate(row):
            positions[i, j], distances[i, j] = pos, dist
    return Neighbours(positions, distances)


def test_groups_link_hashes_and_close_pairs_and_the_first_ingested_is_the_original() -> None:
    near = _near([[(1, 0.005), (2, 0.5)], [(0, 0.005), (2, 0.4)], [(1, 0.4), (0, 0.5)], [(2, 0.9)]])
    hashes = np.array([0, 1, 2, 2])  # rows 2 and 3 hold the same bytes
    groups = duplicate_groups(hashes, near, threshold=0.01)
    assert groups.tolist() == [0, 0, 2, 2]
    order = np.array([3, 1, 0, 2])  # row 3 ingested first, then 1, 0, 2
    assert originals(groups, order).tolist() == [1, 1, 3, 3]
    assert duplicate_groups(None, near, threshold=0.0).tolist() == [0, 1, 2, 3]


def test_label_scores_vote_outside_the_duplicate_group() -> None:
    # row 0 (label 1) sits among label-0 rows; its exact copy (row 1, label 1) must not vouch for it
    near = _near([[(1, 0.0), (2, 0.1), (3, 0.1)], [(0, 0.0), (2, 0.1), (3, 0.1)],
                  [(3, 0.05), (0, 0.1)], [(2, 0.05), (0, 0.1)]])
    labels = np.array([1, 1, 0, 0])
    groups = np.array([0, 0, 2, 3])
    issue, suggested = label_scores(labels, 2, near, groups, k=2)
    assert suggested.tolist()[:2] == [0, 0] and issue[0] > 0.6 and issue[2] < 0.5
    unlabelled, _ = label_scores(np.array([-1, 1, 0, 0]), 2, near, groups, k=2)
    assert np.isnan(unlabelled[0])
    unique = uniqueness(near)
    assert unique[0] < unique[2] and unique.max() == 1.0 and unique.min() >= 0.0


def test_results_are_float32_and_the_label_type() -> None:
    from app.services.curate.service import _floats

    out = _floats(np.array([0.5, np.nan, 0.25]), np.array([True, True, False]))
    assert out.type == pa.float32() and out.to_pylist() == [0.5, None, None]


def test_an_empty_table_with_vectors_curates_to_nothing(tmp_path: Path, in_process: Any) -> None:
    with in_process(str(tmp_path / "data")).http() as http:
        assert http.post("/api/v1/tables", json={"name": "t", "schema": [{"name": "label", "type": "int64"}]}
                         ).status_code == 201
        assert http.post("/api/v1/tables/t/embeddings", json={"model": "builtin"}).status_code == 201
        before = http.get("/api/v1/tables/t").json()["version"]
        out = http.post("/api/v1/tables/t/curate", json={"label": "label"})
        assert out.status_code == 201, out.text
        assert out.json()["rows"] == 0 and out.json()["version"] == before


def test_scores_are_committed_only_on_the_rows_they_were_computed_from(root: str) -> None:
    """Curate computes without the write turn: a view saved meanwhile is no reason to refuse, a changed row is."""
    from app.errors import Conflict
    from app.services.curate.service import _check_unmoved
    from app.store import Store

    store = Store(root, refresh_seconds=0.0)
    read = store.head("digits", fresh=True).version
    with lightbox.connect(root) as client:
        t = client.table("digits")
        t.save_view("threes", "label = 3")
        _check_unmoved(store, "digits", read)  # a config change keeps every row
        t.update("0/00000.png", {"label": 1})
    with pytest.raises(Conflict, match="changed while curate ran"):
        _check_unmoved(store, "digits", read)


def test_label_scores_by_blocks_equal_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.services.curate import method

    rng = np.random.default_rng(0)
    rows, m = 50, 7
    positions = rng.integers(-1, rows, (rows, m))
    distances = np.sort(rng.random((rows, m)).astype(np.float32), axis=1)
    near = Neighbours(positions, distances)
    labels, groups = rng.integers(-1, 4, rows), rng.integers(0, 40, rows)
    whole = label_scores(labels, 4, near, groups, k=3)
    monkeypatch.setattr(method, "BLOCK", 8)
    blocks = label_scores(labels, 4, near, groups, k=3)
    np.testing.assert_array_equal(whole[1], blocks[1])
    np.testing.assert_allclose(whole[0], blocks[0])
