"""Upload sessions over HTTP: many batches, one version; nothing visible before the commit.

In-process (``lightbox.connect(root)``'s transport) except where a real process is the point: a
client killed between batches, and the Arrow IPC wire of a real server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from app.main import create_app
from app.settings import Settings
from app.store import Store
from lightbox._inprocess import AppThread, InProcessTransport
from tests.conftest import REPO_ROOT, LiveServer, cli_env
from tests.history_api import arrow, png

T = "/api/v1/tables"
ARROW = "application/vnd.apache.arrow.stream"


def _record(folder: Path) -> dict[str, object] | None:
    """The one session record in ``folder`` once it is written whole, else None."""
    done = sorted(folder.glob("*.json")) if folder.exists() else []
    try:
        return json.loads(done[0].read_text()) if len(done) == 1 else None
    except ValueError:
        return None


def rows(ids: list[str], start: int = 0, **columns: list[object]) -> pa.Table:
    return pa.table({"id": ids, "image": pa.array([png(start + i) for i in range(len(ids))], pa.binary()),
                     **columns})


def send(http: httpx.Client, table: str, upload: str, batch: pa.Table) -> httpx.Response:
    return http.post(f"{T}/{table}/uploads/{upload}/batches", content=arrow(batch), headers={"content-type": ARROW})


def in_process(uri: str, **settings: object) -> httpx.Client:
    """An httpx client on the service's own app over ``uri`` (lifespan run), no server."""
    app = create_app(Settings(uri=uri, warm_on_start=False, background_indexing=False, latest_refresh_seconds=0.0,
                              **settings))  # type: ignore[arg-type]
    return httpx.Client(transport=InProcessTransport(AppThread(app)), base_url="http://lightbox.local", timeout=120)


@pytest.fixture
def http(data_uri: str) -> Iterator[httpx.Client]:
    with in_process(data_uri) as client:
        yield client


def versions(http: httpx.Client, table: str) -> list[int]:
    return [v["version"] for v in http.get(f"{T}/{table}/versions", params={"limit": 1000, "order": "asc"}).json()]


def error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    return response.json()["error"]  # type: ignore[no-any-return]


def test_batches_become_one_version_with_message_author_counts_and_tag(http: httpx.Client) -> None:
    begun = http.post(f"{T}/t/uploads", json={"message": "three batches", "author": "ann", "tag": "v1"})
    assert begun.status_code == 201, begun.text
    upload = begun.json()["upload_id"]
    assert begun.json()["table_exists"] is False and begun.json()["state"] == "open"
    for n in range(3):
        out = send(http, "t", upload, rows([f"{n}-{i}.png" for i in range(5)], start=10 * n,
                                           label=pa.array([n] * 5, pa.int64())))
        assert out.status_code == 200 and out.json()["accepted"] == 5, out.text
    assert http.get(f"{T}/t").status_code == 404  # nothing is visible before the commit
    state = http.get(f"{T}/t/uploads/{upload}").json()
    assert (state["batches"], state["received"], state["inserted"]) == (3, 15, 15)
    done = http.post(f"{T}/t/uploads/{upload}/commit")
    assert done.status_code == 201, done.text
    result = done.json()["result"]
    assert (result["version"], result["inserted"], result["tag"]) == (1, 15, "v1")
    [entry] = http.get(f"{T}/t/versions").json()
    assert (entry["message"], entry["author"], entry["operation"]) == ("three batches", "ann", "create")
    assert (entry["rows_added"], entry["rows_updated"], entry["rows_removed"]) == (15, 0, 0)
    assert http.get(f"{T}/t/count", params={"filter": "label = 2"}).json()["count"] == 5


def test_a_batch_reports_each_skipped_row_with_its_reason(http: httpx.Client) -> None:
    upload = http.post(f"{T}/t/uploads").json()["upload_id"]
    batch = pa.table({"id": ["a.png", "bad.png", "a.png", "x/../y.png"],
                      "image": pa.array([png(1), b"not an image", png(2), png(3)], pa.binary()),
                      "source": ["src/a.png", "src/bad.png", "src/again.png", "src/y.png"]})
    report = send(http, "t", upload, batch).json()
    assert report["accepted"] == 1
    assert [(s["row"], s["file"], s["reason"]) for s in report["skipped"]] == [
        (1, "src/bad.png", "not_an_image"), (2, "src/again.png", "duplicate_id"), (3, "src/y.png", "invalid_id")]
    assert http.post(f"{T}/t/uploads/{upload}/commit").json()["result"]["skipped_by_reason"] == {
        "not_an_image": 1, "duplicate_id": 1, "invalid_id": 1}


