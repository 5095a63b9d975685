"""Concurrent keyed writers: no duplicate ids, no lost writes, every write its own version.

Four processes upsert 3 of 30 overlapping ids at a time, through ``keyed_write`` on the data root
and through ``POST /rows`` (multipart, ``mode=upsert``) on one live server. Each writer logs what it
wrote and the version the write reported. The history is then replayed: every version after the
start must be exactly one logged write (its ids set to its value, nothing else touched), so the
final value of each id is the value of the write with the highest version that touched it.
Uploads racing to insert the same new id add it exactly once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import lance
import pyarrow as pa
import pytest

from app.store import Store
from app.store.schema import PRIMARY_KEY_META
from tests.conftest import REPO_ROOT, cli_env

KEYS = [f"k{i:02d}" for i in range(30)]
WRITERS = 4
WRITES = 15  # each writer's writes (all of them at once make the race); SECONDS bounds a slow machine
SECONDS = 7.0
SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False, metadata=PRIMARY_KEY_META),
                    pa.field("value", pa.int64()), pa.field("writer", pa.int64())])

# One writer: ready once imported (it makes `<out>.ready`), it starts when `go` appears, as all the
# others do, and then makes `writes` writes (or stops after `seconds`): each upserts 3 random keys to
# a value unique to the write. Every outcome is logged as one JSON line.
WORKER = r"""
import json, os, random, sys, time
import pyarrow as pa

how, target, writer, go, seconds, writes, out = sys.argv[1:8]  # argv[8]: an image file (http)
writer, seconds, writes = int(writer), float(seconds), int(writes)
keys = [f"k{i:02d}" for i in range(30)]
rng = random.Random(writer)

if how == "store":
    from app.store import Store
    from app.store.upserts import keyed_write
    store = Store(target, refresh_seconds=0.0)
    schema = store.latest("kv").schema

    def write(ids, value):
        table = pa.table({"id": ids, "value": [value] * 3, "writer": [writer] * 3}, schema=schema)
        version, counts = keyed_write(store, "kv", table, mode="upsert", message=f"w{writer}")
        return version, counts
else:  # images with their metadata, multipart, mode=upsert
    import httpx
    http = httpx.Client(base_url=target, timeout=60)
    picture = open(sys.argv[8], "rb").read()

    def write(ids, value):
        parts = [("files", (f"{key}.png", picture, "image/png")) for key in ids]
        meta = [{"id": key, "value": value, "writer": writer} for key in ids]
        r = http.post("/api/v1/tables/kv/rows", files=parts, data={"metadata": json.dumps(meta)},
                      params={"mode": "upsert", "message": f"w{writer}"})
        if r.status_code != 201:
            raise RuntimeError(f"{r.status_code} {r.text}")
        body = r.json()
        if body["skipped"]:
            raise RuntimeError(f"skipped {body['skipped']}")
        return body["version"], {"inserted": body["inserted"], "updated": body["updated"]}

