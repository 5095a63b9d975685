"""Row ids: one rule at every write path, and row routes that only ever reach a row.

A row id shaped like a path (``..``, ``a/../b``, a leading ``/``) once let ``delete_row`` drop a
whole table: the HTTP client collapsed ``DELETE .../victim/rows/../../bystander`` into
``DELETE /api/v1/tables/bystander``. Every traversal shape goes here through each client (sync
and async SDK, the CLI against a server, raw HTTP with paths already encoded, a raw socket with a
path no client touched) against the service over a real Lance store (the app in this process, and a
real server where a socket is the point: the raw socket, the CLI's and the official LanceDB client's
connections), and after each test every table must keep every row and every version. Uploads
(multipart, Arrow, the official LanceDB client, ingest from a folder or a manifest) refuse bad ids
with a clear reason and write nothing.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import lancedb
import pyarrow as pa
import pytest
from PIL import Image

import lightbox
from app.store import Store
from app.store import ids as server_ids
from ingest.pipeline import IngestOptions, run_ingest
from lightbox import _ids as sdk_ids
from tests.conftest import InProcess, LiveServer
from tests.helpers import arrow_stream, assert_error

ARROW = "application/vnd.apache.arrow.stream"
API = "/api/v1/tables"
GOOD_IDS = ["3/00001.png", "é/ü 100%.png", "x/image", "%2e%2e", "...", ".hidden/a.png", "q?#&=+;.png"]
# Shapes no write path may store and no row route may follow.
TRAVERSALS = ["..", ".", "../bystander", "../../bystander", "../../bystander/rows/3/00001.png", "a/../b", "./a",
              "a/.", "a/..", "/a", "/", "a/", "a//b", "a\nb", "a\x00b", "a\tb", "a\x7fb", "a\rb", "a\\..\\b", ""]
# Already percent-encoded paths, sent as they are: the server decodes once and refuses the id.
ENCODED = ["%2E%2E", "%2e%2e", ".%2e", "%2e", "..%2F..%2Fbystander", "%2e%2e%2f%2e%2e%2fbystander",
           "a%2F..%2Fb", "%2Fa", "a%2F%2Fb", "a%0Ab", "a%00b", "a%5C..%5Cb"]
# The same table of cases for the server's rule and the SDK's copy: (id, valid?).
RULE_CASES = [(i, True) for i in GOOD_IDS] + [(i, False) for i in TRAVERSALS] + [
    ("x" * 1024, True), ("x" * 1025, False), ("é" * 512, True), ("é" * 513, False), ("a\x85b", False),
    ("a\udcffb", False), (None, False), (3, False), (["a"], False), ("a b", True), ("a/b/c.tif", True)]


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4 + seed % 5, 3), (seed * 37 % 256, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Tables ``victim`` and ``bystander`` (ids with '/' and unicode), each with two versions."""
    root = tmp_path_factory.mktemp("ids")
    uri = str(root / "data")
    store = Store(uri, refresh_seconds=0.0)
    for table in ("victim", "bystander"):
        for part, names in (("one", ["3/00001.png", "é/ü.png"]), ("two", ["a.png", "b/c.png"])):
            folder = root / table / part
            for i, name in enumerate(names):
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(png(i + len(part)))
            run_ingest(store, IngestOptions(table=table, sources=[str(folder)], progress=False, workers=1))
    return uri


@pytest.fixture(scope="module")
def server(root: str) -> Iterator[LiveServer]:
    """A real server over the same root, for the clients that need a socket."""
    live = LiveServer(root).start()
    yield live
    live.stop()


def state(http: httpx.Client, table: str) -> tuple[int, int, list[str]]:
    """(latest version, versions in the log, sorted ids): what no refused request may change."""
    info = http.get(f"{API}/{table}")
    assert info.status_code == 200, info.text
    log = http.get(f"{API}/{table}/versions", params={"limit": 1000})
    rows = http.post(f"{API}/{table}/query", json={"columns": ["id"], "limit": 1000})
    assert rows.status_code == 200, rows.text
    return info.json()["version"], len(log.json()), sorted(r["id"] for r in rows.json()["rows"])