def test_an_upsert_replaces_changed_rows_and_leaves_unchanged_ones(http: httpx.Client) -> None:
    upload = http.post(f"{T}/t/uploads").json()["upload_id"]
    send(http, "t", upload, rows(["a", "b", "c"], label=pa.array([1, 2, 3], pa.int64())))
    http.post(f"{T}/t/uploads/{upload}/commit")
    upload = http.post(f"{T}/t/uploads", json={"mode": "upsert", "message": "edit"}).json()["upload_id"]
    batch = pa.table({"id": ["a", "b", "c", "d"],
                      "image": pa.array([png(0), png(99), png(2), png(4)], pa.binary()),  # b's bytes changed
                      "label": pa.array([1, 2, 30, 4], pa.int64())})  # c's label changed
    report = send(http, "t", upload, batch).json()
    assert (report["inserted"], report["updated"], report["unchanged"]) == (1, 2, 1)
    assert [s["reason"] for s in report["skipped"]] == ["unchanged"]
    result = http.post(f"{T}/t/uploads/{upload}/commit").json()["result"]
    assert result["version"] == 2
    entry = http.get(f"{T}/t/versions").json()[0]
    assert (entry["operation"], entry["rows_added"], entry["rows_updated"]) == ("upsert", 1, 2)
    diff = http.get(f"{T}/t/diff", params={"from": "1", "to": "2"}).json()
    assert diff["added"] == ["d"] and sorted(c["id"] for c in diff["changed"]) == ["b", "c"]
    assert http.get(f"{T}/t/count").json()["count"] == 4


def test_content_dedup_spans_the_table_and_the_session(http: httpx.Client) -> None:
    upload = http.post(f"{T}/t/uploads").json()["upload_id"]
    send(http, "t", upload, rows(["a"]))
    http.post(f"{T}/t/uploads/{upload}/commit")
    upload = http.post(f"{T}/t/uploads", json={"dedup": "content"}).json()["upload_id"]
    same = pa.table({"id": ["copy-of-a", "new", "copy-of-new"],
                     "image": pa.array([png(0), png(7), png(7)], pa.binary())})
    report = send(http, "t", upload, same).json()
    assert [s["reason"] for s in report["skipped"]] == ["duplicate_content", "duplicate_content"]
    assert http.post(f"{T}/t/uploads/{upload}/commit").json()["result"]["inserted"] == 1


def test_an_aborted_upload_writes_nothing_and_removes_its_files(data_uri: str) -> None:
    with in_process(data_uri, upload_stage_bytes=1) as http:  # every batch ends a span of its own
        upload = http.post(f"{T}/t/uploads").json()["upload_id"]
        send(http, "t", upload, rows(["a", "b"]))
        send(http, "t", upload, rows(["c"]))  # a span is recorded once the next one ends (or at the commit)
        staged = list((Path(data_uri) / "t.lance" / "data").iterdir())
        assert staged and list((Path(data_uri) / "t.lance" / "_lightbox" / "uploads").iterdir())
        gone = http.delete(f"{T}/t/uploads/{upload}")
        assert gone.status_code == 200 and gone.json()["state"] == "aborted"
        assert not (Path(data_uri) / "t.lance").exists()  # no table, and nothing of the upload left behind
        assert error(send(http, "t", upload, rows(["d"])), 409)["code"] == "upload_closed"
        assert http.get(f"{T}").json()["tables"] == []


def test_mistakes_get_clear_4xx(http: httpx.Client) -> None:
    assert error(http.post(f"{T}/t/uploads/nope/commit"), 404)["code"] == "upload_not_found"
    assert error(http.get(f"{T}/t/uploads/nope"), 404)["code"] == "upload_not_found"
    assert "mode" in str(error(http.post(f"{T}/t/uploads", json={"mode": "replace"}), 400)["message"])
    assert error(http.post(f"{T}/t/uploads", json={"modes": "upsert"}), 422)
    assert error(http.post(f"{T}/t/uploads", json={"branch": "b"}), 422)["message"].startswith(  # type: ignore[union-attr]
        "table 't' does not exist yet")
    upload = http.post(f"{T}/t/uploads").json()["upload_id"]
    other = error(send(http, "other", upload, rows(["a"])), 404)
    assert "belongs to table 't'" in str(other["message"])
    no_image = error(send(http, "t", upload, pa.table({"id": ["a"], "label": [1]})), 422)
    assert "image" in str(no_image["message"])
    assert error(http.post(f"{T}/t/uploads/{upload}/batches", content=b"not arrow",
                           headers={"content-type": ARROW}), 400)["code"] == "bad_request"
    assert error(http.post(f"{T}/t/uploads/{upload}/batches", json={"id": "a"}), 415)
    assert send(http, "t", upload, rows(["a"], label=[1])).status_code == 200
    wider = error(send(http, "t", upload, rows(["b"], label=[2], split=["x"])), 422)
    assert "first batch" in str(wider["message"])
    first = http.post(f"{T}/t/uploads/{upload}/commit")
    assert first.status_code == 201
    again = error(http.post(f"{T}/t/uploads/{upload}/commit"), 409)
    assert again["code"] == "upload_closed" and "was committed (version 1)" in str(again["message"])
    assert error(send(http, "t", upload, rows(["c"], label=[3])), 409)["code"] == "upload_closed"
    assert versions(http, "t") == [1]


