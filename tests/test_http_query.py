"""POST /query, GET /count and POST /fetch through the service's app (in this process): JSON and Arrow
IPC answers.

Ground truth is always read from Lance directly (or from the image files), never from the service.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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

ARROW = {"Accept": "application/vnd.apache.arrow.stream"}
REPO = Path(__file__).resolve().parent.parent


def arrow_table(response: httpx.Response) -> pa.Table:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW["Accept"]
    return pa.ipc.open_stream(response.content).read_all()


def plain(value: Any) -> Any:
    """An Arrow value as the JSON answer spells it (timestamps as ISO 8601, bytes as base64)."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def as_json_rows(table: pa.Table) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in table.to_pylist()]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path, digits_dir: Path) -> str:
    """Read-only tables shared by this module's tests: ``digits`` (200 rows) and ``samples``."""
    uri = str(tmp_path_factory.mktemp("query") / "data")
    store = Store(uri)
    run_ingest(store, IngestOptions(table="digits", sources=[str(digits_dir / "images")], labels_from_dirs=True,
                                    metadata=str(digits_dir / "digits.csv"), key="file", progress=False))
    run_ingest(store, IngestOptions(table="samples", sources=[str(samples_dir)], progress=False))
    return uri


@pytest.fixture
def client(app: InProcess) -> Iterator[httpx.Client]:
    with app.http() as c:
        yield c


def digits_truth(root: str) -> pa.Table:
    """The digits table in scan order, read by Lance directly (no blobs)."""
    ds = lance.dataset(f"{root}/digits.lance")
    return ds.to_table(columns=[f.name for f in ds.schema if f.name != "image"])


# -- columns, limit, offset, order ----------------------------------------------------------------


def test_columns_limit_offset(client: httpx.Client, root: str) -> None:
    truth = digits_truth(root).to_pylist()
    response = client.post("/api/v1/tables/digits/query", json={"columns": ["id", "label"], "limit": 10, "offset": 5})
    assert response.status_code == 200 and response.headers["x-lightbox-version"] == "1"
    assert response.json()["rows"] == [{"id": r["id"], "label": r["label"]} for r in truth[5:15]]
    default = client.post("/api/v1/tables/digits/query", json={}).json()
    assert len(default["rows"]) == 100 and default["next_cursor"] is not None  # limit defaults to 100
    assert set(default["rows"][0]) == {f for f in truth[0]}  # every column but the image blob
    assert "image" not in default["rows"][0]
    assert default["rows"] == as_json_rows(pa.Table.from_pylist(truth[:100]))
    tail = client.post("/api/v1/tables/digits/query", json={"columns": ["id"], "limit": 50, "offset": 180}).json()
    assert [r["id"] for r in tail["rows"]] == [r["id"] for r in truth[180:]] and tail["next_cursor"] is None
    beyond = client.post("/api/v1/tables/digits/query", json={"offset": 500}).json()
    assert beyond == {"rows": [], "next_cursor": None}
    empty = client.post("/api/v1/tables/digits/query", json={"limit": 0}).json()
    assert empty == {"rows": [], "next_cursor": None}  # a cursor here would only repeat the same empty page
    dupes = client.post("/api/v1/tables/digits/query", json={"columns": ["label", "id", "label"], "limit": 1})
    assert list(dupes.json()["rows"][0]) == ["label", "id"]


def test_order_by_ascending_and_descending(client: httpx.Client, root: str) -> None:
    truth = digits_truth(root).to_pylist()
    by_ink = sorted(truth, key=lambda r: (r["ink"], r["id"]))
    for order_by in (["ink"], ["ink asc"], [{"column": "ink"}], [{"column": "ink", "ascending": True}]):
        body = {"columns": ["id", "ink"], "order_by": order_by, "limit": 200}
        rows = client.post("/api/v1/tables/digits/query", json=body).json()["rows"]
        assert [r["id"] for r in rows] == [r["id"] for r in by_ink], order_by
    descending = sorted(truth, key=lambda r: r["ink"], reverse=True)
    for order_by in (["ink desc"], [{"column": "ink", "ascending": False}]):
        rows = client.post("/api/v1/tables/digits/query",
                           json={"columns": ["id", "ink"], "order_by": order_by, "limit": 200}).json()["rows"]
        assert [r["ink"] for r in rows] == [r["ink"] for r in descending], order_by
    # two keys, with ties broken by id so that offset pages are stable
    key = sorted(truth, key=lambda r: (-r["label"], r["split"], r["id"]))
    body = {"columns": ["id"], "order_by": ["label desc", "split"], "limit": 30, "offset": 40}
    rows = client.post("/api/v1/tables/digits/query", json=body).json()["rows"]
    assert [r["id"] for r in rows] == [r["id"] for r in key[40:70]]
    # with a filter
    body = {"filter": "split = 'test'", "columns": ["id", "label"], "order_by": ["label desc"], "limit": 200}
    rows = client.post("/api/v1/tables/digits/query", json=body).json()["rows"]
    expected = sorted((r for r in truth if r["split"] == "test"), key=lambda r: (-r["label"], r["id"]))
    assert rows == [{"id": r["id"], "label": r["label"]} for r in expected]