@pytest.fixture
def unchanged(app: InProcess) -> Iterator[None]:
    """Every table of the root keeps its rows and versions through the test."""
    with app.http() as http:
        names = [t["name"] for t in http.get(API).json()["tables"]]
        before = {name: state(http, name) for name in names}
        yield
        after_names = [t["name"] for t in http.get(API).json()["tables"]]
        assert sorted(after_names) == sorted(names), "a table was dropped or created"
        assert {name: state(http, name) for name in names} == before


# -- one rule, two copies ----------------------------------------------------------------------
@pytest.mark.parametrize(("value", "valid"), RULE_CASES, ids=[ascii(c)[:30] for c, _ in RULE_CASES])
def test_server_and_sdk_rules_agree(value: Any, valid: bool) -> None:
    assert (server_ids.id_problem(value) is None) is valid
    assert sdk_ids.id_problem(value) == server_ids.id_problem(value)
    if valid:
        assert server_ids.check_id(value) == sdk_ids.check_id(value) == value
    else:
        with pytest.raises(server_ids.InvalidId) as refused:
            server_ids.check_id(value)
        assert refused.value.status == 422 and server_ids.id_problem(value) in refused.value.message
        with pytest.raises(ValueError, match="invalid id"):
            sdk_ids.check_id(value)


def test_arrow_column_check_matches_the_rule() -> None:
    """The vectorised check refuses exactly the strings the row-by-row rule refuses."""
    strings = [c for c, _ in RULE_CASES if isinstance(c, str) and "\udcff" not in c]
    for value in strings:
        column = pa.array(["ok", value, "fine"])
        if server_ids.id_problem(value) is None:
            server_ids.check_id_column(column)
        else:
            with pytest.raises(server_ids.InvalidId) as refused:
                server_ids.check_id_column(column)
            assert refused.value.detail["invalid"][0]["row"] == 1


def test_sdk_encodes_every_id_as_one_segment() -> None:
    assert sdk_ids.id_segment("3/00001.png") == "3%2F00001.png"
    assert sdk_ids.id_segment("100%/a b?.png") == "100%25%2Fa%20b%3F.png"
    assert sdk_ids.segment("..") == "%2E%2E" and sdk_ids.segment(".") == "%2E"
    assert httpx.Request("GET", f"http://h/rows/{sdk_ids.segment('..')}").url.raw_path == b"/rows/%2E%2E"


# -- row routes through each client -------------------------------------------------------------
@pytest.mark.usefixtures("unchanged")
def test_sync_sdk_refuses_traversals_before_sending(app: InProcess) -> None:
    with app.sdk() as client:
        t = client.table("victim")
        for bad in TRAVERSALS:
            for call, extra in ((t.delete_row, ()), (t.get, ()), (t.update, ({"source": "x"},)),
                                (t.image_bytes, ()), (t.thumbnail, ())):
                with pytest.raises(lightbox.InvalidId, match="invalid id") as refused:
                    call(bad, *extra)  # type: ignore[operator]
                assert isinstance(refused.value, ValueError) and refused.value.status == 0
        for name in ("..", "."):  # names are encoded too: untag("..") must not become DELETE /tables/victim
            with pytest.raises(lightbox.LightboxError) as refused:
                t.untag(name)
            assert 400 <= refused.value.status < 500
            with pytest.raises(lightbox.LightboxError) as refused:
                t.delete_branch(name)
            assert 400 <= refused.value.status < 500


@pytest.mark.usefixtures("unchanged")
def test_sync_sdk_percent_ids_are_literal(app: InProcess) -> None:
    """``%2e%2e`` is an id of six characters: sent as ``%252e%252e``, it is a missing row, not ``..``."""
    with app.sdk() as client:
        t = client.table("victim")
        for literal in ("%2e%2e", "%2e%2e/%2e%2e/bystander", "%2E%2E%2Fbystander", "..%2fbystander"):
            with pytest.raises(lightbox.NotFound) as missing:
                t.delete_row(literal)
            assert missing.value.code == "row_not_found"
            with pytest.raises(lightbox.NotFound):
                t.get(literal)
            with pytest.raises(lightbox.NotFound):
                t.update(literal, {"source": "x"})


