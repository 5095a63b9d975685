"""What a hostile (or careless) client found: misspelt LanceDB fields, numbers out of range, a body
cut short, credentials in errors, and the smaller ones. Each answer is a 4xx that says what was wrong
(or, for a client that left, no answer and no server error), never a 500 or a quietly wrong answer.

The LanceDB routes are driven with the bodies the official clients send (and typos of them) on a real
table made through the LanceDB ``create`` route; the server runs in-process unless a real socket is
the point (a client that disconnects mid-body).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings
from tests.conftest import LiveServer
from tests.helpers import arrow_stream, assert_error

ARROW = {"content-type": "application/vnd.apache.arrow.stream"}
DIM, ROWS = 8, 300


def vectors_table(ids: list[str] | None = None) -> pa.Table:
    ids = ids or [f"r{i}" for i in range(ROWS)]
    rng = np.random.default_rng(3)
    flat = pa.array(rng.random(len(ids) * DIM, dtype=np.float32))
    return pa.table({"id": ids, "label": [i % 5 for i in range(len(ids))],
                     "vector": pa.FixedSizeListArray.from_arrays(flat, DIM)})


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(uri=str(tmp_path / "data"), warm_on_start=False))) as client:
        made = client.post("/v1/table/t/create/", content=arrow_stream(vectors_table()), headers=ARROW)
        assert made.status_code == 200, made.text
        yield client


# -- 3. misspelt LanceDB fields: a 422 with the close match, never a wrong answer ------------------

TYPOS = [
    ("count_rows", {"predicte": "label = 3"}, "predicate"),
    ("query", {"vector": [], "k": 10, "filtr": "label = 3"}, "filter"),
    ("create_index", {"column": "vector", "index_type": "IVF_PQ", "num_partitons": 2}, "num_partitions"),
    ("create_scalar_index", {"column": "label", "index_tpye": "BTREE"}, "index_type"),
    ("describe", {"versoin": 1}, "version"),
    ("version/list", {"descneding": True}, "descending"),
    ("tags/create", {"tag": "a", "verison": 1}, "version"),
    ("index/list", {"verison": 1}, "version"),
    ("restore", {"verison": 1}, "version"),
]


@pytest.mark.parametrize(("op", "body", "meant"), TYPOS, ids=[t[0] for t in TYPOS])
def test_a_misspelt_lancedb_field_is_422_with_the_close_match(http: TestClient, op: str, body: dict[str, Any],
                                                             meant: str) -> None:
    before = http.get("/api/v1/tables/t").json()["version"]
    typo = list(body)[-1]  # each body's last field is the misspelt one
    refused = assert_error(http.post(f"/v1/table/t/{op}/", json=body), 422, "unknown_field")
    assert refused["detail"]["suggestions"] == {typo: meant}, refused
    assert meant in refused["detail"]["accepted"]
    spec = http.post(f"/v1/table/t/{op}", params={"delimiter": "$"}, json=body)  # the namespace form
    assert spec.status_code == 422 and spec.json()["code"] == 13, spec.text
    assert http.get("/api/v1/tables/t").json()["version"] == before  # nothing was written


def test_the_fields_the_clients_send_are_read_or_accepted(http: TestClient) -> None:
    threes = http.post("/v1/table/t/count_rows/", json={"predicate": "label = 3", "version": None}).json()
    assert threes == ROWS // 5
    body = {"vector": [0.5] * DIM, "k": 3, "filter": "label = 3", "prefilter": True, "columns": ["id", "label"],
            "nprobes": 20, "minimum_nprobes": 20, "maximum_nprobes": 0, "lower_bound": None, "upper_bound": None,
            "ef": None, "refine_factor": None, "fast_search": False, "bypass_vector_index": False,
            "with_row_id": False, "approx_mode": None, "use_lsm": None, "version": None}
    hits = http.post("/v1/table/t/query/", json=body)
    assert hits.status_code == 200, hits.text
    rows = pa.ipc.open_file(hits.content).read_all()
    assert rows.num_rows == 3 and set(rows.column("label").to_pylist()) == {3}
    fts_only = {"column": "label", "index_type": "BTREE", "replace": True, "with_position": False}
    assert http.post("/v1/table/t/create_index/", json=fts_only).status_code == 200
    branch = http.post("/v1/table/t/create_index/", json={"column": "label", "index_type": "BTREE", "branch": "b"})
    assert "main" in assert_error(branch, 400, "bad_request")["message"]  # not built on main in the branch's place


# -- 4. numbers out of range, and a client that leaves mid-body ------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 16])
def test_pq_bits_out_of_range_are_400_on_both_apis(http: TestClient, bits: int) -> None:
    native = http.post("/api/v1/tables/t/indexes", json={"column": "vector", "type": "IVF_PQ", "num_bits": bits,
                                                         "num_partitions": 2, "num_sub_vectors": 2})
    assert "4 or 8" in assert_error(native, 400, "bad_request")["message"]
    lancedb = http.post("/v1/table/t/create_index/", json={"column": "vector", "index_type": "IVF_PQ",
                                                           "num_bits": bits, "num_partitions": 2})
    assert "4 or 8" in assert_error(lancedb, 400, "bad_request")["message"]
    ok = http.post("/v1/table/t/create_index/", json={"column": "vector", "index_type": "IVF_PQ", "num_bits": 4,
                                                      "num_partitions": 2, "num_sub_vectors": 2})
    assert ok.status_code == 200, ok.text


def test_a_client_that_leaves_mid_body_is_499_never_a_500(tmp_path: Path, live_server: Callable[[str], LiveServer],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    server = live_server(str(tmp_path / "data"))
    made = httpx.post(f"{server.url}/v1/table/t/create/", content=arrow_stream(vectors_table()), headers=ARROW)
    assert made.is_success, made.text
    routes = [("/v1/table/t/count_rows/", "application/json"), ("/api/v1/tables/t/query", "application/json"),
              ("/v1/table/t/insert/", ARROW["content-type"])]
    with caplog.at_level(logging.INFO):
        for path, kind in routes:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {kind}\r\n"
                             f"content-length: 5000\r\n\r\n{{".encode())
                time.sleep(0.2)  # the handler is reading the body when the client goes
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and caplog.text.count("client disconnected") < len(routes):
            time.sleep(0.05)
    metrics = httpx.get(f"{server.url}/metrics").text
    counted = [line for line in metrics.splitlines() if line.startswith("lightbox_http_requests_total")
               and 'method="POST"' in line and "/t/" in line.replace("{table}", "t").replace("{table_id}", "t")]
    assert not [line for line in counted if 'status="5' in line], counted
    assert sum('status="499"' in line for line in counted) == len(routes), counted
    assert caplog.text.count("client disconnected") == len(routes)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# -- 5. credentials are never printed --------------------------------------------------------------


def test_a_failed_warm_up_never_prints_the_endpoint_password(capfd: pytest.CaptureFixture[str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """An object store that cannot be reached: the warm-up's error names the endpoint URL, password
    included, and must reach the log redacted (not as a raw thread traceback on stderr)."""
    settings = Settings(uri="s3://bucket/root", storage_endpoint="http://alice:hunter2-pw@127.0.0.1:9",
                        storage_allow_http=True, storage_region="us-east-1", storage_access_key_id="AKIDEXAMPLE",
                        storage_secret_access_key="also-secret-123")
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)):
        for thread in threading.enumerate():
            if thread.name == "lightbox-warm":
                thread.join(120)
    printed = capfd.readouterr().err + caplog.text
    assert "could not list the tables to warm" in caplog.text
    assert "127.0.0.1:9" in printed  # the error itself is kept
    assert "hunter2-pw" not in printed and "also-secret-123" not in printed
    assert "Exception in thread" not in printed


@pytest.mark.parametrize("given", [{"storage_options": {"secret_access_key": ["hunter2-list"]}},
                                   {"storage_options": {"token": {"nested": "hunter2-list"}}},
                                   {"storage_secret_access_key": ["hunter2-list"]},
                                   {"api_keys": ["hunter2-list"]}])
def test_settings_errors_never_quote_the_value(given: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**given)
    assert "hunter2-list" not in str(caught.value) and "input_value" not in str(caught.value)
    assert next(iter(given)) in str(caught.value)  # the setting is still named


# -- 7. the smaller ones ---------------------------------------------------------------------------


def test_a_dropped_tables_metrics_series_go_with_it(tmp_path: Path, samples_dir: Path) -> None:
    with TestClient(create_app(Settings(uri=str(tmp_path / "data"), warm_on_start=False))) as client:
        horse = (samples_dir / "horse.png").read_bytes()
        for name in ("gone", "kept"):
            assert client.post("/api/v1/tables", json={"name": name}).status_code == 201
            up = client.post(f"/api/v1/tables/{name}/rows", files=[("files", ("horse.png", horse, "image/png"))])
            assert up.status_code == 201
        series = [line for line in client.get("/metrics").text.splitlines()
                  if line.startswith("lightbox_ingest_rows_total")]
        assert sum('table="gone"' in line for line in series) == 2
        assert client.delete("/api/v1/tables/gone").status_code == 204
        series = [line for line in client.get("/metrics").text.splitlines()
                  if line.startswith("lightbox_ingest_rows_total")]
        assert not [line for line in series if 'table="gone"' in line], series
        assert sum('table="kept"' in line for line in series) == 2


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/v1/table/t/count_rows/", "POST"), ("DELETE", "/v1/table/t/query", "POST"),
    ("PUT", "/v1/table/", "GET"), ("PATCH", "/v1/namespace/$/table/list", "GET, POST")])
def test_a_served_lancedb_route_asked_with_another_method_is_405(http: TestClient, method: str, path: str,
                                                                 allowed: str) -> None:
    answer = http.request(method, path)
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["allow"] == allowed
    assert_error(http.request(method, "/v1/table/t/no_such_operation/"), 501, "not_implemented")  # still not served


def test_images_and_errors_are_served_nosniff(tmp_path: Path, samples_dir: Path) -> None:
    with TestClient(create_app(Settings(uri=str(tmp_path / "data"), warm_on_start=False))) as client:
        assert client.post("/api/v1/tables", json={"name": "pics"}).status_code == 201
        horse = (samples_dir / "horse.png").read_bytes()
        assert client.post("/api/v1/tables/pics/rows", files=[("files", ("x.png", horse, "image/png"))]).is_success
        for path in ("rows/x.png/image", "rows/x.png/image?width=20", "rows/x.png/thumbnail", "rows/x.png/array",
                     "rows/missing.png/image"):
            answer = client.get(f"/api/v1/tables/pics/{path}")
            assert answer.headers["x-content-type-options"] == "nosniff", path


def test_a_bad_branch_name_says_branch(http: TestClient) -> None:
    refused = http.post("/api/v1/tables/t/branches", json={"name": "bad name!"})
    message = assert_error(refused, 400, "invalid_name")["message"]
    assert message.startswith("invalid branch name") and "table" not in message


def test_a_lancedb_insert_naming_an_id_twice_is_422_naming_it(http: TestClient) -> None:
    before = http.post("/v1/table/t/count_rows/", json={}).json()
    rows = vectors_table(["new1", "new2", "new1", "r5", "r5"])
    for op in ("insert", "merge_insert?on=id&when_matched_update_all=true&when_not_matched_insert_all=true",
               "insert?mode=overwrite", "create?mode=overwrite"):
        refused = assert_error(http.post(f"/v1/table/t/{op.replace('?', '/?', 1) if '?' in op else op + '/'}",
                                  content=arrow_stream(rows), headers=ARROW), 422, "duplicate_ids")
        assert refused["detail"]["ids"] == ["new1", "r5"] and refused["detail"]["count"] == 2
    assert http.post("/v1/table/t/count_rows/", json={}).json() == before  # nothing written, nothing dropped
