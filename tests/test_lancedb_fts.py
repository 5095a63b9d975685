"""The official LanceDB Python client's full-text and hybrid search (pinned lancedb==0.40.0) against a
real Lightbox server on loopback, one server for the module: ``create_fts_index``, ``query_type="fts"``
and ``query_type="hybrid"`` (which the client runs as a vector query and a full-text query, both with
``_rowid``, fused on its side), on the latest version and on an older tag, checked against the native API.

The table is made through the client itself (``create_table``, ``add``, ``tags.create``), as a LanceDB
user would, so the service answers what it stored for that client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import lancedb
import numpy as np
import pyarrow as pa
import pytest
from lancedb.remote.errors import HttpError
from lancedb.rerankers import LinearCombinationReranker

from tests.conftest import LiveServer

DIM = 8
FIRST = {
    "a": "a red cat sleeping on a mat",
    "b": "a blue dog running in the park",
    "c": "a red dog chasing a cat",
    "d": "seven samurai on horseback",
    "e": "the cat sat on the warm roof",
    "f": "a green frog in a pond",
}
LATER = {"g": "a late cat arrives with a red hat", "h": "seven more samurai"}


def rows(captions: dict[str, str], seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(captions), DIM)).astype(np.float32)
    return pa.table({"id": list(captions), "caption": list(captions.values()),
                     "label": [i % 2 for i in range(len(captions))],
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    served = LiveServer(str(tmp_path_factory.mktemp("fts") / "data")).start()
    db = connect(served)
    tbl = db.create_table("docs", rows(FIRST, 0))
    tbl.create_fts_index("caption", with_position=True)
    tbl.tags.create("before", tbl.version)
    tbl.add(rows(LATER, 1))
    yield served
    served.stop()


def connect(server: LiveServer) -> Any:
    return lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url)


def native(server: LiveServer, body: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
    response = httpx.post(f"{server.url}/api/v1/tables/docs/search", json=body, params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["hits"]


def vector_of(tbl: Any, row: str) -> list[float]:
    return tbl.search().where(f"id = '{row}'").select(["vector"]).limit(1).to_arrow().column("vector")[0].as_py()


def test_create_fts_index_is_listed(server: LiveServer) -> None:
    tbl = connect(server).open_table("docs")
    listed = {i.name: i for i in tbl.list_indices()}
    assert listed["caption_idx"].index_type == "FTS" and listed["caption_idx"].columns == ["caption"]


def test_fts_on_latest_matches_the_native_search(server: LiveServer) -> None:
    tbl = connect(server).open_table("docs")
    found = tbl.search("cat", query_type="fts").select(["id", "caption"]).limit(10).to_arrow()
    assert found.column_names == ["id", "caption", "_score"]
    expected = native(server, {"keywords": "cat", "k": 10})
    scores = dict(zip(found.column("id").to_pylist(), found.column("_score").to_pylist(), strict=True))
    assert scores == pytest.approx({h["id"]: h["_score"] for h in expected})  # equal scores may come in any order
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    assert set(found.column("id").to_pylist()) == {"a", "c", "e", "g"}  # "g" came after the index
    phrase = tbl.search("red cat", query_type="fts").phrase_query().limit(10).to_arrow()
    assert phrase.column("id").to_pylist() == ["a"]
    filtered = tbl.search("cat", query_type="fts").where("label = 0").select(["id", "label"]).limit(10).to_arrow()
    assert filtered.num_rows and set(filtered.column("label").to_pylist()) == {0}
    everything = tbl.search("samurai", query_type="fts").limit(10).to_arrow()
    assert set(everything.column("id").to_pylist()) == {"d", "h"}
    assert everything.column("vector").type == pa.list_(pa.float32(), DIM)  # every column by default


def test_fts_on_an_older_tag_and_version(server: LiveServer) -> None:
    tbl = connect(server).open_table("docs")
    latest = tbl.version
    tbl.checkout("before")
    at_tag = tbl.search("cat", query_type="fts").select(["id"]).limit(10).to_arrow().column("id").to_pylist()
    assert set(at_tag) == {"a", "c", "e"}
    assert set(at_tag) == {h["id"] for h in native(server, {"keywords": "cat", "k": 10}, tag="before")}
    tbl.checkout(latest)
    assert "g" in tbl.search("cat", query_type="fts").select(["id"]).limit(10).to_arrow().column("id").to_pylist()


def test_hybrid_ranks_the_row_matching_both_first_on_latest_and_on_a_tag(server: LiveServer) -> None:
    db = connect(server)
    tbl = db.open_table("docs")
    query = vector_of(tbl, "c")  # the vector side's best is "c", and the keywords' too (both words)
    for reranker in (None, LinearCombinationReranker()):
        search = tbl.search(query_type="hybrid").vector(query).text("red dog").select(["id"]).limit(3)
        fused = (search.rerank(reranker) if reranker else search).to_arrow()
        assert fused.column("id")[0].as_py() == "c"
        assert "_relevance_score" in fused.column_names
    native_top = native(server, {"vector": query, "keywords": "red dog", "k": 3, "columns": ["id"]})
    assert native_top[0]["id"] == "c"
    tbl.checkout("before")
    old = tbl.search(query_type="hybrid").vector(query).text("late samurai").select(["id"]).limit(10).to_arrow()
    assert not {"g", "h"} & set(old.column("id").to_pylist())
    assert "d" in old.column("id").to_pylist()


def test_bad_full_text_queries_are_clear_4xx(server: LiveServer) -> None:
    tbl = connect(server).open_table("docs")
    with pytest.raises(HttpError, match=r"400.*unbalanced quote"):
        tbl.search('"red cat', query_type="fts").limit(3).to_arrow()
    with pytest.raises(HttpError, match=r"400.*no full-text index.*indexable"):
        tbl.search("a", query_type="fts", fts_columns="id").limit(3).to_arrow()

    def post(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/table/docs/query/", json=body, timeout=30)

    cases = {
        "empty": post({"vector": [], "k": 3, "full_text_query": {"columns": [], "query": ""}}),
        "structured": post({"vector": [], "k": 3, "full_text_query": {"query": {"match": {"terms": "x"}}}}),
        "columns": post({"vector": [], "k": 3, "full_text_query": {"columns": "caption", "query": "cat"}}),
        "both": post({"vector": [0.0] * DIM, "k": 3, "full_text_query": {"columns": [], "query": "cat"}}),
        "number": post({"vector": [], "k": 3, "full_text_query": {"columns": ["label"], "query": "cat"}}),
        "meta": post({"vector": [], "k": 3, "columns": ["_rowoffset"], "full_text_query": {"query": "cat"}}),
        "index a number": httpx.post(f"{server.url}/v1/table/docs/create_index/", timeout=30,
                                     json={"column": "label", "index_type": "FTS"}),
    }
    for name, response in cases.items():
        assert response.status_code == 400, (name, response.text)
        assert response.json()["error"]["message"], name


def test_drop_index_over_the_protocol(server: LiveServer, tmp_path: Path) -> None:
    tbl = connect(server).create_table("scratch", rows(FIRST, 2))
    tbl.create_fts_index("caption")
    assert tbl.search("frog", query_type="fts").limit(3).to_arrow().column("id").to_pylist() == ["f"]
    tbl.drop_index("caption_idx")
    assert tbl.list_indices() == []
    with pytest.raises(HttpError, match=r"400.*no full-text index"):
        tbl.search("frog", query_type="fts").limit(3).to_arrow()