@pytest.mark.usefixtures("unchanged")
def test_async_sdk_refuses_traversals(app: InProcess) -> None:
    async def run() -> None:
        async with app.async_sdk() as client:
            t = client.table("victim")
            for bad in TRAVERSALS:
                for call in (t.delete_row, t.get, t.image_bytes):
                    with pytest.raises(lightbox.InvalidId):
                        await call(bad)
                with pytest.raises(ValueError, match="invalid id"):
                    await t.update(bad, {"source": "x"})
            with pytest.raises(lightbox.NotFound):
                await t.delete_row("%2e%2e")
            with pytest.raises(lightbox.LightboxError) as refused:
                await t.untag("..")
            assert 400 <= refused.value.status < 500

    asyncio.run(run())


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("method", ["DELETE", "GET", "PATCH"])
def test_raw_http_encoded_traversals_are_refused(app: InProcess, method: str) -> None:
    """Paths already encoded (httpx leaves ``%2E``/``%2F`` alone): the server decodes once, sees the
    dot or empty segment inside the id, and answers 422 on every row route."""
    with app.http() as http:
        for encoded in ENCODED:
            for suffix in ([""] if method != "GET" else ["", "/image", "/thumbnail", "/array"]):
                url = f"{API}/victim/rows/{encoded}{suffix}"
                body = {"json": {"source": "x"}} if method == "PATCH" else {}
                response = http.request(method, url, **body)
                if "%0A" in encoded:  # the router's path pattern stops at a newline: no route at all
                    assert_error(response, 404, "not_found")
                else:
                    assert_error(response, 422, "invalid_id")


def raw_request(server: LiveServer, method: str, path: str) -> tuple[int, dict[str, Any]]:
    """A request whose path no client library normalised (``curl --path-as-is``)."""
    body = b'{"source": "x"}' if method == "PATCH" else b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body.startswith(b"{") else {}


@pytest.mark.usefixtures("unchanged")
def test_unnormalised_dot_segments_reach_no_table_route(server: LiveServer) -> None:
    for path in (f"{API}/victim/rows/../../bystander", f"{API}/victim/rows/..", f"{API}/victim/rows/.",
                 f"{API}/victim/rows/a/../b", f"{API}/victim/rows/../bystander/rows/a.png"):
        for method in ("DELETE", "GET", "PATCH"):
            status, body = raw_request(server, method, path)
            assert status == 422 and body["error"]["code"] == "invalid_id", (method, path, status, body)


@pytest.mark.usefixtures("unchanged")
def test_cli_against_a_server_refuses_traversals(server: LiveServer, cli: Callable[..., Any]) -> None:
    for bad in ("..", "../../bystander", "a/../b", "/a", "a//b", "a\tb"):
        for extra in ([], ["--delete"], ["--set", "source=\"x\""]):
            done = cli("row", "victim", bad, *extra, "--server", server.url)
            assert done.returncode == 2, (bad, extra, done.stdout, done.stderr)
            assert "invalid id" in done.stderr
    done = cli("row", "victim", "%2e%2e", "--delete", "--server", server.url)
    assert done.returncode == 2 and "no row with id" in done.stderr


