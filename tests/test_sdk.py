"""The Python SDK against the service's app (in this process): same answers as raw HTTP, errors,
retries, pins.

The contract test runs one scenario twice, through ``lightbox.Client`` and through plain httpx,
and compares. Retries are proven on a real socket server that answers 503 before it answers 200.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import lightbox
from tests.conftest import InProcess, free_port

ARROW = {"accept": "application/vnd.apache.arrow.stream"}
SCALARS = ["id", "label", "split", "ink", "width", "height", "mode", "sha256", "size_bytes"]


def without_urls(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON hits less the ``image_url`` each carries (the Arrow answer has only the table's columns)."""
    assert all(h.pop("image_url").endswith(f"/rows/{h['id']}/image") for h in hits)
    return hits


@pytest.fixture(scope="module")
def server(app: InProcess) -> InProcess:
    """The module's in-process service (conftest's ``app`` over this module's ``root``)."""
    return app


@pytest.fixture
def client(server: InProcess) -> Iterator[lightbox.Client]:
    with server.sdk() as c:
        yield c


@pytest.fixture
def raw(server: InProcess) -> Iterator[httpx.Client]:
    with server.http(base_url=f"{server.url}/api/v1") as c:
        yield c


def arrow(response: httpx.Response) -> pa.Table:
    assert response.status_code == 200, response.text
    return pa.ipc.open_stream(response.content).read_all()


def test_sdk_and_raw_http_agree(client: lightbox.Client, raw: httpx.Client, digits_dir: Path) -> None:
    t = client.table("digits")
    assert [vars(i) for i in client.tables()] == raw.get("/tables").json()["tables"]
    assert t.info() == raw.get("/tables/digits").json()
    row_id = "3/00003.png"
    assert t.get(row_id) == raw.get(f"/tables/digits/rows/{row_id}").json()
    assert t.image_bytes(row_id) == raw.get(f"/tables/digits/rows/{row_id}/image").content
    assert t.image_bytes(row_id) == (digits_dir / "images" / row_id).read_bytes()
    assert t.image(row_id).size == (8, 8)
    npy = np.load(io.BytesIO(raw.get(f"/tables/digits/rows/{row_id}/array").content))
    assert np.array_equal(t.array(row_id), npy) and t.array(row_id).dtype == np.uint8
    assert t.thumbnail(row_id, 32) == raw.get(f"/tables/digits/rows/{row_id}/thumbnail?size=32").content

    body = {"filter": "label = 3 AND split = 'train'", "columns": SCALARS, "limit": 100}
    assert t.query(body["filter"], columns=SCALARS, limit=100).to_pylist() == \
        raw.post("/tables/digits/query", json=body).json()["rows"]
    everything = t.query(limit=None)
    assert everything.equals(arrow(raw.post("/tables/digits/query", json={"limit": None}, headers=ARROW)))
    assert everything.num_rows == 200 and "ingested_at" in everything.column_names
    threes = raw.post("/tables/digits/query", json={"filter": "label = 3", "columns": ["id"]}).json()["rows"]
    assert t.to_pandas("label = 3", columns=["id"])["id"].tolist() == [r["id"] for r in threes]
    ids = ["7/00017.png", "0/00000.png", "missing/1.png", "3/00003.png", "0/00000.png"]
    answer = raw.post("/tables/digits/fetch", json={"ids": ids, "columns": SCALARS}).json()
    assert t.fetch(ids, columns=SCALARS).to_pylist() == answer["rows"] and answer["missing"] == ["missing/1.png"]
    with_images = t.fetch(ids[:2], columns=["id"], with_images=True)
    assert with_images.column("image").to_pylist() == [t.image_bytes(i) for i in ids[:2]]
    for where in ("label = 3", None, "ink > 5 AND split = 'test'"):
        expected = raw.get("/tables/digits/count", params={"filter": where} if where else {}).json()["count"]
        assert t.count(where) == expected
    assert t.versions() == raw.get("/tables/digits/versions", params={"order": "asc", "limit": 1000}).json()
    assert t.tags() == raw.get("/tables/digits/tags").json()["tags"]
    assert t.at(tag="v1").query(columns=SCALARS, limit=None).to_pylist() == \
        raw.post("/tables/digits/query?tag=v1", json={"columns": SCALARS, "limit": 10_000}).json()["rows"]

    # similarity search: by row, by vector, by an uploaded image (bytes, path, PIL)
    search = {"image_id": row_id, "k": 5, "columns": ["id", "label"]}
    hits = without_urls(raw.post("/tables/digits/search", json=search).json()["hits"])
    assert t.search(like=row_id, k=5, columns=["id", "label"]).to_pylist() == hits
    vector = t.fetch([row_id], columns=["vector"]).column("vector")[0].as_py()
    body = {"vector": vector, "k": 4, "filter": "label = 3", "columns": SCALARS}
    by_vector = without_urls(raw.post("/tables/digits/search", json=body).json()["hits"])
    assert t.search(vector=vector, k=4, filter="label = 3", columns=SCALARS).to_pylist() == by_vector
    png = (digits_dir / "images" / row_id).read_bytes()
    form = {"k": "3", "columns": json.dumps(SCALARS)}
    answer = raw.post("/tables/digits/search", files={"image": ("q.png", png)}, data=form)
    uploaded = without_urls(answer.json()["hits"])
    assert t.search(image=png, k=3, columns=SCALARS).to_pylist() == uploaded
    assert t.search(image=digits_dir / "images" / row_id, k=3, columns=SCALARS).to_pylist() == uploaded
    pil_ids = t.search(image=Image.open(io.BytesIO(png)), k=3, columns=["id"]).column("id").to_pylist()
    assert pil_ids == [h["id"] for h in uploaded] and pil_ids[0] == row_id