def test_unknown_columns_and_bad_limits_are_400(client: httpx.Client) -> None:
    url = "/api/v1/tables/digits/query"
    err = assert_error(client.post(url, json={"columns": ["id", "lable"]}), 400, "unknown_column")
    assert err["detail"]["unknown"] == ["lable"] and "lable" in err["message"]
    err = assert_error(client.post(url, json={"order_by": ["lable desc"]}), 400, "unknown_column")
    assert "lable" in err["message"]
    assert_error(client.post(url, json={"order_by": [{"column": "nope", "ascending": False}]}), 400, "unknown_column")
    assert_error(client.post(url, json={"columns": ["nope"]}, headers=ARROW), 400, "unknown_column")
    err = assert_error(client.post(url, json={"limit": 10_001}), 400, "bad_request")
    assert "10000" in err["message"] and "Arrow" in err["message"]
    assert_error(client.post(url, json={"limit": None}), 400, "bad_request")  # all rows: only as Arrow
    assert len(client.post(url, json={"limit": 10_000}).json()["rows"]) == 200
    assert_error(client.post(url, json={"limit": -1}), 400, "bad_request")
    assert_error(client.post(url, json={"limit": 10**30}, headers=ARROW), 400, "bad_request")
    assert_error(client.post(url, json={"offset": 10**30}), 400, "bad_request")
    assert client.post(url, json={"offset": -1}).status_code == 400
    assert client.post(url, json={"limit": "many"}).status_code == 400
    assert client.post(url, content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    assert_error(client.post("/api/v1/tables/nope/query", json={}), 404, "table_not_found")


# -- cursors --------------------------------------------------------------------------------------



def tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4, 3), 9).save(buf, format="PNG")
    return buf.getvalue()


PNG = tiny_png()

APPENDER = r"""
import sys, time, hashlib, datetime as dt
import lance, pyarrow as pa
from lance.blob import blob_array
from app.store.schema import image_schema

uri, png, rounds = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3])
schema = image_schema([pa.field("n", pa.int64())])
digest = hashlib.sha256(png).hexdigest()
for r in range(rounds):
    n = 50
    now = dt.datetime.now(dt.UTC)
    cols = {"id": [f"new-{r}-{i}" for i in range(n)], "mime": ["image/png"] * n, "width": [4] * n,
            "height": [3] * n, "mode": ["L"] * n, "frames": [1] * n, "size_bytes": [len(png)] * n,
            "sha256": [digest] * n, "source": ["appender"] * n, "ingested_at": [now] * n, "n": [-1] * n}
    arrays = [blob_array([png] * n) if f.name == "image" else pa.array(cols[f.name], f.type) for f in schema]
    ds = lance.write_dataset(pa.Table.from_arrays(arrays, schema=schema), uri, mode="append")
    print(ds.version, flush=True)
    time.sleep(0.03)
"""


