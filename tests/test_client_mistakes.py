"""A client's mistake is a 4xx in the one error shape, never a 500, and never a write that did
something else: filters that cannot run on the column types, names with a trailing newline,
non-ASCII API keys, numbers beyond what Lance takes, details that orjson cannot render, columns that
cannot hold what is asked of them, and body fields the route does not know. Each case runs through the
service's app (in this process) over a real table (images, int and string metadata, a vector column)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import InProcess
from tests.helpers import assert_error

IMAGES = ["astronaut.png", "camera.png", "horse.png", "rocket.jpg", "china.jpg", "chessboard_GRAY.png"]
BAD_FILTERS = ["label = 'x'", "split = 3", "id > 5", "label = '3'"]
ARROW = {"content-type": "application/vnd.apache.arrow.stream"}
BIG = 2**70


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> str:
    """Table ``t``: six images with an int ``label``, a string ``split`` and a 'builtin' vector column."""
    base = tmp_path_factory.mktemp("mistakes")
    folder = base / "images"
    folder.mkdir()
    lines = []
    for i, name in enumerate(IMAGES):
        (folder / name).write_bytes((samples_dir / name).read_bytes())
        lines.append(json.dumps({"file": name, "label": i, "split": "train" if i % 2 else "test"}))
    (base / "meta.jsonl").write_text("\n".join(lines) + "\n")
    store = Store(str(base / "data"), refresh_seconds=0.0)
    run_ingest(store, IngestOptions(table="t", sources=[str(folder)], metadata=str(base / "meta.jsonl"), key="file",
                                    embed="builtin", tag="v1", progress=False))
    return store.uri


@pytest.fixture
def client(app: InProcess) -> Iterator[httpx.Client]:
    with app.http() as http:
        yield http


def state(client: httpx.Client, table: str = "t") -> tuple[int, int, list[str]]:
    """(version, rows, branches): what a refused write must leave as it was."""
    info = client.get(f"/api/v1/tables/{table}").json()
    branches = [b["name"] for b in client.get(f"/api/v1/tables/{table}/branches").json()["branches"]]
    return info["version"], info["num_rows"], branches


def ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# -- 1. filters that parse but cannot run on the column types ------------------------------------
def test_filters_that_cannot_run_on_the_column_types_are_400_for_every_caller(client: httpx.Client) -> None:
    before = state(client)
    (embedding,) = client.get("/api/v1/tables/t").json()["embeddings"]
    vector = [0.5] * embedding["dim"]
    for text in BAD_FILTERS:
        calls = [
            ("GET", "/api/v1/tables/t/count", {"params": {"filter": text}}),
            ("POST", "/api/v1/tables/t/query", {"json": {"filter": text}}),
            ("POST", "/api/v1/tables/t/search", {"json": {"image_id": "camera.png", "filter": text}}),
            ("POST", "/api/v1/tables/t/delete", {"json": {"filter": text}}),
            ("POST", "/v1/table/t/delete/", {"json": {"predicate": text}}),
            ("POST", "/v1/table/t/update/", {"json": {"predicate": text, "updates": [["split", "'x'"]]}}),
            ("POST", "/v1/table/t/count_rows/", {"json": {"predicate": text}}),
            ("POST", "/v1/table/t/query/", {"json": {"vector": [], "k": 5, "filter": text}}),
            ("POST", "/api/v1/tables/t/search", {"json": {"vector": vector, "filter": text}}),
            ("POST", "/v1/table/t/query/", {"json": {"vector": vector, "k": 3, "filter": text}}),
        ]
        for method, path, kw in calls:
            error = assert_error(client.request(method, path, **kw), 400, "invalid_filter")
            assert "cannot run" in error["message"] or "failed" in error["message"], error
    assert state(client) == before  # no refused delete or update wrote anything


def test_a_valid_filter_still_runs_in_search_and_delete(client: httpx.Client) -> None:
    hits = client.post("/api/v1/tables/t/search", json={"image_id": "camera.png", "filter": "label >= 2",
                                                        "columns": ["id", "label"]})
    assert hits.status_code == 200, hits.text
    assert hits.json()["hits"] and all(h["label"] >= 2 for h in hits.json()["hits"])
    before = state(client)
    nothing = client.post("/api/v1/tables/t/delete", json={"filter": "label = 99"})
    assert nothing.status_code == 200 and nothing.json()["deleted"] == 0, nothing.text
    assert state(client) == before


# -- 2. names with a trailing newline --------------------------------------------------------------
@pytest.mark.parametrize("name", ["b1\n", "b1\r\n", "\nb1", "b 1"])
def test_names_with_a_trailing_newline_are_refused_everywhere(client: httpx.Client, name: str) -> None:
    before = state(client)
    tables = client.get("/api/v1/tables").json()["tables"]
    assert_error(client.post("/api/v1/tables", json={"name": name}), 400, "invalid_name")
    assert_error(client.post("/api/v1/tables/t/branches", json={"name": name}), 400, "invalid_name")
    assert_error(client.post("/api/v1/tables/t/tags", json={"name": name}), 400, "invalid_name")
    assert_error(client.post("/api/v1/tables/t/clone", json={"name": name}), 400, "invalid_name")
    assert_error(client.post("/v1/table/t/tags/create/", json={"tag": name, "version": 1}), 400, "invalid_name")
    assert client.get("/api/v1/tables").json()["tables"] == tables
    assert [t["name"] for t in client.get("/api/v1/tables/t/tags").json()["tags"]] == ["v1"]
    assert state(client) == before


# -- 3. non-ASCII API keys -------------------------------------------------------------------------
def test_non_ascii_api_keys_are_401_and_real_keys_still_work(root: str, in_process) -> None:
    with in_process(root, api_keys="s3cret,viewer:ro,clé").http() as http:
        for headers in ({"authorization": "Bearer ré".encode()}, {"x-api-key": b"\xff"},
                        {"x-api-key": b"s3cret\xff"}, {"authorization": b"Bearer \xff\xfe"},
                        {"x-api-key": "clé".encode("latin-1")}):
            assert_error(http.get("/api/v1/tables", headers=headers), 401, "unauthorized")
        assert http.get("/api/v1/tables", headers={"x-api-key": "s3cret"}).status_code == 200
        assert http.get("/api/v1/tables", headers={"authorization": "Bearer viewer"}).status_code == 200
        assert http.get("/api/v1/tables", headers={"x-api-key": "clé".encode()}).status_code == 200  # UTF-8


# -- 4. numbers beyond what Lance takes --------------------------------------------------------------
def test_out_of_range_numbers_are_4xx_not_500(client: httpx.Client) -> None:
    before = state(client)
    for value in ("inf", "-inf", "nan", "1e308", str(BIG)):
        assert_error(client.post("/api/v1/tables/t/optimize", params={"retention_seconds": value}), 400)
    for cursor in (str(BIG), "-1"):
        assert_error(client.get("/api/v1/tables/t/versions", params={"cursor": cursor}), 400)
    for cursor in ("-5", str(BIG), "x"):
        assert_error(client.get("/api/v1/tables/t/diff", params={"from": "1", "cursor": cursor}), 400)
    assert_error(client.post("/api/v1/tables/t/search", json={"image_id": "camera.png", "nprobes": BIG}), 400)
    assert_error(client.post("/api/v1/tables/t/search", json={"image_id": "camera.png", "k": BIG}), 400)
    assert_error(client.post("/api/v1/tables/t/branches", json={"name": "big", "version": BIG}), 400)
    assert_error(client.post("/api/v1/tables/t/indexes", json={"column": "label", "type": "BTREE",
                                                               "num_partitions": BIG}), 400)
    assert_error(client.patch("/api/v1/tables/t/rows/camera.png", json={"label": BIG}), 422)
    assert_error(client.post("/v1/table/t/update/", json={"predicate": "true", "updates": [["label", str(BIG)]]}),
                 422)
    # orjson reads 2**64 - 1 as an int, beyond Lance's int64 (a k that large means "no limit" there)
    raw = b'{"vector": [], "k": 5, "offset": 18446744073709551615}'
    assert_error(client.post("/v1/table/t/query/", content=raw, headers={"content-type": "application/json"}), 400)
    assert state(client) == before


def test_a_cursor_with_a_version_beyond_64_bits_is_400(client: httpx.Client) -> None:
    page = client.post("/api/v1/tables/t/query", json={"limit": 1, "columns": ["id"]}).json()
    cursor = page["next_cursor"]
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for version in (BIG, 2**63, 0, -1):
        forged = base64.urlsafe_b64encode(json.dumps({**raw, "v": version}).encode()).decode().rstrip("=")
        assert_error(client.post("/api/v1/tables/t/query", json={"limit": 1, "columns": ["id"], "cursor": forged}),
                     400, "invalid_cursor")
    same = client.post("/api/v1/tables/t/query", json={"limit": 1, "columns": ["id"], "cursor": cursor})
    assert same.status_code == 200, same.text


# -- 5. an error detail that orjson cannot render ----------------------------------------------------
def test_an_integer_over_64_bits_is_echoed_back_not_a_500(client: httpx.Client) -> None:
    error = assert_error(client.post("/api/v1/tables/t/tags", json={"name": "big", "version": BIG}), 400,
                         "invalid_request")
    (problem,) = error["detail"]["errors"]
    assert problem["loc"] == ["body", "version"] and problem["input"] == str(BIG)  # rendered, as a string
    error = assert_error(client.post("/api/v1/tables/t/restore", json={"version": -BIG}), 400)
    assert error["detail"]["errors"][0]["input"] == str(-BIG)


# -- 6. columns that cannot hold what is asked of them -----------------------------------------------
def test_columns_that_cannot_hold_what_is_asked_are_4xx(client: httpx.Client) -> None:
    before = state(client)
    assert_error(client.post("/api/v1/tables/t/indexes", json={"column": "image", "type": "BTREE"}), 400)
    assert_error(client.post("/v1/table/t/create_scalar_index/", json={"column": "image"}), 400)
    assert_error(client.post("/v1/table/t/create_index/", json={"column": "image", "index_type": "BITMAP"}), 400)
    for column in ("../x", "a.b", "", "1st", "x y"):
        assert_error(client.post("/api/v1/tables/t/embeddings", json={"model": "builtin", "column": column}), 400,
                     "invalid_name")
    for fields in ([{"name": "../x", "type": "int64"}], [{"name": "", "type": "int64"}],
                   [{"name": "a", "type": "int64"}, {"name": "a", "type": "string"}]):
        assert_error(client.post("/api/v1/tables", json={"name": "bad_schema", "schema": fields}), 400)
    assert "bad_schema" not in client.get("/api/v1/tables").json()["tables"]
    for images in (pa.array([1, 2], pa.int64()), pa.array(["a", "b"])):
        rows = ipc(pa.table({"id": ["n1", "n2"], "image": images}))
        assert_error(client.post("/api/v1/tables/t/rows", content=rows, headers=ARROW), 422)
        assert_error(client.post("/v1/table/t/insert/", content=rows, headers=ARROW), 422)
        assert_error(client.post("/v1/table/t/insert/", params={"mode": "overwrite"}, content=rows, headers=ARROW),
                     422)
    assert state(client) == before


def test_fetch_of_only_the_image_column_answers_the_ids(client: httpx.Client) -> None:
    got = client.post("/api/v1/tables/t/fetch", json={"ids": ["camera.png"], "columns": ["image"]})
    assert got.status_code == 200, got.text
    assert got.json() == {"rows": [{"id": "camera.png"}], "missing": []}


# -- 7. unknown body fields --------------------------------------------------------------------------
def test_a_branch_from_a_misspelt_ref_is_refused_not_made_from_latest(client: httpx.Client) -> None:
    before = state(client)
    error = assert_error(client.post("/api/v1/tables/t/branches", json={"name": "b1", "from": "v1"}), 422,
                         "unknown_field")
    assert error["detail"]["unknown"] == ["from"] and "'from'" in error["message"]
    assert error["detail"]["suggestions"] == {"from": "version"}
    assert state(client) == before  # no b1
    made = client.post("/api/v1/tables/t/branches", json={"name": "b1", "tag": "v1"})
    assert made.status_code == 201, made.text
    assert client.delete("/api/v1/tables/t/branches/b1").status_code == 204


@pytest.mark.parametrize(("method", "path", "body", "typo", "meant"), [
    ("POST", "/api/v1/tables", {"name": "zz", "shema": []}, "shema", "schema"),
    ("POST", "/api/v1/tables/t/branches", {"nmae": "b2"}, "nmae", "name"),
    ("POST", "/api/v1/tables/t/branches/nosuch/merge", {"on_conflit": "theirs"}, "on_conflit", "on_conflict"),
    ("POST", "/api/v1/tables/t/tags", {"name": "x", "verison": 1}, "verison", "version"),
    ("PUT", "/api/v1/tables/t/tags/v1", {"verison": 1}, "verison", "version"),
    ("POST", "/api/v1/tables/t/restore", {"verison": 1}, "verison", "version"),
    ("POST", "/api/v1/tables/t/clone", {"name": "c1", "tagg": "v1"}, "tagg", "tag"),
    ("POST", "/api/v1/tables/t/query", {"fitler": "label = 1"}, "fitler", "filter"),
    ("POST", "/api/v1/tables/t/fetch", {"ids": ["camera.png"], "column": ["id"]}, "column", "columns"),
    ("POST", "/api/v1/tables/t/search", {"image_id": "camera.png", "kk": 3}, "kk", "k"),
    ("POST", "/api/v1/tables/t/delete", {"filtre": "label = 1"}, "filtre", "filter"),
    ("POST", "/api/v1/tables/t/indexes", {"column": "label", "type": "BTREE", "num_partitons": 2}, "num_partitons",
     "num_partitions"),
    ("POST", "/api/v1/tables/t/embeddings", {"model": "builtin", "colum": "v2"}, "colum", "column"),
    ("POST", "/v1/table/t/update/", {"where": "label = 1", "updates": [["split", "'x'"]]}, "where", "predicate"),
    ("POST", "/v1/table/t/delete/", {"predicate": "label = 1", "filter": "x"}, "filter", "predicate"),
])
def test_unknown_body_fields_are_422_naming_them_with_the_close_match(
        client: httpx.Client, method: str, path: str, body: dict[str, Any], typo: str, meant: str) -> None:
    before = state(client)
    tables = client.get("/api/v1/tables").json()["tables"]
    error = assert_error(client.request(method, path, json=body), 422, "unknown_field")
    assert error["detail"]["unknown"] == [typo] and error["detail"]["suggestions"] == {typo: meant}, error
    assert repr(typo) in error["message"] and repr(meant) in error["message"]
    assert state(client) == before and client.get("/api/v1/tables").json()["tables"] == tables


def test_unknown_fields_in_a_multipart_search_are_422(client: httpx.Client, samples_dir: Path) -> None:
    image = (samples_dir / "camera.png").read_bytes()
    error = assert_error(client.post("/api/v1/tables/t/search", files={"image": ("c.png", image, "image/png")},
                                     data={"kk": "3"}), 422, "unknown_field")
    assert error["detail"]["suggestions"] == {"kk": "k"}
    good = client.post("/api/v1/tables/t/search", files={"image": ("c.png", image, "image/png")}, data={"k": "2"})
    assert good.status_code == 200 and len(good.json()["hits"]) == 2, good.text


# -- found by looking for client values that reach Lance unchecked -----------------------------------
def test_values_lance_would_refuse_are_400(client: httpx.Client) -> None:
    before = state(client)
    (embedding,) = client.get("/api/v1/tables/t").json()["embeddings"]
    huge = [1e39] * embedding["dim"]  # finite in JSON, infinite as the float32 Lance and the index compare
    assert_error(client.post("/api/v1/tables/t/search", json={"vector": huge}), 400, "invalid_query")
    assert_error(client.post("/v1/table/t/query/", json={"vector": huge, "k": 3}), 400, "invalid_query")
    # IVF_PQ without the parameters Lance requires is the client's mistake (a 400), not a conflict
    assert_error(client.post("/api/v1/tables/t/indexes", json={"column": "vector", "type": "IVF_PQ"}), 400)
    assert_error(client.post("/api/v1/tables/t/query", json={"order_by": [5]}), 400)
    assert_error(client.post("/v1/table/t/query/", json={"vector": [], "k": 3, "order_by": [{"column_name": 5}]}),
                 400, "unknown_column")
    assert state(client) == before


def test_search_never_answers_image_descriptors_and_takes_distance_as_a_column(client: httpx.Client) -> None:
    for columns, expected in ((["image"], ["id", "_distance"]), (["id", "image"], ["id", "_distance"]),
                              (["_distance"], ["id", "_distance"]), (["label", "_distance"], ["label", "_distance"])):
        got = client.post("/api/v1/tables/t/search", json={"image_id": "camera.png", "k": 2, "columns": columns})
        assert got.status_code == 200, got.text
        hits = got.json()["hits"]
        assert [[k for k in h if k != "image_url"] for h in hits] == [expected] * 2, (columns, got.json())
        assert all(h["image_url"].endswith("/image") for h in hits if "id" in h)  # bytes by URL, never inline


def test_a_patch_of_a_misspelt_column_names_the_close_match(client: httpx.Client) -> None:
    before = state(client)
    error = assert_error(client.patch("/api/v1/tables/t/rows/camera.png", json={"lable": 3}), 422, "unknown_column")
    assert error["detail"]["suggestions"] == {"lable": "label"} and "did you mean 'label'" in error["message"]
    assert state(client) == before


def test_a_lancedb_create_whose_image_column_is_not_bytes_makes_a_plain_table(client: httpx.Client) -> None:
    """``id`` with an ``image`` column of numbers is a plain table, not an image table whose bytes are probed
    (the check once compared two reads of ``Table.schema`` by identity, and probed the numbers: a 500)."""
    from tests.helpers import arrow_stream

    body = arrow_stream(pa.table({"id": ["a", "b"], "image": [5, 7]}))
    made = client.post("/v1/table/numbers/create/", content=body,
                       headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    assert made.status_code == 200, made.text
    described = client.post("/v1/table/numbers/describe/").json()
    assert [f["name"] for f in described["schema"]["fields"]] == ["id", "image"]
