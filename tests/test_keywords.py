"""Keyword and hybrid search through the service's app (in this process): the grammar, scores, filters,
paging, rows written after the index, the keeper's fold, versions, tags and branches, fusion, the
index routes, the command line, and every bad input as a clear 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import lance
import numpy as np
import pyarrow as pa
import pytest

from app.services.hybrid import RRF_K, fuse
from app.services.keywords import MAX_KEYWORDS_CHARS
from lightbox.cli import main
from tests.conftest import InProcess

CAPTIONS = {
    "cat.png": "a red cat sleeping on a mat",
    "dog.png": "a blue dog running in the park",
    "both.png": "a red dog chasing a cat",
    "samurai.png": "seven samurai on horseback",
    "sat.png": "the cat sat on the warm roof",
    "frog.png": "a green frog in a pond",
}
DIM = 4


def vectors(n: int, seed: int = 0) -> pa.Array:
    rng = np.random.default_rng(seed)
    return pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(size=n * DIM).astype(np.float32)), DIM)


def docs_table(ids: list[str], captions: list[str], seed: int = 0) -> pa.Table:
    return pa.table({"id": ids, "caption": captions, "label": [i % 2 for i in range(len(ids))],
                     "vector": vectors(len(ids), seed)})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[InProcess]:
    """``docs`` (captions, a label, 4-d vectors; stable row ids as Lightbox writes them) with a full-text
    index on ``caption``, and ``plain`` (no vector column) with one too; the keeper only folds when told."""
    root = tmp_path / "data"
    lance.write_dataset(docs_table(list(CAPTIONS), list(CAPTIONS.values())), str(root / "docs.lance"),
                        enable_stable_row_ids=True)
    lance.write_dataset(pa.table({"id": ["a", "b"], "caption": ["red cat", "blue dog"]}), str(root / "plain.lance"),
                        enable_stable_row_ids=True)
    app = InProcess(str(root), background_indexing=False)
    with app.http() as http:
        for table in ("docs", "plain"):
            created = http.post(f"/api/v1/tables/{table}/indexes", json={"column": "caption", "type": "FTS"})
            assert created.status_code == 201, created.text
            assert created.json()["name"] == "caption_fts"
    yield app
    app.close()


def search(http: httpx.Client, body: dict[str, Any], table: str = "docs", **params: Any) -> httpx.Response:
    return http.post(f"/api/v1/tables/{table}/search", json=body, params=params)


def hits(http: httpx.Client, body: dict[str, Any], table: str = "docs", **params: Any) -> list[dict[str, Any]]:
    response = search(http, body, table, **params)
    assert response.status_code == 200, response.text
    return response.json()["hits"]


def ids(found: list[dict[str, Any]]) -> list[str]:
    return [h["id"] for h in found]


# -- keywords ------------------------------------------------------------------------------------------
def test_words_rank_by_bm25_with_their_scores(served: InProcess) -> None:
    with served.http() as http:
        found = hits(http, {"keywords": "cat"})
    assert set(ids(found)) == {"cat.png", "both.png", "sat.png"}
    scores = [h["_score"] for h in found]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)


def test_phrases_required_and_excluded_terms(served: InProcess) -> None:
    with served.http() as http:
        assert ids(hits(http, {"keywords": '"red cat"'})) == ["cat.png"]  # the words in that order
        assert set(ids(hits(http, {"keywords": "red cat"}))) == {"cat.png", "both.png", "sat.png"}
        assert ids(hits(http, {"keywords": "cat -red"})) == ["sat.png"]
        assert ids(hits(http, {"keywords": '+dog -"blue dog"'})) == ["both.png"]
        assert ids(hits(http, {"keywords": "cats"}))[0] in {"cat.png", "both.png", "sat.png"}  # stemmed
        assert hits(http, {"keywords": "unicorn"}) == []


def test_filters_apply_before_the_ranking_and_pages_follow_it(served: InProcess) -> None:
    with served.http() as http:
        every = hits(http, {"keywords": "cat dog", "k": 10})
        assert len(every) == 4
        page = hits(http, {"keywords": "cat dog", "k": 2, "offset": 1})  # equal scores may swap places
        assert [h["_score"] for h in page] == pytest.approx([h["_score"] for h in every[1:3]])
        labelled = hits(http, {"keywords": "cat dog", "k": 1, "filter": "label = 1"})
        assert len(labelled) == 1 and labelled[0]["label"] == 1
        keyed = hits(http, {"keywords": "cat", "columns": ["id"]})
        assert set(keyed[0]) == {"id", "_score"}


def test_rows_written_after_the_index_are_found_at_once_and_folded_by_the_keeper(served: InProcess) -> None:
    with served.http() as http:
        sdk = served.sdk()
        sdk.table("docs").add(docs_table(["late.png"], ["a late cat arrives"], seed=9))
        assert "late.png" in ids(hits(http, {"keywords": "cat"}))  # a flat pass over the new rows
        assert ids(hits(http, {"keywords": '"late cat"'})) == ["late.png"]
        index = next(i for i in sdk.table("docs").indexes() if i["name"] == "caption_fts")
        assert index["num_unindexed_rows"] == 1
        done = served.app.state.searcher.indexes.fold("docs")
        assert {"index": "caption_fts", "action": "folded"}.items() <= done[-1].items()
        index = next(i for i in sdk.table("docs").indexes() if i["name"] == "caption_fts")
        assert index["num_unindexed_rows"] == 0 and index["num_indexed_rows"] == len(CAPTIONS) + 1
        assert "late.png" in ids(hits(http, {"keywords": "cat"}))
        updated = sdk.table("docs").update("frog.png", {"caption": "a cat in disguise"})
        assert updated
        assert "frog.png" in ids(hits(http, {"keywords": "cat"}))
        assert "frog.png" not in ids(hits(http, {"keywords": "frog"}))


def test_any_version_tag_or_branch(served: InProcess) -> None:
    sdk = served.sdk()
    docs = sdk.table("docs")
    docs.tag("before")
    docs.add(docs_table(["late.png"], ["a late cat arrives"], seed=9))
    with served.http() as http:
        assert "late.png" in ids(hits(http, {"keywords": "cat"}))
        assert "late.png" not in ids(hits(http, {"keywords": "cat"}, tag="before"))
        # version 1 has no index (it came at version 2): searched by a flat pass, as latest has one
        assert set(ids(hits(http, {"keywords": "cat"}, version=1))) == {"cat.png", "both.png", "sat.png"}
        docs.create_branch("exp")
        docs.branch("exp").add(docs_table(["branch.png"], ["a branch cat"], seed=3))
        assert "branch.png" in ids(hits(http, {"keywords": "cat"}, branch="exp"))
        assert "branch.png" not in ids(hits(http, {"keywords": "cat"}))


# -- hybrid ---------------------------------------------------------------------------------------------
def row_vector(http: httpx.Client, row: str) -> list[float]:
    found = http.post("/api/v1/tables/docs/query", json={"filter": f"id = '{row}'", "columns": ["vector"]})
    return found.json()["rows"][0]["vector"]


def test_a_row_matching_both_ranks_first(served: InProcess) -> None:
    """The query vector lies between ``both.png`` and ``samurai.png`` (which no keyword finds), and
    "red cat" finds ``cat.png`` as well as ``both.png`` (equal scores); fused, the row both sides
    find near the top ranks first, by either fusion."""
    with served.http() as http:
        near = row_vector(http, "both.png")
        query = (np.asarray(near) + 0.6 * np.asarray(row_vector(http, "samurai.png"))).tolist()
        vector_only = ids(hits(http, {"vector": query, "k": 6}))
        keyword_only = ids(hits(http, {"keywords": "red cat", "k": 6}))
        assert "samurai.png" in vector_only and "samurai.png" not in keyword_only
        for body in ({}, {"fusion": "linear"}, {"fusion": "linear", "weight": 0.5}):
            fused = hits(http, {"vector": query, "keywords": "red cat", "k": 3, **body})
            assert fused[0]["id"] == "both.png", (body, fused)
            assert fused[0]["_distance"] is not None and fused[0]["_score"] is not None
            relevance = [h["_relevance_score"] for h in fused]
            assert relevance == sorted(relevance, reverse=True)
        like = hits(http, {"image_id": "cat.png", "keywords": "dog", "k": 10})
        assert "cat.png" not in ids(like) and "both.png" in ids(like)  # "more like this" leaves the row out
        filtered = hits(http, {"vector": query, "keywords": "red cat", "k": 10, "filter": "label = 0"})
        assert filtered and all(h["label"] == 0 for h in filtered)  # both sides prefiltered


def test_fusion_arithmetic() -> None:
    near = pa.table({"id": ["a", "b"], "_rowid": pa.array([1, 2], pa.uint64()),
                     "_distance": pa.array([0.0, 2.0], pa.float32())})
    matched = pa.table({"id": ["b", "c"], "_rowid": pa.array([2, 3], pa.uint64()),
                        "_score": pa.array([3.0, 1.0], pa.float32())})
    rrf = fuse(near, matched).to_pydict()
    assert rrf["id"] == ["b", "a", "c"]
    assert rrf["_relevance_score"][0] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))
    assert rrf["_distance"] == [2.0, 0.0, None] and rrf["_score"] == [3.0, None, 1.0]
    linear = fuse(near, matched, method="linear", weight=0.25).to_pydict()
    # b: 0.25 * 0 (the farther distance) + 0.75 * 1 (the top score); a: 0.25 * 1; c: 0.75 * 0
    assert linear["id"] == ["b", "a", "c"]
    assert linear["_relevance_score"] == pytest.approx([0.75, 0.25, 0.0])


# -- indexes: create, list, drop ------------------------------------------------------------------------
def test_indexes_are_listed_described_and_dropped(served: InProcess) -> None:
    sdk = served.sdk()
    docs = sdk.table("docs")
    listed = {i["name"]: i for i in docs.indexes()}
    assert listed["caption_fts"]["type"] == "Inverted" and listed["caption_fts"]["columns"] == ["caption"]
    assert "caption_fts" in {i["name"] for i in docs.info()["indexes"]}
    made = docs.create_index("id", "FTS", with_position=False, stem=False)
    assert made["name"] == "id_fts"
    with served.http() as http:
        assert ids(hits(http, {"keywords": "samurai", "keyword_columns": ["id"]})) == ["samurai.png"]
        phrase = search(http, {"keywords": '"samurai png"', "keyword_columns": ["id"]})
        assert phrase.status_code == 400 and "positions" in phrase.json()["error"]["message"]
        version = docs.drop_index("caption_fts")["version"]
        assert "caption_fts" not in {i["name"] for i in docs.indexes()}
        assert hits(http, {"keywords": "cat"}, version=version - 1)  # an older version keeps its index
        gone = search(http, {"keywords": "cat", "keyword_columns": ["caption"]})
        assert gone.status_code == 400 and gone.json()["error"]["code"] == "no_text_index"
        missing = http.delete("/api/v1/tables/docs/indexes/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "index_not_found"


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "words"), [
    ({"keywords": ""}, "empty"),
    ({"keywords": "   "}, "empty"),
    ({"keywords": "x" * (MAX_KEYWORDS_CHARS + 1)}, "limit"),
    ({"keywords": '"red cat'}, "unbalanced"),
    ({"keywords": "-red -cat"}, "only excludes"),
    ({"keywords": "cat", "keyword_columns": ["label"]}, "indexable (text) columns: ['id', 'caption']"),
    ({"keywords": "cat", "keyword_columns": ["id"]}, "no full-text index"),
    ({"keywords": "cat", "keyword_columns": ["nope"]}, "unknown column"),
    ({"keywords": "cat", "k": 9000, "offset": 2000}, "k + offset"),
    ({"keywords": "cat", "offset": -1}, "offset"),
    ({"keywords": "cat", "weight": 2}, "weight"),
    ({"keywords": "cat", "fusion": "max"}, "fusion"),
    ({"keywords": "cat", "filter": "nope = 1"}, "nope"),
])
def test_bad_keyword_queries_are_clear_400s(served: InProcess, body: dict[str, Any], words: str) -> None:
    with served.http() as http:
        response = search(http, body)
    assert response.status_code == 400, response.text
    assert words in response.text


def test_hybrid_without_vectors_and_fts_on_a_number_are_400s(served: InProcess) -> None:
    with served.http() as http:
        response = search(http, {"keywords": "cat", "vector": [0.0] * DIM}, table="plain")
        assert response.status_code == 400 and "needs a vector column" in response.json()["error"]["message"]
        assert ids(hits(http, {"keywords": "cat"}, table="plain")) == ["a"]  # keywords alone need none
        made = http.post("/api/v1/tables/docs/indexes", json={"column": "label", "type": "FTS"})
        assert made.status_code == 400 and "Text columns: ['id', 'caption']" in made.json()["error"]["message"]
        tokenizer = http.post("/api/v1/tables/docs/indexes", json={"column": "label", "type": "BTREE", "stem": False})
        assert tokenizer.status_code == 400 and "full-text" in tokenizer.text
        none = http.post("/api/v1/tables/docs/search", json={})
        assert none.status_code == 400 and "keywords" in none.text


# -- the command line -----------------------------------------------------------------------------------
def test_command_line(served: InProcess, capsys: pytest.CaptureFixture[str]) -> None:
    uri = served.settings.uri
    served.close()  # the command line serves the root itself
    assert main(["search", "docs", "--keywords", "cat -red", "--uri", uri, "--format", "json"]) == 0
    assert '"sat.png"' in capsys.readouterr().out
    assert main(["index", "docs", "create", "id", "--type", "FTS", "--no-positions", "--uri", uri]) == 0
    assert "id_fts" in capsys.readouterr().out
    assert main(["index", "docs", "--uri", uri]) == 0
    listed = capsys.readouterr().out
    assert "caption_fts\tInverted on caption" in listed and "id_fts" in listed
    assert main(["search", "docs", "-q", "samurai", "--keyword-columns", "id", "--uri", uri, "--format", "csv"]) == 0
    assert "samurai.png" in capsys.readouterr().out
    assert main(["index", "docs", "drop", "id_fts", "--uri", uri]) == 0
    assert main(["search", "docs", "--uri", uri]) == 2
    assert "--keywords" in capsys.readouterr().err