def image_rows(schema: pa.Schema, start: int, count: int) -> pa.Table:
    """``count`` rows of an image table (a tiny PNG each), fast: no ingest, one Arrow table."""
    digest = hashlib.sha256(PNG).hexdigest()
    now = dt.datetime.now(dt.UTC)
    cols = {"id": [f"row-{i:05d}" for i in range(start, start + count)], "mime": ["image/png"] * count,
            "width": [4] * count, "height": [3] * count, "mode": ["L"] * count, "frames": [1] * count,
            "size_bytes": [len(PNG)] * count, "sha256": [digest] * count, "source": ["generated"] * count,
            "ingested_at": [now] * count, "n": list(range(start, start + count))}
    arrays = [blob_array([PNG] * count) if f.name == "image" else pa.array(cols[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


@pytest.fixture
def big(tmp_path: Path) -> tuple[str, str]:
    """A 25,000-row image table (version 2) in its own data root: (root, table uri)."""
    root = str(tmp_path / "big")
    store = Store(root)
    schema = image_schema([pa.field("n", pa.int64())])
    store.create("big", schema)
    lance.write_dataset(image_rows(schema, 0, 25_000), store.table_uri("big"), mode="append")
    return root, store.table_uri("big")


def latest_version(uri: str) -> int:
    return lance.dataset(uri).version


def wait_for_version_after(uri: str, seen: int, appender: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + 30
    while (now := latest_version(uri)) <= seen:
        assert appender.poll() is None, f"the appender died: {log.read_text()}"
        assert time.monotonic() < deadline, "the appender made no progress"
        time.sleep(0.01)
    return now


def test_cursor_pages_through_25000_rows_while_another_process_appends(
    big: tuple[str, str], in_process: Callable[..., InProcess], tmp_path: Path
) -> None:
    root, uri = big
    env = {**os.environ, "PYTHONPATH": str(REPO), "LANCE_LOG": "error"}
    log = tmp_path / "appender.log"
    appender: subprocess.Popen[bytes] | None = None
    try:
        with in_process(root).http() as client:
            ids: list[str] = []
            versions: set[str] = set()
            body: dict[str, Any] = {"columns": ["id", "n"], "limit": 1_000}
            first = client.post("/api/v1/tables/big/query", json=body)
            pinned = int(first.headers["x-lightbox-version"])
            # the appender starts once the first page pinned its version, so that version holds the 25,000
            with log.open("wb") as sink:
                appender = subprocess.Popen([sys.executable, "-c", APPENDER, uri, PNG.hex(), "400"], cwd=REPO,
                                            env=env, stdout=subprocess.DEVNULL, stderr=sink, stdin=subprocess.DEVNULL)
            seen = pinned
            page = first
            pages = 0
            while True:
                assert page.status_code == 200, page.text
                versions.add(page.headers["x-lightbox-version"])
                answer = page.json()
                ids += [r["id"] for r in answer["rows"]]
                pages += 1
                if answer["next_cursor"] is None:
                    break
                seen = wait_for_version_after(uri, seen, appender, log)  # a commit lands between every two pages
                page = client.post("/api/v1/tables/big/query", json={**body, "cursor": answer["next_cursor"]})
            assert pages == 25
            assert versions == {str(pinned)}  # the cursor pinned the version of the first page
            assert len(ids) == 25_000 and len(set(ids)) == 25_000  # no loss, no repeats
            assert not [i for i in ids if not i.startswith("row-")]  # nothing appended later leaks in
            appended = latest_version(uri)
            assert appended >= pinned + 24
            fresh = client.post("/api/v1/tables/big/query", json={"columns": ["id"], "limit": 1})
            assert int(fresh.headers["x-lightbox-version"]) >= appended  # a new query sees the new rows
            count = client.get("/api/v1/tables/big/count").json()["count"]
            assert count >= 25_000 + 50 * 24
            pinned_count = client.get(f"/api/v1/tables/big/count?version={pinned}")
            assert pinned_count.json() == {"count": 25_000 + 50 * (pinned - 2)}
            # a whole version as one Arrow stream (limit null), with the image bytes
            whole = arrow_table(client.post(f"/api/v1/tables/big/query?version={pinned}",
                                            json={"columns": ["id", "image"], "limit": None}, headers=ARROW))
            assert whole.num_rows == pinned_count.json()["count"]
            assert set(whole["image"].to_pylist()) == {PNG}
    finally:
        if appender is not None:
            appender.kill()
            appender.wait(timeout=10)


def test_cursor_misuse_is_400(client: httpx.Client) -> None:
    url = "/api/v1/tables/digits/query"
    body = {"filter": "label < 5", "columns": ["id"], "limit": 20}
    first = client.post(url, json=body).json()
    cursor = first["next_cursor"]
    assert cursor
    second = client.post(url, json={**body, "cursor": cursor})
    assert second.status_code == 200 and len(second.json()["rows"]) == 20
    assert {r["id"] for r in second.json()["rows"]}.isdisjoint(r["id"] for r in first["rows"])
    for changed in ({"filter": "label < 6"}, {"filter": None}, {"columns": ["id", "label"]}, {"limit": 21},
                    {"order_by": ["id"]}):
        err = assert_error(client.post(url, json={**body, **changed, "cursor": cursor}), 400, "invalid_cursor")
        assert "different query" in err["message"]
    forged = base64.urlsafe_b64encode(json.dumps({"v": 1, "b": None, "o": -5, "q": "x"}).encode()).decode()
    for garbage in ("garbage", "!!!", "e30", "bnVsbA", forged, "x" * 5000, "\u00e9"):
        assert_error(client.post(url, json={**body, "cursor": garbage}), 400, "invalid_cursor")
    assert_error(client.post(url, json={**body, "cursor": cursor, "offset": 3}), 400, "bad_request")
    # the cursor already pins a version: another ref with it is refused
    assert_error(client.post(f"{url}?tag=nope", json={**body, "cursor": cursor}), 400, "invalid_ref")
    same = client.post(f"{url}?version=1", json={**body, "cursor": cursor})
    assert same.status_code == 200 and same.json() == second.json()


# -- Arrow answers --------------------------------------------------------------------------------


def test_arrow_query_equals_the_json_answer(client: httpx.Client, root: str) -> None:
    url = "/api/v1/tables/digits/query"
    for body in ({"filter": "label = 3", "columns": ["id", "label", "ink", "split"], "limit": 500},
                 {"order_by": ["ink desc"], "limit": 37, "offset": 11},
                 {"columns": ["id", "label"], "order_by": ["ink desc"], "limit": 37},  # ordered by a column not asked
                 {"filter": "label > 100", "limit": 10}):
        as_json = client.post(url, json=body)
        as_arrow = client.post(url, json=body, headers=ARROW)
        table = arrow_table(as_arrow)
        assert as_arrow.headers["x-lightbox-version"] == as_json.headers["x-lightbox-version"] == "1"
        assert as_json_rows(table) == as_json.json()["rows"], body
        assert table.num_rows == len(as_json.json()["rows"])
    everything = arrow_table(client.post(url, json={"limit": None}, headers=ARROW))
    assert everything.num_rows == 200
    assert everything.to_pylist() == digits_truth(root).to_pylist()
    assert "image" not in everything.schema.names


def test_arrow_query_carries_the_original_image_bytes(client: httpx.Client, samples_dir: Path) -> None:
    files = {p.name: p.read_bytes() for p in samples_dir.iterdir()}
    body = {"columns": ["id", "image", "sha256"], "limit": None}
    table = arrow_table(client.post("/api/v1/tables/samples/query", json=body, headers=ARROW))
    assert table.schema.field("image").type == pa.large_binary()
    got = {r["id"]: r for r in table.to_pylist()}
    assert set(got) == set(files)
    for name, data in files.items():
        assert got[name]["image"] == data, name
        assert got[name]["sha256"] == hashlib.sha256(data).hexdigest()
    # JSON carries the same bytes as base64
    rows = client.post("/api/v1/tables/samples/query", json={**body, "limit": 100}).json()["rows"]
    assert {r["id"]: base64.b64decode(r["image"]) for r in rows} == files


# -- fetch ----------------------------------------------------------------------------------------


def test_fetch_keeps_order_and_duplicates_and_lists_missing(client: httpx.Client, root: str) -> None:
    truth = {r["id"]: r for r in digits_truth(root).to_pylist()}
    ids = ["3/00003.png", "nope.png", "0/00000.png", "3/00003.png", "9/00009.png", "also/missing"]
    response = client.post("/api/v1/tables/digits/fetch", json={"ids": ids})
    assert response.status_code == 200 and response.headers["x-lightbox-version"] == "1"
    body = response.json()
    present = [i for i in ids if i in truth]
    assert [r["id"] for r in body["rows"]] == present == ["3/00003.png", "0/00000.png", "3/00003.png",
                                                         "9/00009.png"]
    assert body["missing"] == ["nope.png", "also/missing"]
    assert body["rows"] == as_json_rows(pa.Table.from_pylist([truth[i] for i in present]))
    narrow = client.post("/api/v1/tables/digits/fetch", json={"ids": ids, "columns": ["label", "id"]}).json()
    assert narrow["rows"] == [{"label": truth[i]["label"], "id": i} for i in present]
    assert client.post("/api/v1/tables/digits/fetch", json={"ids": []}).json() == {"rows": [], "missing": []}
    none = client.post("/api/v1/tables/digits/fetch", json={"ids": ["x", "y"]}).json()
    assert none == {"rows": [], "missing": ["x", "y"]}
    assert_error(client.post("/api/v1/tables/digits/fetch", json={"ids": ids, "columns": ["nope"]}), 400,
             "unknown_column")
    many = client.post("/api/v1/tables/digits/fetch", json={"ids": [f"id-{i}" for i in range(10_001)]})
    assert "10000" in assert_error(many, 400, "bad_request")["message"]
    at_limit = client.post("/api/v1/tables/digits/fetch", json={"ids": ["3/00003.png"] * 10_000, "columns": ["id"]})
    assert at_limit.status_code == 200 and len(at_limit.json()["rows"]) == 10_000


def test_fetch_with_images_json_and_arrow(client: httpx.Client, samples_dir: Path) -> None:
    names = ["rocket.jpg", "missing.png", "camera16.tif", "rocket.jpg", "no_time_for_that_tiny.gif"]
    present = [n for n in names if n != "missing.png"]
    body = {"ids": names, "columns": ["id", "mime"], "with_images": True}
    as_json = client.post("/api/v1/tables/samples/fetch", json=body).json()
    assert [r["id"] for r in as_json["rows"]] == present and as_json["missing"] == ["missing.png"]
    for row in as_json["rows"]:
        assert base64.b64decode(row["image"]) == (samples_dir / row["id"]).read_bytes()
    response = client.post("/api/v1/tables/samples/fetch", json=body, headers=ARROW)
    table = arrow_table(response)
    assert response.headers["x-lightbox-missing"] == "1"
    assert table.column_names == ["id", "mime", "image"]
    assert table.column("id").to_pylist() == present
    assert table.column("image").to_pylist() == [(samples_dir / n).read_bytes() for n in present]
    assert as_json_rows(table) == as_json["rows"]
    without = arrow_table(client.post("/api/v1/tables/samples/fetch", json={"ids": names}, headers=ARROW))
    assert "image" not in without.column_names and without.num_rows == len(present)
    assert as_json_rows(without) == client.post("/api/v1/tables/samples/fetch", json={"ids": names}).json()["rows"]


# -- count ----------------------------------------------------------------------------------------


def test_count_with_and_without_filter_at_a_ref(
    tmp_path: Path, digits_dir: Path, samples_dir: Path, in_process: Callable[..., InProcess]
) -> None:
    store = Store(str(tmp_path / "data"))
    run_ingest(store, IngestOptions(table="t", sources=[str(digits_dir / "images")], labels_from_dirs=True,
                                    tag="first", progress=False))
    extra = tmp_path / "extra" / "3"
    extra.mkdir(parents=True)
    for i in range(7):
        (extra / f"extra{i}.png").write_bytes((samples_dir / "camera.png").read_bytes())
    run_ingest(store, IngestOptions(table="t", sources=[str(tmp_path / "extra")], labels_from_dirs=True,
                                    progress=False))
    ds = lance.dataset(store.table_uri("t"))
    threes_v1 = ds.checkout_version(1).count_rows("label = 3")
    assert threes_v1 > 0
    with in_process(store.uri).http() as client:
        def count(query: str) -> tuple[int, str]:
            response = client.get(f"/api/v1/tables/t/count{query}")
            assert response.status_code == 200, response.text
            return response.json()["count"], response.headers["x-lightbox-version"]

        assert count("") == (207, "2")
        assert count("?version=1") == (200, "1")
        assert count("?tag=first") == (200, "1")
        assert count("?version=2") == (207, "2")
        assert count("?filter=label%20%3D%203") == (threes_v1 + 7, "2")
        assert count("?filter=label%20%3D%203&version=1") == (threes_v1, "1")
        assert count("?filter=label%20%3D%203&tag=first") == (threes_v1, "1")
        assert count("?filter=" + "id%20LIKE%20%27%25extra%25%27") == (7, "2")
        assert count("?filter=") == (207, "2")
        assert_error(client.get("/api/v1/tables/t/count?version=3"), 404, "version_not_found")
        assert_error(client.get("/api/v1/tables/t/count?version=1&tag=first"), 400, "invalid_ref")
        assert_error(client.get("/api/v1/tables/t/count?filter=labl%20%3D%203"), 400, "invalid_filter")
        # query and fetch at a ref agree with count
        rows = client.post("/api/v1/tables/t/query?version=1", json={"columns": ["id"], "limit": 1000})
        assert len(rows.json()["rows"]) == 200 and rows.headers["x-lightbox-version"] == "1"
        fetched = client.post("/api/v1/tables/t/fetch?version=1", json={"ids": ["3/extra0.png"]}).json()
        assert fetched == {"rows": [], "missing": ["3/extra0.png"]}
        fetched = client.post("/api/v1/tables/t/fetch", json={"ids": ["3/extra0.png"], "columns": ["id"]}).json()
        assert fetched == {"rows": [{"id": "3/extra0.png"}], "missing": []}
