"""The official LanceDB Python client (pinned: lancedb==0.40.0, sync and async) against a real Lightbox
server on loopback, over a real image table; every answer is checked against the native API.

The table is scikit-learn's digits as PNGs (label from the folder), ingested with ``run_ingest`` and
embedded by the builtin embedder, so it has the standard image columns, a label and a vector column.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import lancedb
import pyarrow as pa
import pytest
from lancedb.remote.errors import HttpError

from app.settings import Settings
from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import LiveServer

CLIENT_VERSION = "0.40.0"


@pytest.fixture
def server(live_server: Callable[[str], LiveServer], mnist_root: Path, tmp_path: Path) -> LiveServer:
    """A real server (the client's core is Rust and opens its own socket) over a copy of ``mnist_root``."""
    uri = tmp_path / "data"
    shutil.copytree(mnist_root, uri)
    return live_server(str(uri))


def connect(server: LiveServer, api_key: str = "KEY") -> Any:
    return lancedb.connect("db://lightbox", api_key=api_key, host_override=server.url)


def native(server: LiveServer, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{server.url}/api/v1/tables/{path}", timeout=30, **kwargs)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def query_vector(tbl: Any, where: str = "label = 3") -> list[float]:
    row = tbl.search().where(where).limit(1).select(["id", "vector"]).to_arrow()
    return row.column("vector")[0].as_py()


def test_client_version_is_pinned() -> None:
    assert lancedb.__version__ == CLIENT_VERSION


def test_open_schema_count_and_search_match_the_native_api(server: LiveServer) -> None:
    db = connect(server)
    assert "mnist" in db.table_names()
    tbl = db.open_table("mnist")
    info = native(server, "GET", "mnist")

    schema = tbl.schema
    assert schema.names == [c["name"] for c in info["schema"]]
    assert schema.field("image").type == pa.large_binary()
    dim = info["embeddings"][0]["dim"]
    assert schema.field("vector").type == pa.list_(pa.float32(), dim)
    assert schema.field("label").type == pa.int64()

    assert tbl.count_rows() == info["num_rows"] == 200
    threes = native(server, "GET", "mnist/count", params={"filter": "label = 3"})["count"]
    assert tbl.count_rows("label = 3") == threes > 0

    vector = query_vector(tbl)
    hits = tbl.search(vector).where("label = 3").limit(5).select(["id", "label"]).to_arrow()
    assert hits.column_names == ["id", "label", "_distance"]
    expected = native(server, "POST", "mnist/search",
                      json={"vector": vector, "k": 5, "filter": "label = 3", "columns": ["id", "label"]})["hits"]
    assert hits.column("id").to_pylist() == [h["id"] for h in expected]
    assert hits.column("_distance").to_pylist() == pytest.approx([h["_distance"] for h in expected], rel=1e-6)
    assert set(hits.column("label").to_pylist()) == {3}

    page = tbl.search().where("label = 3").limit(10).select(["id"]).to_arrow()
    rows = native(server, "POST", "mnist/query", json={"filter": "label = 3", "columns": ["id"], "limit": 10})["rows"]
    assert page.column_names == ["id"]
    assert page.column("id").to_pylist() == [r["id"] for r in rows]
    everything = tbl.search().where("label = 3").select(["id"]).limit(None).to_arrow()
    assert everything.num_rows == threes

    first3 = native(server, "POST", "mnist/query", json={"columns": ["id"], "limit": 3})["rows"]
    taken = tbl.take_offsets([0, 2]).select(["id"]).to_arrow()
    assert taken.column("id").to_pylist() == [first3[0]["id"], first3[2]["id"]]


def test_default_columns_carry_the_original_image_bytes(server: LiveServer) -> None:
    tbl = connect(server).open_table("mnist")
    hit = tbl.search(query_vector(tbl)).limit(1).to_arrow()
    assert set(tbl.schema.names) | {"_distance"} == set(hit.column_names)
    key = hit.column("id")[0].as_py()
    stored = httpx.get(f"{server.url}/api/v1/tables/mnist/rows/{key}/image").content
    assert hit.column("image")[0].as_py() == stored
    assert hashlib.sha256(stored).hexdigest() == hit.column("sha256")[0].as_py()
    scanned = tbl.search().where(f"id = '{key}'").to_arrow()
    assert scanned.column("image")[0].as_py() == stored


def test_versions_tags_checkout_add_and_restore(server: LiveServer, samples_dir: Path) -> None:
    tbl = connect(server).open_table("mnist")
    v1 = tbl.version
    tbl.tags.create("v1", v1)
    assert tbl.tags.list()["v1"]["version"] == v1
    assert tbl.tags.list()["v1"]["manifest_size"] > 0
    assert [t["name"] for t in native(server, "GET", "mnist/tags")["tags"]] == ["v1"]

    png = (samples_dir / "horse.png").read_bytes()
    added = tbl.add(pa.table({"id": ["extra/horse.png"], "image": [png], "label": [7]}))
    assert added.version == tbl.version == v1 + 1
    row = native(server, "GET", "mnist/rows/extra/horse.png")  # probed on the way in, like any upload
    assert (row["mime"], row["label"], row["sha256"]) == ("image/png", 7, hashlib.sha256(png).hexdigest())
    assert row["width"] > 0 and row["height"] > 0
    assert tbl.count_rows() == 201

    versions = [v["version"] for v in tbl.list_versions()]
    assert versions == sorted(v["version"] for v in native(server, "GET", "mnist/versions"))
    assert all(v["timestamp"] is not None for v in tbl.list_versions())

    tbl.checkout(v1)
    assert (tbl.version, tbl.count_rows()) == (v1, 200)
    assert tbl.search().where("id = 'extra/horse.png'").to_arrow().num_rows == 0
    tbl.checkout_latest()
    tbl.checkout("v1")
    assert (tbl.version, tbl.count_rows()) == (v1, 200)
    tbl.checkout_latest()
    assert (tbl.version, tbl.count_rows()) == (v1 + 1, 201)

    tbl.tags.update("v1", v1 + 1)
    assert tbl.tags.get_version("v1") == v1 + 1
    tbl.tags.delete("v1")
    assert tbl.tags.list() == {}

    tbl.restore(v1)
    assert tbl.count_rows() == 200
    latest = native(server, "GET", "mnist/versions")[0]
    assert latest["version"] == tbl.version == v1 + 2 and latest["num_rows"] == 200


def test_indexes(server: LiveServer) -> None:
    tbl = connect(server).open_table("mnist")
    tbl.create_scalar_index("id")
    tbl.create_index(metric="cosine", vector_column_name="vector", index_type="IVF_FLAT", num_partitions=2)
    listed = {i.name: i for i in tbl.list_indices()}
    assert listed["id_idx"].columns == ["id"] and listed["vector_idx"].columns == ["vector"]
    assert {i["name"] for i in native(server, "GET", "mnist/indexes")["indexes"]} == set(listed)
    stats = tbl.index_stats("id_idx")
    assert stats.index_type == "BTREE" and stats.num_indexed_rows == 200
    assert tbl.search(query_vector(tbl)).limit(3).select(["id"]).to_arrow().num_rows == 3


def test_writes_on_a_plain_table(server: LiveServer) -> None:
    db = connect(server)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array([0, 0, 1, 0, 0, 1], pa.float32()), 2)
    tbl = db.create_table("features", pa.table({"id": ["a", "b", "c"], "x": [1, 2, 3], "v": vectors}))
    assert sorted(db.table_names()) == ["features", "mnist"]
    with pytest.raises(ValueError, match="already exists"):
        db.create_table("features", pa.table({"id": ["z"], "x": [0]}))
    assert db.create_table("features", pa.table({"id": ["z"], "x": [0]}), exist_ok=True).count_rows() == 3

    hits = tbl.search([1.0, 0.0]).limit(2).select(["id"]).to_arrow()
    assert hits.column("id").to_pylist() == ["b", "a"]
    assert tbl.update(where="id = 'b'", values={"x": 20}).rows_updated == 1
    assert native(server, "GET", "features/rows/b")["x"] == 20
    assert tbl.delete("x = 1").num_deleted_rows == 1
    assert tbl.count_rows() == 2

    merged = (tbl.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
              .execute(pa.table({"id": ["c", "d"], "x": [30, 4], "v": vectors.slice(0, 2)})))
    assert (merged.num_inserted_rows, merged.num_updated_rows) == (1, 1)
    assert sorted(tbl.search().select(["id", "x"]).to_arrow().to_pylist(), key=lambda r: r["id"]) == [
        {"id": "b", "x": 20}, {"id": "c", "x": 30}, {"id": "d", "x": 4}]

    tbl.add(pa.table({"id": ["q"], "x": [9], "v": vectors.slice(0, 1)}), mode="overwrite")
    assert tbl.search().select(["id"]).to_arrow().column("id").to_pylist() == ["q"]
    assert len(tbl.list_versions()) > 5  # overwrite keeps the history
    db.drop_table("features")
    assert db.table_names() == ["mnist"]


def test_a_table_created_again_is_not_answered_from_the_old_ones_caches(
        live_server: Callable[[str], LiveServer], tmp_path: Path) -> None:
    server = live_server(str(tmp_path / "data"))
    db = connect(server)

    def vectors(values: list[float]) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float32()), 2)

    old = db.create_table("t", pa.table({"id": ["a", "b"], "v": vectors([0, 0, 1, 1])}))
    assert old.search([0.0, 0.0]).limit(2).with_row_id(True).select(["id"]).to_arrow().num_rows == 2
    assert native(server, "GET", "t/rows/b")["id"] == "b"  # the id index of (t, version 2) is now cached
    db.drop_table("t")
    new = db.create_table("t", pa.table({"id": ["x", "y", "z"], "v": vectors([5, 5, 0, 0, 9, 9])}))
    hits = new.search([0.0, 0.0]).limit(3).with_row_id(True).select(["id"]).to_arrow()
    assert hits.column("id").to_pylist() == ["y", "x", "z"]
    assert sorted(hits.column("_rowid").to_pylist()) == [0, 1, 2]
    again = db.create_table("t", pa.table({"id": ["q"], "v": vectors([1, 0])}), mode="overwrite")
    assert again.search([1.0, 0.0]).limit(3).select(["id"]).to_arrow().column("id").to_pylist() == ["q"]
    assert native(server, "GET", "t/rows/q")["id"] == "q"