def test_good_ids_work_end_to_end(app: InProcess, server: LiveServer, cli: Callable[..., Any]) -> None:
    """Ids with '/', unicode, '%', '?', an id ending in '/image', through the SDK, the CLI and raw HTTP."""
    with app.sdk() as client:
        client.create_table("legit")
        t = client.table("legit")
        added = t.add([png(i) for i in range(len(GOOD_IDS))], ids=GOOD_IDS)
        assert added["inserted"] == len(GOOD_IDS) and not added["skipped"]
        for i, row_id in enumerate(GOOD_IDS):
            assert t.get(row_id)["id"] == row_id
            assert t.image_bytes(row_id) == png(i)
            assert t.update(row_id, {"source": f"s{i}"})["updated"] == 1
        assert t.get("x/image")["source"] == "s2"  # the row "x/image", not the image of a row "x"
        http = app.http()
        assert http.get(f"{API}/legit/rows/3/00001.png").json()["id"] == "3/00001.png"  # unencoded, as curl sends
        assert http.get(f"{API}/legit/rows/3/00001.png/image").content == png(0)
        assert http.get(f"{API}/legit/rows/x%2Fimage").json()["id"] == "x/image"
        assert http.get(f"{API}/legit/rows/x%2Fimage/image").content == png(2)
        assert http.get(f"{API}/legit/rows/%25252e%25252e").status_code == 404  # decoded once: "%252e%252e"
        assert cli("row", "legit", "é/ü 100%.png", "--server", server.url).returncode == 0
        shown = cli("row", "legit", "é/ü 100%.png", "--set", 'source="cli"', "--server", server.url)
        assert shown.returncode == 0, shown.stderr
        assert t.get("é/ü 100%.png")["source"] == "cli"
        assert cli("row", "legit", "é/ü 100%.png", "--delete", "--server", server.url).returncode == 0
        for row_id in GOOD_IDS:
            if row_id != "é/ü 100%.png":
                t.delete_row(row_id)
        assert t.count() == 0
        client.drop_table("legit")


# -- uploads refuse bad ids and write nothing ---------------------------------------------------

@pytest.mark.usefixtures("unchanged")
def test_multipart_uploads_refuse_bad_ids(app: InProcess) -> None:
    with app.http() as http:
        for bad in TRAVERSALS:
            # the id from the metadata, next to a good file: the whole upload is refused
            files = [("files", ("good.png", png(1), "image/png")), ("files", ("other.png", png(2), "image/png"))]
            metadata = json.dumps([{}, {"id": bad}])
            error = assert_error(http.post(f"{API}/victim/rows", files=files, data={"metadata": metadata}), 422,
                                 "invalid_id")
            assert error["detail"]["invalid"][0]["row"] == 1
        for name in ("../x.png", "a/../b.png", "/abs.png", "a//b.png", "a\\b.png"):  # the id from the file name
            files = [("files", (name, png(3), "image/png"))]
            assert_error(http.post(f"{API}/victim/rows", files=files), 422, "invalid_id")
        for given in (5, ["a"], {"x": 1}):  # a metadata id is a string, never converted
            files = [("files", ("x.png", png(4), "image/png"))]
            error = assert_error(http.post(f"{API}/victim/rows", files=files,
                                           data={"metadata": json.dumps([{"id": given}])}), 422, "invalid_id")
            assert "not a string" in error["message"]


@pytest.mark.usefixtures("unchanged")
def test_sdk_add_refuses_bad_ids_before_sending(app: InProcess) -> None:
    with app.sdk() as client:
        t = client.table("victim")
        for bad in ("..", "a/../b", "/a", "a\nb"):
            with pytest.raises(lightbox.InvalidId):
                t.add([png(1)], ids=[bad])
            with pytest.raises(lightbox.InvalidId):
                t.add([png(1)], metadata=[{"id": bad}])
            with pytest.raises(lightbox.InvalidId):
                t.add(pa.table({"id": ["ok", bad], "image": [png(1), png(2)]}))
        with pytest.raises(lightbox.InvalidId):
            t.add(pa.table({"id": [1], "image": [png(1)]}))
        with pytest.raises(lightbox.InvalidId):
            t.add(pa.table({"id": ["ok", None], "image": [png(1), png(2)]}))


def invalid_utf8_ids() -> pa.Array:
    """A utf8 array whose second value is not UTF-8 (an IPC stream can carry one; nothing checks it on read)."""
    data = b"ok" + b"a\xffb"
    offsets = pa.array([0, 2, 5], pa.int32())
    return pa.Array.from_buffers(pa.string(), 2, [None, offsets.buffers()[1], pa.py_buffer(data)])


