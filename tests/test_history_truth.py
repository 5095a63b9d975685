"""The log never lies: annotation imports, upserts, patches and the index keeper's commits are logged
under the operation they are, with the counts ``diff`` gives against the version before; a write
that changes no value writes no version; and a column added to some rows changes only those rows,
in ``diff`` and on the gallery's row page."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from app.store import Store
from app.store.vectors import IndexKeeper
from app.store.writes import append_stream
from tests.history_api import ARROW, Log, arrow, in_process, ok, png

T = "/api/v1/tables/t"
UI_JS = Path(__file__).resolve().parents[1] / "app" / "ui" / "js"


def upload(http, ids: list[str], seeds: list[int], labels: list[int], mode: str = "insert") -> dict:
    files = [("files", (f"{i}.png", png(s), "image/png")) for i, s in zip(ids, seeds, strict=True)]
    meta = json.dumps([{"id": i, "label": n} for i, n in zip(ids, labels, strict=True)])
    return ok(http.post(f"{T}/rows", files=files, data={"metadata": meta}, params={"mode": mode}), 201)


def coco(boxes: dict[str, list[float]], listed: list[str] = ()) -> dict:
    """A COCO file annotating each named image with one box; ``listed`` images have no annotation."""
    names = [*boxes, *listed]
    return {"images": [{"id": n, "file_name": name} for n, name in enumerate(names, start=1)],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 100 + n, "image_id": n, "category_id": 1, "bbox": box}
                            for n, box in enumerate(boxes.values(), start=1)]}


@pytest.fixture
def http(tmp_path: Path):
    with in_process(str(tmp_path / "data")) as client:
        ok(client.post("/api/v1/tables", json={"name": "t", "schema": [{"name": "label", "type": "int64"}]}), 201)
        for part in range(3):  # three uploads: three fragments
            ids = [f"p{part}-{i}" for i in range(4)]
            upload(client, ids, [part * 10 + i for i in range(4)], [i for i in range(4)])
        yield client


def test_an_annotation_import_is_logged_as_annotate_with_the_rows_diff_sees_change(http, tmp_path: Path) -> None:
    log = Log(http, "t")
    before = log.head()
    store = Store(str(tmp_path / "data"), refresh_seconds=0.0)
    lineage = {r["id"]: r["_row_last_updated_at_version"] for r in
               store.fresh("t").to_table(columns=["id", "_row_last_updated_at_version"]).to_pylist()}

    doc = coco({"p0-1": [1, 1, 2, 2], "p2-3": [0, 0, 3, 3]}, listed=["p2-0"])
    done = ok(http.post(f"{T}/annotations", json=doc))
    assert done["rows_updated"] == 3  # two boxed, one listed with no annotation (empty lists)
    [entry] = log.check(before)
    assert (entry["operation"], entry["message"]) == ("annotate", "annotate 3 rows")
    changed = log.diff(before, entry["version"])["changed"]
    assert sorted(c["id"] for c in changed) == ["p0-1", "p2-0", "p2-3"]  # not the rows it did not mention
    # the rows of the fragment no annotation touched keep their last update
    after = {r["id"]: r["_row_last_updated_at_version"] for r in
             store.fresh("t").to_table(columns=["id", "_row_last_updated_at_version"]).to_pylist()}
    assert all(after[f"p1-{i}"] == lineage[f"p1-{i}"] for i in range(4))

    # the same file again changes nothing: no version, nothing counted
    again = ok(http.post(f"{T}/annotations", json=doc))
    assert again["rows_updated"] == 0 and again["version"] == entry["version"]
    assert log.head() == entry["version"]

    # one box moved: one row changed, logged as such
    doc["annotations"][0]["bbox"] = [2, 2, 2, 2]
    moved = ok(http.post(f"{T}/annotations", json=doc))
    assert moved["rows_updated"] == 1
    [entry] = log.check(entry["version"])
    assert (entry["operation"], entry["rows_updated"]) == ("annotate", 1)
    assert [c["id"] for c in log.diff(entry["version"] - 1, entry["version"])["changed"]] == ["p0-1"]


def test_an_upsert_rewrites_and_counts_only_the_rows_it_changes(http) -> None:
    log = Log(http, "t")
    before = log.head()
    same = upload(http, ["p0-0", "p0-1"], [0, 1], [0, 1], mode="upsert")  # bytes and label as stored
    assert log.head() == before, log.check(before)
    assert (same["inserted"], same["updated"], same.get("unchanged")) == (0, 0, 2)

    mixed = upload(http, ["p0-0", "p0-1", "p0-2", "new"], [0, 1, 99, 7], [0, 5, 2, 9], mode="upsert")
    assert (mixed["inserted"], mixed["updated"], mixed["unchanged"]) == (1, 2, 1)
    [entry] = log.check(before)
    assert (entry["rows_added"], entry["rows_updated"]) == (1, 2)

    # Arrow uploads take the same path (the first changes the rows' source: the file name they came as)
    rows = pa.table({"id": ["p1-0", "p1-1"], "image": pa.array([png(10), png(11)], pa.binary()),
                     "label": pa.array([0, 1], pa.int64())})
    body = {"content": arrow(rows), "headers": {"content-type": ARROW}, "params": {"mode": "upsert"}}
    assert ok(http.post(f"{T}/rows", **body), 201)["updated"] == 2
    [entry] = log.check(entry["version"])
    same = ok(http.post(f"{T}/rows", **body), 201)
    assert (same["updated"], same["unchanged"]) == (0, 2) and log.head() == entry["version"]


def test_a_patch_that_changes_nothing_writes_nothing(http) -> None:
    log = Log(http, "t")
    before = log.head()
    same = ok(http.patch(f"{T}/rows/p0-2", json={"label": 2}))
    assert log.head() == before, log.check(before)
    assert (same["updated"], same.get("unchanged"), same["version"]) == (0, 1, before)
    assert http.patch(f"{T}/rows/absent", json={"label": 2}).status_code == 404
    changed = ok(http.patch(f"{T}/rows/p0-2", json={"label": 20}))
    assert changed["updated"] == 1
    [entry] = log.check(before)
    assert (entry["operation"], entry["rows_updated"]) == ("update", 1)


def test_plain_rows_upserted_over_post_rows_count_only_changes(tmp_path: Path) -> None:
    uri = str(tmp_path / "data")
    store = Store(uri, refresh_seconds=0.0)
    schema = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("x", pa.int64()),
                        pa.field("tags", pa.list_(pa.string()))])
    store.create("plain", schema)
    with in_process(uri) as http:
        log = Log(http, "plain")
        first = pa.table({"id": ["a", "b", "c"], "x": [1, 2, 3], "tags": [["u"], [], None]}, schema=schema)
        ok(http.post("/api/v1/tables/plain/rows", content=arrow(first), headers={"content-type": ARROW}), 201)
        before = log.head()
        again = ok(http.post("/api/v1/tables/plain/rows", content=arrow(first), headers={"content-type": ARROW},
                             params={"mode": "upsert"}), 201)
        assert log.head() == before, log.check(before)
        assert (again["inserted"], again["updated"], again.get("unchanged")) == (0, 0, 3)
        second = pa.table({"id": ["a", "b", "c"], "x": [1, 2, 3], "tags": [["u"], None, []]}, schema=schema)
        changed = ok(http.post("/api/v1/tables/plain/rows", content=arrow(second), headers={"content-type": ARROW},
                               params={"mode": "upsert"}), 201)
        assert (changed["updated"], changed["unchanged"]) == (2, 1)  # an empty list is not a null
        [entry] = log.check(before)
        assert entry["rows_updated"] == 2


def test_the_index_keepers_commits_are_index_and_tune_index_with_no_row_changes(tmp_path: Path) -> None:
    uri = str(tmp_path / "data")
    store = Store(uri, refresh_seconds=0.0)
    schema = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("v", pa.list_(pa.float32(), 8))])
    store.create("vecs", schema)
    vectors = np.random.default_rng(0).normal(size=(400, 8)).astype("float32")
    rows = pa.table({"id": [f"r{i}" for i in range(400)],
                     "v": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 8)}, schema=schema)
    append_stream(store, "vecs", schema, rows.to_batches())
    keeper = IndexKeeper(store, min_rows=100, sample=20)
    assert keeper.fold("vecs")
    with in_process(uri) as http:
        log = Log(http, "vecs")
        entries = log.check(2)
        assert [e["operation"] for e in entries] == ["index", "tune_index"]
        assert entries[1]["message"] == "tune index"


def test_the_row_page_counts_a_new_column_as_changed_only_where_it_has_a_value(tmp_path: Path) -> None:
    """The row page's comparison (``changedColumns`` in the gallery's dom.js), run by node."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    copy = tmp_path / "js"
    shutil.copytree(UI_JS, copy)
    (copy / "package.json").write_text('{"type": "module"}')
    script = ("import { changedColumns } from './dom.js';\n"
              "const before = { id: 'a', label: 1 };\n"
              "console.log(JSON.stringify([\n"
              "  changedColumns(before, { id: 'a', label: 1, boxes: null }),\n"
              "  changedColumns(before, { id: 'a', label: 1, boxes: [] }),\n"
              "  changedColumns(before, { id: 'a', label: 2, boxes: [[1, 2, 3, 4]] }),\n"
              "  changedColumns({ ...before, boxes: [] }, { id: 'a', label: 1 }),\n"
              "]));\n")
    (copy / "check.mjs").write_text(script)
    out = subprocess.run([node, "check.mjs"], cwd=copy, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [[], ["boxes"], ["label", "boxes"], ["boxes"]]
    assert "changedColumns(before, now)" in (UI_JS / "row.js").read_text()  # the row page uses it


def test_embedding_a_table_with_no_rows_adds_the_column(tmp_path: Path) -> None:
    """Found by the property test (every row deleted, then embed): a 500 from Lance's join."""
    with in_process(str(tmp_path / "data")) as http:
        ok(http.post("/api/v1/tables", json={"name": "t", "schema": [{"name": "label", "type": "int64"}]}), 201)
        log = Log(http, "t")
        done = ok(http.post(f"{T}/embeddings", json={"model": "builtin"}), 201)
        assert (done["column"], done["rows"]) == ("vector", 0)
        [entry] = log.check(1)
        assert entry["operation"] == "embed"
        upload(http, ["a"], [1], [1])  # later rows get their vectors at upload
        table = Store(str(tmp_path / "data")).fresh("t").to_table(columns=["id", "vector"])
        assert table.column("vector").null_count == 0