def test_history_agrees_with_raw_http(client: lightbox.Client, raw: httpx.Client, digits_dir: Path) -> None:
    t = client.clone("digits", "history", tag="v1")
    t.tag("base")
    t.update("3/00003.png", {"label": 8}, message="relabel")
    nines = raw.get("/tables/history/count", params={"tag": "base", "filter": "label = 9"}).json()["count"]
    assert nines > 0 and t.delete("label = 9")["deleted"] == nines
    added = t.add([digits_dir / "images" / "1/00001.png"], metadata=[{"label": 1}], ids=["new/1.png"])
    assert added["inserted"] == 1
    expected = raw.get("/tables/history/diff", params={"from": "base", "to": "main"}).json()
    got = t.diff("base")
    assert got == {k: v for k, v in expected.items() if k != "next_cursor"}
    assert got["added"] == ["new/1.png"] and got["changed"] == [{"id": "3/00003.png", "columns": ["label"],
                                                                 "values": {"label": {"from": 3, "to": 8}}}]
    assert t.versions() == raw.get("/tables/history/versions", params={"order": "asc"}).json()
    assert "relabel" in [v["message"] for v in t.versions()]
    first = t.versions()[0]["version"]
    assert t.tag("moving")["version"] == t.info()["version"]
    assert t.tag("moving", version=first, move=True)["version"] == first
    with pytest.raises(lightbox.Conflict):
        t.tag("moving")
    t.untag("moving")
    assert [x["name"] for x in t.tags()] == ["base"]
    restored = t.restore(tag="base")
    assert restored["restored"] == {x["name"]: x["version"] for x in t.tags()}["base"]
    assert t.diff("base")["counts"] == {"added": 0, "removed": 0, "changed": 0}
    client.drop_table("history")
    with pytest.raises(lightbox.NotFound):
        t.count()


