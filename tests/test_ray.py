"""``--engine ray``: ingest and embedding on a local Ray cluster write what the local engine writes.

One module-scoped cluster (2 CPUs) serves every test; the CLI runs join it with ``--address``.
The tables are compared column by column with tables the local engine wrote from the same
sources: ids, sha256, image metadata, the stored bytes, vectors, skips, versions and the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from app.services.diff import diff
from app.services.embed import embed_table
from app.store import Ref, Store
from app.store.history import VersionLog
from embeddings.registry import load
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import REPO_ROOT, cli_command, cli_env

ray = pytest.importorskip("ray", reason="ray is in the ray (and dev) extra")

from ingest.ray_engine import PAUSE_ENV, run_ray_embed, run_ray_ingest  # noqa: E402

pytestmark = pytest.mark.ray

COLUMNS = ["id", "sha256", "mime", "width", "height", "mode", "frames", "size_bytes", "source"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster for the module; yields the address other processes join it by."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def mixed_dir(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real sample images in two folders, plus files no engine can store."""
    root = tmp_path_factory.mktemp("mixed") / "src"
    shutil.copytree(samples_dir, root / "a")
    (root / "b").mkdir()
    for name in ("astronaut.png", "camera.png", "rocket.jpg"):
        shutil.copyfile(samples_dir / name, root / "b" / name)
    (root / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    (root / "b" / "empty.jpg").write_bytes(b"")
    (root / "b" / "notes.txt").write_text("not an image")
    return root


def rows(store: Store, name: str) -> pa.Table:
    return store.fresh(name).to_table(columns=COLUMNS).sort_by("id")


def vectors(store: Store, name: str, column: str = "vector") -> tuple[list[str], np.ndarray]:
    table = store.fresh(name).to_table(columns=["id", column]).sort_by("id")
    return table.column("id").to_pylist(), np.stack(table.column(column).to_numpy(zero_copy_only=False))


def skips(report: dict | object) -> list[tuple[str, str, str]]:
    items = report["skipped"] if isinstance(report, dict) else report.skipped  # type: ignore[attr-defined]
    return [(s["file"], s["reason"], s["message"]) if isinstance(s, dict) else (s.file, s.reason, s.message)
            for s in items]


def entry(store: Store, name: str, version: int) -> dict:
    return VersionLog(store.table_uri).entry(store.fresh(name), name, version)


def logged_by_diff(store: Store, name: str, version: int) -> dict[str, int]:
    """The counts a version's log entry must carry: ``diff`` against the version before."""
    change = diff(store.snapshot(name, Ref(version=version - 1)), store.snapshot(name, Ref(version=version)))
    return {"inserted": len(change.added), "updated": len(change.changed), "deleted": len(change.removed)}


def test_ray_ingest_equals_local_ingest(cluster: str, mixed_dir: Path, data_uri: str) -> None:
    """The CLI with ``--engine ray --embed builtin``: one version with message and tag, the same
    rows, bytes, vectors and skips as the local engine; a second run adds nothing."""
    store = Store(data_uri)
    local = run_ingest(store, IngestOptions(table="local", sources=[str(mixed_dir)], embed="builtin",
                                            message="first load", tag="v1", progress=False))
    done = subprocess.run(
        cli_command("ingest", str(mixed_dir), "--table", "dist", "--uri", data_uri, "--engine", "ray",
                    "--address", cluster, "--embed", "builtin", "-m", "first load", "--tag", "v1", "--json"),
        capture_output=True, text=True, env=cli_env(), cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["added"] == local.added == 15
    assert report["versions"] == [1] and report["tag"] == "v1"
    assert skips(report) == skips(local) and {r for _, r, _ in skips(local)} == {"truncated", "empty", "not_an_image"}

    assert rows(store, "dist").equals(rows(store, "local"))
    ds = store.fresh("dist")
    assert ds.version == 1 and ds.tags.list()["v1"]["version"] == 1
    ds.validate()
    assert sorted(ds.to_table(columns=["_rowid"], with_row_id=True).column("_rowid").to_pylist()) == list(range(15))
    stored = ds.scanner(columns=["id", "sha256", "image"], blob_handling="all_binary").to_table()
    for digest, data in zip(stored.column("sha256").to_pylist(), stored.column("image").to_pylist(), strict=True):
        assert hashlib.sha256(data).hexdigest() == digest
    ids_d, vec_d = vectors(store, "dist")
    ids_l, vec_l = vectors(store, "local")
    assert ids_d == ids_l and np.allclose(vec_d, vec_l, atol=1e-5)
    assert ds.schema.field("vector").metadata == store.fresh("local").schema.field("vector").metadata
    log_d, log_l = entry(store, "dist", 1), entry(store, "local", 1)
    assert (log_d["message"], log_d["operation"], log_d["author"], log_d["num_rows"]) == \
        (log_l["message"], log_l["operation"], log_l["author"], log_l["num_rows"]) == ("first load", "create",
                                                                                        log_l["author"], 15)

    again = run_ray_ingest(store, IngestOptions(table="dist", sources=[str(mixed_dir)], progress=False))
    assert again.added == 0 and again.version is None and store.fresh("dist").version == 1
    assert {r for _, r, _ in skips(again)} == {"duplicate_id", "truncated", "empty", "not_an_image"}


def test_duplicates_across_shards_resolved_like_the_local_engine(cluster: str, mixed_dir: Path,
                                                                data_uri: str) -> None:
    """An append to an existing table, ``--id name`` over two folders that share file names, cut into
    shards of 4 files: the first occurrence in listing order wins, later ones are ``duplicate_id``
    skips, in the same order, with the same ids as a local run; one version on top."""
    store = Store(data_uri)
    for table in ("local", "dist"):
        run_ingest(store, IngestOptions(table=table, sources=[str(mixed_dir / "b")], id_mode="path", progress=False))
    opts = {"sources": [str(mixed_dir / "a"), str(mixed_dir / "b"), str(mixed_dir / "a")], "id_mode": "name",
            "message": "more", "progress": False}
    local = run_ingest(store, IngestOptions(table="local", **opts))
    dist = run_ray_ingest(store, IngestOptions(table="dist", **opts), shard_files=4)
    assert dist.added == local.added == 9
    assert skips(dist) == skips(local)
    assert sum(r == "duplicate_id" for _, r, _ in skips(dist)) == 18
    assert dist.versions == [2] and store.fresh("dist").version == 2
    assert rows(store, "dist").equals(rows(store, "local"))
    assert entry(store, "dist", 2)["message"] == "more" and entry(store, "dist", 2)["operation"] == "insert"
    store.fresh("dist").validate()


def test_an_append_that_brings_a_column_adds_it_like_the_local_engine(cluster: str, mixed_dir: Path,
                                                                       data_uri: str) -> None:
    """``--labels-from-dirs`` onto tables without labels: the shards write the widened schema and the
    driver commits them with the new column in one version, as the local engine does."""
    store = Store(data_uri)
    for table in ("local", "dist"):
        run_ingest(store, IngestOptions(table=table, sources=[str(mixed_dir / "b")], progress=False))
    opts = {"sources": [str(mixed_dir)], "labels_from_dirs": True, "progress": False}
    local = run_ingest(store, IngestOptions(table="local", **opts))
    dist = run_ray_ingest(store, IngestOptions(table="dist", **opts), shard_files=4)
    assert dist.added == local.added == 15 and dist.versions == local.versions == [2]

    def labelled(name: str) -> pa.Table:
        return store.fresh(name).to_table(columns=["id", "label", "_row_last_updated_at_version"]).sort_by("id")

    assert labelled("dist").equals(labelled("local")) and rows(store, "dist").equals(rows(store, "local"))
    got = {r["id"]: r for r in labelled("dist").to_pylist()}
    assert got["astronaut.png"]["label"] is None and got["astronaut.png"]["_row_last_updated_at_version"] == 1
    assert (got["a/astronaut.png"]["label"], got["b/astronaut.png"]["label"]) == ("a", "b")
    assert entry(store, "dist", 2)["operation"] == "insert" and entry(store, "dist", 2)["counts"]["inserted"] == 15
    store.fresh("dist").validate()


def test_content_dedup_across_shards(cluster: str, mixed_dir: Path, data_uri: str) -> None:
    """``--dedup content``: folder b holds copies of three of a's files; in shards of 2 files the
    copies are ``duplicate_content`` skips exactly where the local engine reports them."""
    store = Store(data_uri)
    opts = {"sources": [str(mixed_dir)], "dedup": "content", "progress": False}
    local = run_ingest(store, IngestOptions(table="local", **opts))
    dist = run_ray_ingest(store, IngestOptions(table="dist", **opts), shard_files=2)
    assert dist.added == local.added == 12
    assert skips(dist) == skips(local)
    assert sum(r == "duplicate_content" for _, r, _ in skips(dist)) == 3
    assert rows(store, "dist").equals(rows(store, "local"))


def test_a_concurrent_writer_of_the_same_ids_stops_the_commit(cluster: str, mixed_dir: Path, data_uri: str,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another writer adds one of the run's ids between the run's read and its commit: the run
    commits nothing (409), the table keeps the other writer's version and unique ids."""
    from concurrent.futures import ThreadPoolExecutor

    from app.errors import Conflict

    store = Store(data_uri)
    run_ingest(store, IngestOptions(table="t", sources=[str(mixed_dir / "b")], progress=False))
    marker = tmp_path / "written"
    monkeypatch.setenv(PAUSE_ENV, str(marker))
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run_ray_ingest, Store(data_uri),
                             IngestOptions(table="t", sources=[str(mixed_dir)], progress=False))
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and not future.done():
            time.sleep(0.05)
        assert marker.exists()
        other = run_ingest(Store(data_uri), IngestOptions(table="t", sources=[str(mixed_dir)], id_mode="path",
                                                          progress=False))
        assert other.added == 15 and other.versions == [2]
        marker.unlink()
        with pytest.raises(Conflict, match="another writer added"):
            future.result(timeout=60)
    ds = Store(data_uri).fresh("t")
    assert ds.version == 2 and ds.count_rows() == 18
    ids = ds.to_table(columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids))


def test_ray_embed_equals_local_embed(cluster: str, mixed_dir: Path, data_uri: str) -> None:
    """A new vector column over several fragments (one version, ``embed`` in the log, the column's
    model metadata), then a refresh of it: the same vectors as the local ``embed``."""
    store = Store(data_uri)
    for table in ("local", "dist"):
        for folder in ("b", "a"):  # two versions: two fragments
            run_ingest(store, IngestOptions(table=table, sources=[str(mixed_dir / folder)], progress=False))
    assert len(store.fresh("dist").get_fragments()) == 2
    local = embed_table(store, "local", load("builtin"), message="vectors", author="ann")
    before = store.fresh("dist").version
    out = run_ray_embed(store, "dist", "builtin", message="vectors", author="ann")
    assert out["version"] == before + 1 and out["rows"] == local["rows"] == 12
    ids_d, vec_d = vectors(store, "dist")
    ids_l, vec_l = vectors(store, "local")
    assert ids_d == ids_l and np.allclose(vec_d, vec_l, atol=1e-5)
    assert store.fresh("dist").schema.field("vector").metadata == store.fresh("local").schema.field("vector").metadata
    log = entry(store, "dist", out["version"])
    assert (log["operation"], log["message"], log["author"]) == ("embed", "vectors", "ann")
    assert log["counts"] == logged_by_diff(store, "dist", out["version"]) == {"inserted": 0, "updated": 12,
                                                                            "deleted": 0}
    assert rows(store, "dist").equals(rows(store, "local"))

    again = run_ray_embed(store, "dist", "builtin", message="refresh", author="ann")
    assert again["version"] == out["version"] + 1
    assert entry(store, "dist", again["version"])["operation"] == "embed"
    assert entry(store, "dist", again["version"])["counts"] == logged_by_diff(store, "dist", again["version"])
    assert np.allclose(vectors(store, "dist")[1], vec_l, atol=1e-5)
    store.fresh("dist").validate()


def test_killed_driver_leaves_the_previous_version(cluster: str, mixed_dir: Path, data_uri: str,
                                                   tmp_path: Path) -> None:
    """SIGKILL after every shard wrote its fragments, before the commit: the table stays at its
    version with its rows and validates; the written files are unreferenced; a re-run commits."""
    store = Store(data_uri)
    run_ingest(store, IngestOptions(table="t", sources=[str(mixed_dir / "b")], progress=False))
    table_dir = Path(data_uri) / "t.lance" / "data"
    files_before = set(table_dir.rglob("*"))
    marker = tmp_path / "written"
    env = {**cli_env(), PAUSE_ENV: str(marker)}
    proc = subprocess.Popen(
        cli_command("ingest", str(mixed_dir / "a"), "--table", "t", "--uri", data_uri, "--engine", "ray",
                    "--address", cluster, "-m", "never"),
        env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the driver never reached its commit"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert set(table_dir.rglob("*")) - files_before, "the shards wrote no fragments before the kill"
    fresh = Store(data_uri)
    ds = fresh.fresh("t")
    assert ds.version == 1 and ds.count_rows() == 3
    ds.validate()
    done = run_ray_ingest(fresh, IngestOptions(table="t", sources=[str(mixed_dir / "a")], progress=False))
    assert done.added == 9 and done.versions == [2] and fresh.fresh("t").count_rows() == 12
    fresh.fresh("t").validate()


@pytest.mark.s3
def test_ray_ingest_on_s3(cluster: str, samples_dir: Path, s3_root: object) -> None:
    """The same runs on an S3-compatible store: storage options reach the workers' fragment writes
    and reads and the driver's commits."""
    store = Store(s3_root.uri, storage_options=s3_root.options)  # type: ignore[attr-defined]
    report = run_ray_ingest(store, IngestOptions(table="s3t", sources=[str(samples_dir)], message="on s3",
                                                 tag="s1", progress=False), shard_files=5)
    assert report.added == 12 and report.versions == [1] and report.tag == "s1"
    ds = store.fresh("s3t")
    assert ds.count_rows() == 12 and ds.version == 1
    ds.validate()
    assert entry(store, "s3t", 1)["message"] == "on s3"
    out = run_ray_embed(store, "s3t", "builtin", message="vectors on s3")
    assert out["version"] == 2 and out["rows"] == 12 and out["failed"] == 0
    ds = store.fresh("s3t")
    assert ds.schema.field("vector").metadata[b"lightbox:model"] == b"builtin"
    assert ds.to_table(columns=["vector"]).column("vector").null_count == 0
    ds.validate()