def test_a_concurrent_writer_of_the_same_id_makes_the_commit_a_409(http: httpx.Client) -> None:
    upload = http.post(f"{T}/t/uploads").json()["upload_id"]
    send(http, "t", upload, rows(["seed"]))
    http.post(f"{T}/t/uploads/{upload}/commit")
    upload = http.post(f"{T}/t/uploads").json()["upload_id"]
    assert send(http, "t", upload, rows(["mine", "shared"], start=10)).json()["accepted"] == 2
    # another writer adds "shared" while the session is open
    other = http.post(f"{T}/t/rows", files=[("files", ("shared", png(50), "image/png"))])
    assert other.status_code == 201 and other.json()["version"] == 2
    conflict = error(http.post(f"{T}/t/uploads/{upload}/commit"), 409)
    assert "another writer added or changed 1 of the ids" in str(conflict["message"])
    assert versions(http, "t") == [1, 2]
    ids = http.post(f"{T}/t/query", json={"columns": ["id"], "limit": 100}, headers={"accept": "application/json"})
    assert sorted(r["id"] for r in ids.json()["rows"]) == ["seed", "shared"], ids.text
    assert http.get(f"{T}/t/uploads/{upload}").json()["state"] == "failed"


def test_an_upsert_session_conflicts_with_a_concurrent_change_of_its_row(http: httpx.Client) -> None:
    upload = http.post(f"{T}/t/uploads").json()["upload_id"]
    send(http, "t", upload, rows(["a", "b"], label=[1, 2]))
    http.post(f"{T}/t/uploads/{upload}/commit")
    upload = http.post(f"{T}/t/uploads", json={"mode": "upsert"}).json()["upload_id"]
    send(http, "t", upload, rows(["a"], start=40, label=[1]))
    assert http.patch(f"{T}/t/rows/a", json={"label": 5}).status_code == 200
    assert error(http.post(f"{T}/t/uploads/{upload}/commit"), 409)["code"] == "conflict"
    assert http.get(f"{T}/t/rows/a").json()["label"] == 5


def test_an_idle_session_expires_and_its_files_are_removed(data_uri: str) -> None:
    with in_process(data_uri, upload_stage_bytes=1, upload_ttl_seconds=0.5) as http:
        upload = http.post(f"{T}/t/uploads").json()["upload_id"]
        send(http, "t", upload, rows(["a"]))
        send(http, "t", upload, rows(["b"]))
        assert list((Path(data_uri) / "t.lance" / "data").iterdir())
        time.sleep(0.7)
        assert error(send(http, "t", upload, rows(["c"])), 404)["code"] == "upload_not_found"
        assert not (Path(data_uri) / "t.lance").exists()


def test_a_client_killed_between_batches_commits_nothing_and_its_files_expire(tmp_path: Path) -> None:
    """A real `lightbox ingest --server` process, killed once its session has staged a batch: no version; the
    session's files stay until it expires, then the janitor (run when another upload begins) removes them."""
    uri = str(tmp_path / "data")
    Store(uri).create("t", _image_schema())  # an existing table, so a version would show
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(300):
        (folder / f"{i:03d}.png").write_bytes(png(i, size=(24, 24)))
    server = LiveServer(uri, upload_stage_bytes=1, upload_ttl_seconds=3).start()
    try:
        records = Path(uri) / "t.lance" / "_lightbox" / "uploads"
        proc = subprocess.Popen([sys.executable, "-m", "lightbox.cli", "ingest", str(folder), "--table", "t",
                                 "--server", server.url, "--batch-size", "5", "--no-progress"],
                                env=cli_env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while _record(records) is None and time.monotonic() < deadline:
                assert proc.poll() is None, "the ingest finished before it could be killed"
                time.sleep(0.01)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        found = _record(records)
        assert found is not None
        staged = found["files"]
        assert staged and all(Path(p.removeprefix("file://")).exists() for p in staged)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert versions(http, "t") == [1]  # nothing was committed
            time.sleep(3.5)
            assert http.post(f"{T}/t/uploads").status_code == 201  # the janitor runs as an upload begins
            assert versions(http, "t") == [1]
        assert not list(records.iterdir())
        assert not any(Path(p.removeprefix("file://")).exists() for p in staged)
    finally:
        server.stop()


def test_batches_over_a_real_server_travel_as_arrow_ipc(live_server, data_uri: str) -> None:  # type: ignore[no-untyped-def]
    server = live_server(data_uri)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        upload = http.post(f"{T}/t/uploads", json={"message": "wire"}).json()["upload_id"]
        for n in range(3):
            assert send(http, "t", upload, rows([f"{n}.png"], start=n)).json()["accepted"] == 1
        multipart = http.post(f"{T}/t/uploads/{upload}/batches",
                              files=[("files", ("m.png", png(9), "image/png"))], data={"metadata": "[{}]"})
        assert multipart.status_code == 200 and multipart.json()["accepted"] == 1, multipart.text
        assert http.post(f"{T}/t/uploads/{upload}/commit").json()["result"]["version"] == 1
        assert versions(http, "t") == [1] and http.get(f"{T}/t/count").json()["count"] == 4


def _image_schema() -> pa.Schema:
    from app.store.schema import image_schema

    return image_schema()