def test_errors_carry_status_code_and_request_id(client: lightbox.Client, in_process: Any, root: str) -> None:
    t = client.table("digits")
    cases: list[tuple[Any, type[lightbox.LightboxError], int, str]] = [
        (lambda: client.table("nope").count(), lightbox.NotFound, 404, "table_not_found"),
        (lambda: t.get("9/99999.png"), lightbox.NotFound, 404, "row_not_found"),
        (lambda: t.query("nosuch = 1"), lightbox.BadRequest, 400, "invalid_filter"),
        (lambda: t.search(k=3), lightbox.BadRequest, 400, "invalid_query"),
        (lambda: client.create_table("digits"), lightbox.Conflict, 409, ""),
        (lambda: t.at(version=99).count(), lightbox.NotFound, 404, ""),
    ]
    for call, cls, status, code in cases:
        with pytest.raises(cls) as caught:
            call()
        err = caught.value
        assert isinstance(err, lightbox.LightboxError) and err.status == status, err
        assert err.code == code or (not code and err.code), err
        assert err.request_id and len(err.request_id) == 32 and err.request_id in str(err)
    with pytest.raises(lightbox.BadRequest) as bad:
        t.query("nosuch = 1")
    assert "nosuch" in bad.value.message

    guarded = in_process(root, api_keys="secret,peek:ro")
    with pytest.raises(lightbox.Unauthorized) as unauthorized:
        guarded.sdk().tables()
    assert unauthorized.value.status == 401 and unauthorized.value.code == "unauthorized"
    assert guarded.sdk(api_key="peek").table("digits").count() == 200
    with pytest.raises(lightbox.Forbidden):
        guarded.sdk(api_key="peek").table("digits").tag("nope")
    with pytest.raises(lightbox.Unreachable) as unreachable:
        lightbox.Client(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01).tables()
    assert unreachable.value.status == 0 and unreachable.value.request_id


def test_pinned_reads_never_change_and_refuse_writes(client: lightbox.Client, digits_dir: Path) -> None:
    t = client.clone("digits", "pinned", tag="v1")
    t.tag("base")
    by_version, by_tag = t.at(version=t.info()["version"]), t.at(tag="base")
    by_time, by_pin = t.at(as_of=datetime.now(UTC)), t.pin()
    time.sleep(0.05)

    def reads(h: lightbox.Table) -> tuple[Any, ...]:
        batches = pa.Table.from_batches(list(h.iter_batches(columns=["id", "label"], batch_size=64)))
        return (h.count(), h.count("label = 3"), h.query(columns=["id", "label"], limit=None).to_pylist(),
                h.get("3/00003.png")["label"], h.fetch(["3/00003.png", "9/00009.png"], ["id", "label"]).to_pylist(),
                batches.to_pylist())

    before = reads(by_version)
    stream = t.iter_batches(columns=["id"], batch_size=50)
    first = next(stream)  # a stream started before the writes reads the version it started on
    t.add([digits_dir / "images" / "0/00000.png"], ids=["extra/0.png"], metadata=[{"label": 0}])
    t.update("3/00003.png", {"label": 5})
    t.delete("label = 9")
    assert first.num_rows + sum(b.num_rows for b in stream) == 200
    for handle in (by_version, by_tag, by_time, by_pin):
        assert reads(handle) == before, handle
        assert not handle.writable
    assert t.count() == 200 + 1 - sum(r["label"] == 9 for r in before[2])
    assert t.get("3/00003.png")["label"] == 5 and by_tag.get("3/00003.png")["label"] == 3

    version = t.info()["version"]
    writes = [lambda h: h.add([b"\x89PNG"]), lambda h: h.update("3/00003.png", {"label": 1}),
              lambda h: h.delete("label = 1"), lambda h: h.delete_row("3/00003.png"), lambda h: h.tag("x"),
              lambda h: h.untag("base"), lambda h: h.restore(tag="base"), lambda h: h.create_branch("b"),
              lambda h: h.merge("b"), lambda h: h.optimize(), lambda h: h.create_index("label"),
              lambda h: h.embed("builtin"), lambda h: h.delete_branch("b")]
    for write in writes:
        for handle in (by_version, by_tag, by_time, t.at(branch="main-never")):
            with pytest.raises(lightbox.ReadOnly) as caught:
                write(handle)
            assert caught.value.status == 0 and caught.value.code == "read_only"
    assert t.info()["version"] == version and [x["name"] for x in t.tags()] == ["base"]


