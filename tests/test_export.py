"""Export through HTTP, the SDK (sync and async) and the CLI, read back by ``datasets`` and
``webdataset`` and by ingest into a new table: ids, bytes (sha256) and metadata must survive."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import lightbox
from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import InProcess, LiveServer
from tests.helpers import run_cli

META = ["id", "label", "split", "ink"]


@pytest.fixture(scope="module")
def server(root: str, digits_dir: Path) -> Iterator[InProcess]:
    app = InProcess(root)
    with app.sdk() as client:
        client.table("digits").add([digits_dir / "images" / "0/00000.png"], ids=["late/extra.png"],
                                   metadata=[{"label": 0, "split": "late", "ink": 1.0}])
    yield app
    app.close()


@pytest.fixture
def client(server: InProcess) -> Iterator[lightbox.Client]:
    with server.sdk() as c:
        yield c


def rows_by_id(store: Store, table: str, ref: Any = None, columns: tuple[str, ...] = (*META, "sha256")
               ) -> dict[str, dict[str, Any]]:
    from app.store import Ref

    snap = store.snapshot(table, ref or Ref())
    rows = snap.read(list(columns)).to_pylist()
    return {r["id"]: r for r in rows}


def v1_rows(root: str) -> dict[str, dict[str, Any]]:
    from app.store import Ref

    return rows_by_id(Store(root), "digits", Ref(tag="v1"))


def test_parquet_roundtrip_through_sdk_datasets_and_ingest(client: lightbox.Client, root: str,
                                                           tmp_path: Path) -> None:
    out = client.table("digits").at(tag="v1").export(tmp_path / "digits.parquet")
    assert out["rows"] == 200 and out["version"] == 1
    expected = v1_rows(root)

    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "digits.parquet"), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    assert len(ds) == 200
    first = ds[0]
    assert first["image"].size == (8, 8)  # decoded to PIL by the Image feature
    raw = ds.cast_column("image", datasets.Image(decode=False))
    for row in raw:
        want = expected[row["id"]]
        assert hashlib.sha256(row["image"]["bytes"]).hexdigest() == want["sha256"]
        assert (row["label"], row["split"], row["ink"]) == (want["label"], want["split"], want["ink"])

    store = Store(str(tmp_path / "copy"))
    report = run_ingest(store, IngestOptions(table="again", sources=[str(tmp_path / "digits.parquet")],
                                             progress=False, workers=1))
    assert report.added == 200 and not report.skipped
    assert rows_by_id(store, "again") == expected


def test_webdataset_shards_read_by_webdataset_and_ingest(client: lightbox.Client, root: str,
                                                         tmp_path: Path) -> None:
    out = client.table("digits").at(tag="v1").export(tmp_path / "wds", "webdataset", shard_size=64)
    assert out["rows"] == 200 and len(out["paths"]) == 4  # 64 + 64 + 64 + 8
    expected = v1_rows(root)

    import json
    from urllib.parse import unquote

    import webdataset as wds

    samples = list(wds.WebDataset(sorted(out["paths"]), shardshuffle=False))
    assert len(samples) == 200
    decoded = next(iter(wds.WebDataset(out["paths"][0], shardshuffle=False).decode("pil")))
    assert decoded["png"].size == (8, 8) and decoded["json"]["id"] == unquote(decoded["__key__"])

    for sample in samples:
        meta = json.loads(sample["json"])
        assert unquote(sample["__key__"]) == meta["id"]  # the documented key mapping
        assert hashlib.sha256(sample["png"]).hexdigest() == expected[meta["id"]]["sha256"]
        assert meta["label"] == expected[meta["id"]]["label"]

    store = Store(str(tmp_path / "copy"))
    report = run_ingest(store, IngestOptions(table="again", sources=sorted(out["paths"]), progress=False, workers=1))
    assert report.added == 200 and not report.skipped
    assert rows_by_id(store, "again") == expected


def test_imagefolder_tree_by_cli_and_ingest(server: InProcess, root: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    done = run_cli("export", "digits", tree, "--format", "imagefolder", "--at", "v1", "--uri", root)
    assert done.returncode == 0, done.stderr
    assert "exported 200 rows" in done.stdout
    expected = v1_rows(root)
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    assert len(files) == 200
    by_digest = {r["sha256"]: r for r in expected.values()}
    for path in files:
        want = by_digest[hashlib.sha256(path.read_bytes()).hexdigest()]
        assert path.parent.name == str(want["label"])

    import datasets

    loaded = datasets.load_dataset("imagefolder", data_dir=str(tree), split="train")
    assert len(loaded) == 200 and sorted(loaded.features["label"].names) == sorted({str(r["label"]) for r in
                                                                                    expected.values()})

    store = Store(str(tmp_path / "copy"))
    run_ingest(store, IngestOptions(table="again", sources=[str(tree)], labels_from_dirs=True, progress=False,
                                    workers=1))
    again = rows_by_id(store, "again", columns=("id", "label", "sha256"))
    assert sorted((r["sha256"], r["label"]) for r in again.values()) == \
        sorted((r["sha256"], r["label"]) for r in expected.values())


def test_cli_through_server_and_latest_differs_from_tag(server: InProcess, root: str, tmp_path: Path,
                                                        live_server: Callable[[str], LiveServer]) -> None:
    live = live_server(root)  # the command line's own HTTP client, over a socket
    done = run_cli("export", "digits", tmp_path / "latest.parquet", "--server", live.url, "--filter", "label = 0")
    assert done.returncode == 0, done.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "latest.parquet")
    ids = set(table.column("id").to_pylist())
    assert "late/extra.png" in ids  # latest has the added row
    assert all(lbl == 0 for lbl in table.column("label").to_pylist())
    assert pq.read_schema(tmp_path / "latest.parquet").metadata[b"huggingface"]


def test_http_stream_zip_and_errors(server: InProcess, root: str) -> None:
    expected = v1_rows(root)
    with server.http(base_url=f"{server.url}/api/v1/tables/digits") as http:
        with http.stream("GET", "/export", params={"format": "imagefolder", "archive": "zip", "tag": "v1"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/zip"
            assert r.headers["x-lightbox-version"] == "1"
            body = b"".join(r.iter_bytes())
        names = zipfile.ZipFile(io.BytesIO(body)).namelist()
        assert len(names) == 200 and "3/3%2F00003.png" in names
        tar = http.get("/export", params={"format": "webdataset", "tag": "v1", "offset": 10, "limit": 5})
        with tarfile.open(fileobj=io.BytesIO(tar.content)) as shard:
            members = shard.getnames()
        assert len(members) == 10 and all(m.endswith((".png", ".json")) for m in members)
        for params, code in (({"format": "csv"}, "invalid_request"),
                             ({"format": "imagefolder", "label_column": "nope"}, "unsupported_export"),
                             ({"format": "parquet", "columns": "nope"}, "unknown_column"),
                             ({"format": "parquet", "filter": "nope = 1"}, "invalid_filter"),
                             ({"format": "parquet", "version": "999"}, None)):
            bad = http.get("/export", params=params)
            assert 400 <= bad.status_code < 500, (params, bad.text)
            if code:
                assert bad.json()["error"]["code"] == code
        assert len(expected) == 200


def test_async_export_matches_sync(client: lightbox.Client, server: InProcess, tmp_path: Path) -> None:
    client.table("digits").at(tag="v1").export(tmp_path / "sync.tar", "imagefolder", archive="tar")

    async def run() -> dict[str, Any]:
        async with server.async_sdk() as aclient:
            return await aclient.table("digits").at(tag="v1").export(tmp_path / "async", "imagefolder")

    out = asyncio.run(run())
    assert out["rows"] == 200
    with tarfile.open(tmp_path / "sync.tar") as tar:
        from_sync = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    from_async = {p.relative_to(tmp_path / "async").as_posix(): p.read_bytes()
                  for p in (tmp_path / "async").rglob("*") if p.is_file()}
    assert from_sync == from_async


def test_arrow_stream_keeps_vector_model_metadata(client: lightbox.Client) -> None:
    table = client.table("digits").query(columns=["id", "vector"], limit=5)
    meta = table.schema.field("vector").metadata
    assert meta[b"lightbox:model"] == b"builtin" and meta[b"lightbox:source"] == b"image"
    assert not table.schema.field("id").metadata  # Lance's own markers are not passed on
    streamed = next(client.table("digits").iter_batches(columns=["vector"], batch_size=10))
    assert streamed.schema.field("vector").metadata[b"lightbox:model"] == b"builtin"


def test_batches_are_cut_by_image_bytes(root: str, server: InProcess) -> None:
    """One image per batch when the byte budget is tiny: same rows, in the same order, more row groups."""
    import pyarrow.parquet as pq

    from app.services.export import ExportSpec, open_export
    from app.store import Ref

    store = Store(root)
    whole = open_export(store, "digits", Ref(tag="v1"), ExportSpec(format="parquet"))
    tiny = open_export(store, "digits", Ref(tag="v1"), ExportSpec(format="parquet", batch_bytes=1))
    assert [b.num_rows for b, _ in tiny.batches()] == [1] * 200
    a = pq.ParquetFile(io.BytesIO(b"".join(whole.chunks())))
    b = pq.ParquetFile(io.BytesIO(b"".join(tiny.chunks())))
    assert b.metadata.num_row_groups == 200 and a.metadata.num_row_groups < 200
    assert a.read().equals(b.read())


def test_failed_export_leaves_no_file(client: lightbox.Client, tmp_path: Path) -> None:
    with pytest.raises(lightbox.LightboxError, match="unknown column"):
        client.table("digits").export(tmp_path / "x.parquet", columns=["nope"])
    assert not (tmp_path / "x.parquet").exists()
    with pytest.raises(ValueError, match="format"):
        client.table("digits").export(tmp_path / "x.csv", "csv")