BAD_ARROW_IDS: list[tuple[pa.Array, str]] = [
    (pa.array(["ok", None]), "null"),
    (pa.array([1, 2]), "must be strings"),
    (pa.array([["a"], ["b"]]), "must be strings"),
    (pa.array(["ok", ".."]), "'.' or '..'"),
    (pa.array(["ok", "a/../b"]), "'.' or '..'"),
    (pa.array(["ok", "/lead"], pa.large_string()), "empty path segment"),
    (pa.array(["ok", "a\x00b"]), "control character"),
    (invalid_utf8_ids(), "UTF-8"),
]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("ids", "reason"), BAD_ARROW_IDS, ids=[r for _, r in BAD_ARROW_IDS])
def test_arrow_uploads_refuse_bad_id_columns(app: InProcess, ids: pa.Array, reason: str) -> None:
    """Images (an ``image`` column) and plain rows: a 422 naming the problem, never ``str()``."""
    with app.http() as http:
        images = pa.table({"id": ids, "image": [png(1), png(2)]})
        error = assert_error(http.post(f"{API}/victim/rows", content=arrow_stream(images),
                                       headers={"content-type": ARROW}), 422, "invalid_id")
        assert reason in error["message"]


def test_arrow_plain_rows_refuse_bad_ids(server: LiveServer) -> None:
    """A table that is not an image table (made by the LanceDB client) takes rows as Arrow: same rule."""
    db = lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url)
    db.create_table("plain", pa.table({"id": ["a"], "x": [1]}))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        before = state(http, "plain")
        for ids, reason in BAD_ARROW_IDS:
            rows = pa.table({"id": ids, "x": [1, 2]})
            error = assert_error(http.post(f"{API}/plain/rows", content=arrow_stream(rows),
                                           headers={"content-type": ARROW}), 422, "invalid_id")
            assert reason in error["message"]
        assert state(http, "plain") == before
        assert http.delete(f"{API}/plain").status_code == 204


@pytest.mark.usefixtures("unchanged")
def test_lancedb_client_writes_refuse_bad_ids(server: LiveServer) -> None:
    """``add``, ``merge_insert`` and ``create_table`` (even with mode overwrite) through the official client."""
    db = lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url)
    victim = db.open_table("victim")
    for bad in ("..", "a/../b", "/a", "a//b", "a\x01b"):
        rows = pa.table({"id": ["fresh.png", bad], "image": [png(5), png(6)]})
        with pytest.raises(Exception, match="invalid"):
            victim.add(rows)
        with pytest.raises(Exception, match="invalid"):
            victim.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(rows)
        with pytest.raises(Exception, match="invalid"):
            victim.add(rows, mode="overwrite")
        with pytest.raises(Exception, match="invalid"):
            db.create_table("bystander", rows, mode="overwrite")
    # The client casts rows to the table's schema (an int id arrives as a string); raw requests do not.
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for ids, reason in BAD_ARROW_IDS:
            body = arrow_stream(pa.table({"id": ids, "image": [png(7), png(8)]}))
            for route in ("insert/", "insert/?mode=overwrite",
                          "merge_insert/?on=id&when_not_matched_by_source_delete=true",
                          "merge_insert/?on=id&when_matched_update_all=true"):
                response = http.post(f"/v1/table/victim/{route}", content=body, headers={"content-type": ARROW})
                assert response.status_code == 422, (route, reason, response.text)
                assert reason in response.json()["error"]["message"]