def test_branch_handles_write_to_their_branch(client: lightbox.Client) -> None:
    t = client.clone("digits", "branchy", tag="v1")
    b = t.create_branch("fix")
    assert b.writable and b.ref == {"branch": "fix"}
    b.update("3/00003.png", {"label": 8})
    assert t.get("3/00003.png")["label"] == 3 and b.get("3/00003.png")["label"] == 8
    assert t.at(branch="fix").get("3/00003.png")["label"] == 8 and not t.at(branch="fix").writable
    assert [x["name"] for x in t.branches()] == ["fix"]
    assert b.versions()[-1]["num_rows"] == 200 and len(b.versions()) > len(t.versions()) - 1
    b.tag("fixed")
    assert t.at(tag="fixed").get("3/00003.png")["label"] == 8
    with pytest.raises(ValueError, match="branch"):
        b.pin()
    merged = t.merge("fix")
    assert merged["merged"] and t.get("3/00003.png")["label"] == 8
    t.update("3/00003.png", {"label": 2})
    b.update("3/00003.png", {"label": 7})
    with pytest.raises(lightbox.Conflict) as conflict:
        t.merge("fix")
    assert conflict.value.code == "merge_conflict" and conflict.value.detail["conflicts"] == ["3/00003.png"]
    assert t.merge("fix", on_conflict="theirs")["merged"] and t.get("3/00003.png")["label"] == 7


def test_add_images_and_arrow_rows(client: lightbox.Client, digits_dir: Path) -> None:
    t = client.create_table("added", [{"name": "label", "type": "int64"}])
    assert client.create_table("added", exist_ok=True).name == "added"
    with pytest.raises(lightbox.Conflict):
        client.create_table("added")
    path = digits_dir / "images" / "4/00004.png"
    data = (digits_dir / "images" / "5/00005.png").read_bytes()
    pil = Image.open(digits_dir / "images" / "6/00006.png")
    assert t.add([path], metadata=[{"label": 4}])["inserted"] == 1
    assert t.add([data], ids=["five.png"], metadata=[{"label": 5}], message="bytes")["inserted"] == 1
    assert t.add([pil], metadata=[{"label": 6}])["inserted"] == 1
    rows = pa.table({"id": ["arrow/7.png"], "image": [(digits_dir / "images" / "7/00007.png").read_bytes()],
                     "label": [7]})
    assert t.add(rows, tag="four")["inserted"] == 1
    with pytest.raises(lightbox.Unprocessable, match="duplicate_id"):  # ids stay unique: nothing written
        t.add([path], metadata=[{"label": 4}])
    assert t.count() == 4 and t.at(tag="four").count() == 4
    assert t.image_bytes("00004.png") == path.read_bytes() and t.image_bytes("five.png") == data
    six = t.query("label = 6", columns=["id", "width"]).to_pylist()
    assert six[0]["id"].endswith(".png") and len(six[0]["id"]) == 64 + 4 and six[0]["width"] == 8
    assert t.versions()[-3]["message"] == "bytes"
    with pytest.raises(ValueError):
        t.add([path, path], metadata=[{"label": 1}])
    assert t.delete_row("five.png")["deleted"] == 1

    # maintenance: embeddings, indexes, optimize
    embedded = t.embed("builtin")
    assert embedded["column"] == "vector" and embedded["rows"] == 3
    assert t.info()["embeddings"][0]["model"] == "builtin"
    assert t.search(like="00004.png", k=2, columns=["id"]).column("id").to_pylist()[0] != "00004.png"
    made = t.create_index("label", "BTREE")
    assert made and [i["columns"] for i in t.indexes()] == [["label"]]
    assert t.optimize(retention_seconds=3600)["version"] >= embedded["version"]
    assert t.thumbnail("00004.png", 16, format="png")[:4] == b"\x89PNG"
    client.drop_table("added")
    assert "added" not in [i.name for i in client.tables()]