open(out + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
end = time.time() + seconds
with open(out, "w") as log:
    n = 0
    while n < writes and time.time() < end:
        n += 1
        ids = rng.sample(keys, 3)
        value = writer * 1_000_000 + n
        try:
            version, counts = write(ids, value)
        except Exception as exc:
            log.write(json.dumps({"ids": ids, "value": value, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        else:
            log.write(json.dumps({"ids": ids, "value": value, "version": version, "counts": counts}) + "\n")
        log.flush()
"""


def run_writers(how: str, target: str, tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    """Start the writers together (once every child has imported Lance), wait for them, return every
    logged outcome."""
    go = tmp_path / f"{how}-go"
    logs = [tmp_path / f"{how}-{w}.jsonl" for w in range(WRITERS)]
    children = [subprocess.Popen([sys.executable, "-c", WORKER, how, target, str(w), str(go), str(SECONDS),
                                  str(WRITES), str(log), *extra], env=cli_env(), cwd=REPO_ROOT, stderr=subprocess.PIPE,
                                 text=True)
                for w, log in enumerate(logs)]
    deadline = time.monotonic() + 120
    while not all(Path(f"{log}.ready").exists() for log in logs):
        assert all(child.poll() is None for child in children), "a writer died before the race"
        assert time.monotonic() < deadline, "the writers did not get ready"
        time.sleep(0.01)
    go.touch()
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    return [json.loads(line) for log in logs for line in log.read_text().splitlines()]


def state_at(ds: lance.LanceDataset, version: int) -> dict[str, int]:
    table = ds.checkout_version(version).to_table(columns=["id", "value"])
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), f"duplicate ids at version {version}"
    return dict(zip(ids, table.column("value").to_pylist(), strict=True))


def check_history(store: Store, writes: list[dict[str, Any]], first: int) -> None:
    ok = [w for w in writes if "version" in w]
    failed = [w for w in writes if "error" in w]
    assert len(ok) >= 30, f"too few writes got through: {len(ok)} ok, {len(failed)} failed: {failed[:3]}"
    assert len(failed) <= len(ok) // 10, failed[:5]
    for w in ok:
        assert w["counts"]["inserted"] + w["counts"]["updated"] == 3, w

    # every successful write reported its own version, and no version is unaccounted for
    by_version = {w["version"]: w for w in ok}
    assert len(by_version) == len(ok), "two writes reported the same version"
    ds = lance.dataset(store.table_uri("kv"))
    assert sorted(by_version) == list(range(first + 1, ds.version + 1))

    # replay: each version is exactly its write applied to the previous one
    state = state_at(ds, first)
    for version in range(first + 1, ds.version + 1):
        write = by_version[version]
        state = {**state, **dict.fromkeys(write["ids"], write["value"])}
        assert state_at(ds, version) == state, f"version {version} is not write {write}"

    # the stored value of every id is that of the highest-versioned successful write touching it
    final = state_at(ds, ds.version)
    for key in KEYS:
        touching = [w for w in ok if key in w["ids"]]
        if touching:
            assert final[key] == max(touching, key=lambda w: w["version"])["value"], key
        else:
            assert key not in final
    assert not {w["value"] for w in failed} & set(final.values()), "a failed write left its value behind"
    assert ds.count_rows() == len(final)


@pytest.fixture
def kv(store: Store) -> Store:
    store.create("kv", SCHEMA)
    return store


def test_concurrent_keyed_writes_in_processes(kv: Store, tmp_path: Path) -> None:
    first = kv.latest("kv").version
    writes = run_writers("store", kv.uri, tmp_path)
    check_history(Store(kv.uri), writes, first)


def test_concurrent_image_upserts_over_http(store: Store, tmp_path: Path, live_server, samples_dir: Path) -> None:
    server = live_server(store.uri)
    made = httpx.post(f"{server.url}/api/v1/tables", json={"name": "kv", "schema": [
        {"name": "value", "type": "int64"}, {"name": "writer", "type": "int64"}]})
    assert made.status_code == 201, made.text
    first = made.json()["version"]
    picture = samples_dir / "chessboard_GRAY.png"
    writes = run_writers("http", server.url, tmp_path, str(picture))
    check_history(Store(store.uri), writes, first)
    ds = lance.dataset(store.table_uri("kv"))  # whole rows were written: the image came with each id
    assert set(ds.to_table(columns=["sha256"]).column("sha256").to_pylist()) == {
        hashlib.sha256(picture.read_bytes()).hexdigest()}


def test_concurrent_uploads_of_one_new_id_add_it_once(store: Store, in_process, samples_dir: Path) -> None:
    """Insert mode (the default): of several uploads racing with the same new id, exactly one adds it."""
    server = in_process(store.uri)
    assert server.http().post("/api/v1/tables", json={"name": "pics"}).status_code == 201
    picture = (samples_dir / "horse.png").read_bytes()
    barrier = threading.Barrier(3)

    def upload(key: str) -> dict[str, Any]:
        with server.http() as http:
            barrier.wait()
            response = http.post("/api/v1/tables/pics/rows", files=[("files", (key, picture, "image/png"))])
            assert response.status_code in (201, 422), response.text
            # a write that skipped its only file wrote nothing: a 422 with the reason
            return response.json() if response.status_code == 201 else response.json()["error"]["detail"]

    with ThreadPoolExecutor(3) as pool:
        for round_ in range(8):
            key = f"race-{round_}.png"
            reports = list(pool.map(upload, [key] * 3))
            assert sorted(r.get("inserted", 0) for r in reports) == [0, 0, 1], reports
            assert sorted(s["reason"] for r in reports for s in r["skipped"]) == ["duplicate_id"] * 2
    ids = lance.dataset(store.table_uri("pics")).to_table(columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == [f"race-{i}.png" for i in range(8)]