# -- ingest: a bad id is a reported skip ---------------------------------------------------------
def test_ingest_skips_bad_ids_with_a_reason(tmp_path: Path, cli: Callable[..., Any]) -> None:
    folder = tmp_path / "images"
    (folder / "ok").mkdir(parents=True)
    (folder / "ok" / "good.png").write_bytes(png(1))
    (folder / "new\nline.png").write_bytes(png(2))
    (folder / "back\\slash.png").write_bytes(png(3))
    manifest = tmp_path / "manifest.csv"
    (tmp_path / "outside.png").write_bytes(png(5))
    (tmp_path / "sub").mkdir()
    manifest.write_text("path,label\nsub/../outside.png,1\nimages/ok/good.png,2\n")
    uri = str(tmp_path / "data")
    report_file = tmp_path / "report.json"
    done = cli("ingest", folder, "--table", "t", "--uri", uri, "--report", report_file, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "invalid_id 2" in done.stdout
    report = json.loads(report_file.read_text())
    assert report["added"] == 1
    assert sorted(s["reason"] for s in report["skipped"]) == ["invalid_id"] * 2
    assert all("invalid" not in s["message"] or s["message"].startswith("id ") for s in report["skipped"])
    store = Store(uri, refresh_seconds=0.0)
    assert store.latest("t").to_table(columns=["id"]).column("id").to_pylist() == ["ok/good.png"]
    shown = cli("row", "t", "ok/good.png", "--format", "json", "--uri", uri)  # on a data root: the same rule
    assert shown.returncode == 0 and json.loads(shown.stdout)[0]["id"] == "ok/good.png"
    refused = cli("row", "t", "ok/../ok/good.png", "--delete", "--uri", uri)
    assert refused.returncode == 2 and "invalid id" in refused.stderr
    assert store.latest("t").count_rows() == 1

    result = run_ingest(store, IngestOptions(table="m", sources=[str(manifest)], progress=False, workers=1))
    assert [(s.reason, "'.' or '..'" in s.message) for s in result.skipped] == [("invalid_id", True)]
    assert store.latest("m").to_table(columns=["id"]).column("id").to_pylist() == ["images/ok/good.png"]


def test_ingest_of_only_bad_ids_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "tab\there.png").write_bytes(png(1))
    uri = str(tmp_path / "data")
    store = Store(uri, refresh_seconds=0.0)
    report = run_ingest(store, IngestOptions(table="t", sources=[str(folder)], progress=False, workers=1))
    assert report.added == 0 and report.version is None and not store.exists("t")
    assert report.skipped[0].reason == "invalid_id" and "U+0009" in report.skipped[0].message


def test_ingest_skips_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    folder = os.fsencode(tmp_path / "images")
    os.makedirs(folder)
    for name, seed in ((b"latin1-\xe9.png", 1), (b"fine.png", 2)):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(png(seed))
    store = Store(str(tmp_path / "data"), refresh_seconds=0.0)
    report = run_ingest(store, IngestOptions(table="t", sources=[os.fsdecode(folder)], progress=False, workers=1))
    assert [(s.reason, "not valid UTF-8" in s.message) for s in report.skipped] == [("invalid_id", True)]
    assert store.latest("t").to_table(columns=["id"]).column("id").to_pylist() == ["fine.png"]
    json.dumps(report.to_dict(), default=str)  # the report can still be written


def test_ingest_of_a_parquet_file_skips_bad_ids(tmp_path: Path) -> None:
    """A Hugging Face style ``{bytes, path}`` column: the path is the id, so ``../`` in it is skipped."""
    import pyarrow.parquet as pq

    images = pa.array([{"bytes": png(1), "path": "../evil.png"}, {"bytes": png(2), "path": "fine/ok.png"},
                       {"bytes": png(3), "path": "a//b.png"}])
    pq.write_table(pa.table({"image": images, "label": [1, 2, 3]}), tmp_path / "train.parquet")
    store = Store(str(tmp_path / "data"), refresh_seconds=0.0)
    report = run_ingest(store, IngestOptions(table="hf", sources=[str(tmp_path / "train.parquet")], progress=False,
                                             workers=1))
    assert [s.reason for s in report.skipped] == ["invalid_id", "invalid_id"]
    assert store.latest("hf").to_table(columns=["id"]).column("id").to_pylist() == ["fine/ok.png"]