def test_iter_batches_and_pandas(client: lightbox.Client) -> None:
    t = client.table("digits")
    sizes = [b.num_rows for b in t.iter_batches(columns=["id", "label"], batch_size=64)]
    assert sizes == [64, 64, 64, 8]
    batches = list(t.at(tag="v1").iter_batches("label < 5", batch_size=7, order_by="ink desc"))
    assert all(isinstance(b, pa.RecordBatch) for b in batches)
    expected = t.query("label < 5", limit=None, order_by=["ink desc"])
    assert pa.Table.from_batches(batches).equals(expected)
    assert list(t.iter_batches("label > 100")) == []
    ids = t.query(columns=["id"], limit=None).column("id").to_pylist()
    many = t.fetch(ids * 60, columns=["id"])  # 12,000 ids: two requests, both at the first one's version
    assert many.column("id").to_pylist() == ids * 60
    frame = t.to_pandas("split = 'test'", columns=["id", "ink"])
    assert list(frame.columns) == ["id", "ink"] and len(frame) == t.count("split = 'test'")


# -- retries, against a real socket server that fails before it answers -----------------------
class StubServer:
    """A tiny HTTP server on loopback: each (method, path) answers ``status`` ``fails`` times, then 200."""

    def __init__(self, fails: int = 2, status: int = 503) -> None:
        self.fails, self.status = fails, status
        self.hits: dict[tuple[str, str], int] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                key = (self.command, self.path.split("?")[0])
                n = stub.hits[key] = stub.hits.get(key, 0) + 1
                if n <= stub.fails:
                    body = json.dumps({"error": {"code": "overloaded", "message": "busy", "detail": {}}}).encode()
                    self.reply(stub.status, body, "application/json", {"x-request-id": f"stub-{n}",
                                                                        "retry-after": "0"})
                elif key[1].endswith(("/query", "/fetch", "/search")):
                    sink = pa.BufferOutputStream()
                    with pa.ipc.new_stream(sink, pa.schema([("id", pa.string())])) as w:
                        w.write_table(pa.table({"id": ["a", "b"]}))
                    self.reply(200, sink.getvalue().to_pybytes(), "application/vnd.apache.arrow.stream", {})
                else:
                    self.reply(200, json.dumps({"count": 7, "version": 2, "inserted": 1, "deleted": 1}).encode(),
                               "application/json", {})

            def reply(self, status: int, body: bytes, kind: str, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in {"content-type": kind, "content-length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)  # quick shutdown

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, method: str, suffix: str) -> int:
        return sum(n for (m, p), n in self.hits.items() if m == method and p.endswith(suffix))


IDEMPOTENT = [("GET", "/count", lambda t: t.count()), ("POST", "/query", lambda t: t.query("a = 1")),
              ("POST", "/fetch", lambda t: t.fetch(["a"])), ("POST", "/search", lambda t: t.search(like="a")),
              ("GET", "/versions", lambda t: t.versions()), ("DELETE", "/tags/x", lambda t: t.untag("x"))]
WRITES = [("POST", "/rows", lambda t: t.add([b"png"])), ("POST", "/delete", lambda t: t.delete("a = 1")),
          ("PATCH", "/rows/a", lambda t: t.update("a", {"b": 1})), ("POST", "/tags", lambda t: t.tag("x"))]


@pytest.mark.parametrize("status", [503, 429, 502])
def test_idempotent_calls_retry_and_writes_do_not(status: int) -> None:
    with StubServer(fails=2, status=status) as stub, lightbox.Client(stub.url, retries=3, backoff=0.01) as client:
        t = client.table("t")
        for method, suffix, call in IDEMPOTENT:
            call(t)
            assert stub.count(method, suffix) == 3, (method, suffix)
        assert t.count() == 7  # answered at once now
        for method, suffix, call in WRITES:
            with pytest.raises(lightbox.LightboxError) as caught:
                call(t)
            assert stub.count(method, suffix) == 1, (method, suffix)
            err = caught.value
            assert err.status == status and err.code == "overloaded" and err.request_id == "stub-1"
            assert isinstance(err, lightbox.ServiceUnavailable if status == 503 else lightbox.LightboxError)


def test_retries_give_up_after_the_budget() -> None:
    with StubServer(fails=5) as stub, lightbox.Client(stub.url, retries=2, backoff=0.01) as client:
        started = time.monotonic()
        with pytest.raises(lightbox.ServiceUnavailable) as caught:
            client.table("t").count()
        assert stub.count("GET", "/count") == 3 and caught.value.request_id == "stub-3"
        assert time.monotonic() - started < 5