def test_bad_input_is_a_clear_4xx_never_a_500(server: LiveServer) -> None:
    db = connect(server)
    with pytest.raises(ValueError, match="not found"):
        db.open_table("no_such_table")
    tbl = db.open_table("mnist")
    with pytest.raises(HttpError, match=r"400.*unknown column 'nosuch'"):
        tbl.count_rows("nosuch = 1")
    with pytest.raises(HttpError, match=r"400.*invalid_filter"):
        tbl.search().where("label = 3; DROP TABLE mnist").to_arrow()
    with pytest.raises(HttpError, match=r"400.*query vector has 3 values"):
        tbl.search([1.0, 2.0, 3.0]).limit(3).to_arrow()
    with pytest.raises(HttpError, match=r"400.*SQL literals"):
        tbl.update(where="label = 3", values_sql={"label": "label + 1"})
    with pytest.raises(ValueError, match="not found"):
        tbl.checkout(999)

    def post(path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/table/{path}", timeout=30, **kwargs)

    cases = {
        "mnist/query/": post("mnist/query/", content=b"{not json"),
        "k=-1": post("mnist/query/", json={"vector": [], "k": -1}),
        "bad columns": post("mnist/query/", json={"vector": [], "k": 3, "columns": ["nope"]}),
        "version 0": post("mnist/describe/", json={"version": 0}),
        "garbage insert": post("mnist/insert/", content=b"not arrow"),
        "nested id": post("ns$mnist/describe/", json={}),
        "bad tag": post("mnist/tags/create/", json={"tag": "../x", "version": 1}),
    }
    for name, response in cases.items():
        assert 400 <= response.status_code < 500, (name, response.text)
        assert response.json()["error"]["message"], name
    assert cases["nested id"].json()["error"]["code"] == "namespace_not_supported"
    missing = post("no_such_table/describe/", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "table_not_found"
    unsupported = post("mnist/add_columns/", json={})
    assert unsupported.status_code == 501 and "add_columns" in unsupported.json()["error"]["message"]


def test_async_client(server: LiveServer) -> None:
    async def scenario() -> None:
        db = await lancedb.connect_async("db://lightbox", api_key="KEY", host_override=server.url)
        assert await db.table_names() == ["mnist"]
        tbl = await db.open_table("mnist")
        assert (await tbl.schema()).field("image").type == pa.large_binary()
        assert await tbl.count_rows("label = 3") == native(server, "GET", "mnist/count",
                                                            params={"filter": "label = 3"})["count"]
        first = await tbl.query().where("label = 3").limit(1).select(["vector"]).to_arrow()
        vector = first.column("vector")[0].as_py()
        hits = await tbl.vector_search(vector).where("label = 3").limit(4).select(["id"]).to_arrow()
        expected = native(server, "POST", "mnist/search",
                          json={"vector": vector, "k": 4, "filter": "label = 3", "columns": ["id"]})["hits"]
        assert hits.column("id").to_pylist() == [h["id"] for h in expected]
        page = await tbl.query().where("label = 3").offset(2).limit(3).select(["id"]).with_row_id().to_arrow()
        rows = native(server, "POST", "mnist/query",
                      json={"filter": "label = 3", "columns": ["id"], "offset": 2, "limit": 3})["rows"]
        assert page.column("id").to_pylist() == [r["id"] for r in rows]
        assert page.column_names == ["id", "_rowid"]
        version = await tbl.version()
        await tbl.tags.create("a", version)
        assert (await tbl.tags.list())["a"]["version"] == version
        with pytest.raises(HttpError, match=r"422.*not_an_image"):  # probed: refused, nothing written
            await tbl.add(pa.table({"id": ["x"], "image": [b"not an image"]}))
        assert await tbl.count_rows() == 200
        await tbl.checkout(version)
        assert await tbl.version() == version
        assert [v["version"] for v in await tbl.list_versions()] == [version]

    asyncio.run(scenario())


def test_namespace_spec_forms(server: LiveServer) -> None:
    from lance_namespace import (
        CountTableRowsRequest,
        DescribeTableRequest,
        ListTablesRequest,
        ListTableTagsRequest,
        QueryTableRequest,
        connect,
    )
    from lance_namespace.errors import TableNotFoundError
    from lance_namespace_urllib3_client.models import QueryTableRequestColumns, QueryTableRequestVector

    ns = connect("rest", {"uri": server.url})
    assert ns.list_tables(ListTablesRequest(id=[])).tables == ["mnist"]
    described = ns.describe_table(DescribeTableRequest(id=["mnist"], load_detailed_metadata=True))
    assert described.version == 1 and described.location.endswith("mnist.lance")
    vector_field = next(f for f in described.var_schema.fields if f.name == "vector")
    assert (vector_field.type.type, vector_field.type.fields[0].type.type) == ("fixed_size_list", "float")
    assert ns.count_table_rows(CountTableRowsRequest(id=["mnist"], predicate="label = 3")).count == native(
        server, "GET", "mnist/count", params={"filter": "label = 3"})["count"]

    tbl = lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url).open_table("mnist")
    vector = query_vector(tbl)
    answer = ns.query_table(QueryTableRequest(
        id=["mnist"], k=3, vector=QueryTableRequestVector(single_vector=vector), filter="label = 3",
        columns=QueryTableRequestColumns(column_names=["id"])))
    hits = pa.ipc.open_file(pa.BufferReader(answer.data)).read_all()
    expected = native(server, "POST", "mnist/search",
                      json={"vector": vector, "k": 3, "filter": "label = 3", "columns": ["id"]})["hits"]
    assert hits.column("id").to_pylist() == [h["id"] for h in expected]
    tbl.tags.create("ns", 1)
    assert ns.list_table_tags(ListTableTagsRequest(id=["mnist"])).tags["ns"].version == 1
    with pytest.raises(TableNotFoundError):
        ns.describe_table(DescribeTableRequest(id=["no_such_table"]))
    raw = httpx.post(f"{server.url}/v1/table/mnist/tags/list?delimiter=%24", json={"id": ["mnist"]})
    assert raw.json()["tags"]["ns"]["manifestSize"] > 0


@pytest.mark.skipif("api_keys" not in Settings.model_fields, reason="the service has no API keys yet")
def test_api_keys(tuned_server: Callable[..., LiveServer], digits_dir: Path, tmp_path: Path) -> None:
    uri = str(tmp_path / "data")
    run_ingest(Store(uri, refresh_seconds=0.0), IngestOptions(
        table="mnist", sources=[str(digits_dir / "images" / "3")], progress=False, workers=1))
    server = tuned_server(uri, api_keys="writer,reader:ro")
    assert connect(server, "writer").open_table("mnist").count_rows() > 0
    reader = connect(server, "reader").open_table("mnist")
    assert reader.search().limit(2).select(["id"]).to_arrow().num_rows == 2
    with pytest.raises(HttpError, match="403"):
        reader.tags.create("nope", 1)
    with pytest.raises(Exception, match="401"):
        connect(server, "wrong").open_table("mnist").count_rows()
