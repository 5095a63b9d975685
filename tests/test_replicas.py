"""Many ``lightbox serve`` processes as one service: one writer, two read replicas, one S3 root.

Real processes on loopback over a real S3-compatible server (moto). Replicas forward every write to
the writer (``LIGHTBOX_WRITER_URL``), whose per-table turn keeps ids unique; no file lock exists on
object storage, so without forwarding concurrent upserts of one new id through two processes can
store it twice.
"""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import lancedb
import pyarrow as pa
import pytest
from PIL import Image

from lightbox.client import Client
from tests.s3 import MotoS3
from tests.serve_procs import ServeProcess

pytestmark = pytest.mark.s3

REPLICAS, THREADS, WRITES, KEYS = 2, 3, 10, 8
REFRESH = 2.0  # longer than a forwarded write and the read after it: that read sees it only if refreshed


@pytest.fixture(scope="module")
def service(moto_s3: MotoS3, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[ServeProcess, list[ServeProcess]]]:
    """The writer and two replicas over one fresh S3 root, started at once (start-up is mostly imports) and
    shared by this module's tests (each uses its own tables; the last one stops the writer)."""
    s3_root, tmp_path = moto_s3.root(), tmp_path_factory.mktemp("replicas")
    env = {"LIGHTBOX_LATEST_REFRESH_SECONDS": str(REFRESH), "LIGHTBOX_WARM_ON_START": "false"}
    # the writer gets its storage options as --storage-option flags, the replicas from the environment
    writer = ServeProcess(s3_root.uri, flags=s3_root.flags(), env=env, log=tmp_path / "writer.log")
    replicas = [ServeProcess(s3_root.uri, env={**env, **s3_root.env(), "LIGHTBOX_WRITER_URL": writer.url},
                             log=tmp_path / f"replica{i}.log") for i in range(REPLICAS)]
    try:
        for proc in (writer, *replicas):
            proc.wait_ready()
        yield writer, replicas
    finally:
        for proc in (*replicas, writer):
            proc.stop()


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (4, 4), value % 256).save(out, format="PNG")
    return out.getvalue()


def test_replicas_keep_ids_unique_and_every_write_readable(service: tuple[ServeProcess, list[ServeProcess]]) -> None:
    _, replicas = service
    clients = [Client(r.url, timeout=120) for r in replicas]
    clients[0].create_table("shared", [{"name": "value", "type": "int64"}])  # forwarded to the writer

    counter = itertools.count(1)
    acked: list[tuple[str, int, int]] = []  # (id, value written, version acknowledged)
    guard = threading.Lock()

    def work(replica: int, thread: int) -> None:
        table = clients[replica].table("shared")
        for i in range(WRITES):
            key = f"k{(i + thread + replica) % KEYS}"  # every key is contested by every worker
            value = next(counter)
            out = table.add([png(value)], ids=[key], metadata=[{"value": value}], mode="upsert")
            with guard:
                acked.append((key, value, out["version"]))

    with ThreadPoolExecutor(REPLICAS * THREADS) as pool:
        futures = [pool.submit(work, r, t) for r in range(REPLICAS) for t in range(THREADS)]
        for future in futures:
            future.result()

    assert len(acked) == REPLICAS * THREADS * WRITES
    versions = [v for _, _, v in acked]
    assert len(set(versions)) == len(versions)  # each write its own version: none was folded into another

    time.sleep(REFRESH)  # each replica now sees the other's writes too
    for client in clients:
        rows = client.table("shared").query(columns=["id", "value"], limit=None)
        ids = rows.column("id").to_pylist()
        assert len(ids) == len(set(ids)) == KEYS  # 0 duplicate ids

    # 0 lost writes: each id holds the value of its last acknowledged write
    last = {}
    for key, value, _ in sorted(acked, key=lambda a: a[2]):
        last[key] = value
    for client in clients:
        rows = client.table("shared").query(columns=["id", "value"], limit=None).to_pydict()
        assert dict(zip(rows["id"], rows["value"], strict=True)) == last

    # every acknowledged version is readable through both replicas, holding what that write wrote
    def check(args: tuple[Client, tuple[str, int, int]]) -> None:
        client, (key, value, version) = args
        assert client.table("shared").at(version=version).get(key)["value"] == value

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check, [(c, a) for c in clients for a in acked]))


def test_an_upload_session_through_a_replica(service: tuple[ServeProcess, list[ServeProcess]],
                                             tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A session's requests reach the writer, which holds the session: batches, its state, the commit."""
    _, replicas = service
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(30):
        (folder / f"{i:02d}.png").write_bytes(png(i + 1))
    with Client(replicas[1].url, timeout=120) as client:
        report = client.table("sessions").ingest(folder, batch_rows=8, message="through a replica")
        assert (report.added, report.versions) == (30, [1])
        assert client.table("sessions").versions()[-1]["message"] == "through a replica"
    with httpx.Client(base_url=replicas[0].url, timeout=60) as http:
        upload = http.post("/api/v1/tables/sessions/uploads").json()["upload_id"]
        state = http.get(f"/api/v1/tables/sessions/uploads/{upload}")  # served by the writer, not this replica
        assert state.status_code == 200 and state.json()["state"] == "open"
        assert http.delete(f"/api/v1/tables/sessions/uploads/{upload}").json()["state"] == "aborted"


def test_replica_forwards_reads_locally_and_writes_unchanged(service: tuple[ServeProcess, list[ServeProcess]]) -> None:
    """Reads that are POSTs stay on the replica; a failing write answers with the writer's own error."""
    writer, replicas = service
    replica = replicas[0].url
    created = httpx.post(f"{replica}/api/v1/tables", json={"name": "t"}, timeout=60)
    assert created.status_code == 201, created.text
    # a write the writer refuses: its status and error body come back as they were
    again = httpx.post(f"{replica}/api/v1/tables", json={"name": "t"}, timeout=60)
    direct = httpx.post(f"{writer.url}/api/v1/tables", json={"name": "t"}, timeout=60)
    assert again.status_code == direct.status_code == 409
    assert again.json()["error"]["code"] == direct.json()["error"]["code"]
    # the official LanceDB client through a replica: create, add and merge_insert are forwarded, and the
    # replica reads its own writes at once (its refresh interval is longer than this takes)
    db = lancedb.connect("db://lightbox", api_key="none", host_override=replica)
    tbl = db.create_table("features", pa.table({"id": ["a", "b"], "x": [1, 2]}))
    tbl.add(pa.table({"id": ["c"], "x": [3]}))
    assert tbl.count_rows() == 3
    (tbl.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
     .execute(pa.table({"id": ["c", "d"], "x": [30, 4]})))
    assert sorted(tbl.search().select(["x"]).limit(10).to_arrow().column("x").to_pylist()) == [1, 2, 4, 30]
    assert db.open_table("features").count_rows("x > 3") == 2
    # a read that is a POST is answered here (it works with the writer gone)
    writer.stop()
    assert httpx.post(f"{replica}/api/v1/tables/t/query", json={}, timeout=60).status_code == 200
    down = httpx.post(f"{replica}/api/v1/tables/t/delete", json={"filter": "true"}, timeout=60)
    assert down.status_code == 503 and down.json()["error"]["code"] == "writer_unavailable"

