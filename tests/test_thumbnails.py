"""Thumbnails made when rows are written and kept beside the table by content digest, and a page of
them in one request (``POST .../thumbnails``): a server that has never seen the table serves a fresh
row's thumbnail without rendering it, the kept ones are right at every version, and bad requests are 4xx.
All in this process, on real JPEGs (``tests.gallery_data.write_photos``) and a small PNG."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from app.services.budget import MemoryBudget
from app.services.pixels import render_thumbnail
from app.services.uploads import UploadOptions, Uploads
from app.store import Store
from embeddings.registry import Registry
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import InProcess
from tests.gallery_data import write_photos

URL = "/api/v1/tables/photos"


def metric(http: object, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", http.get("/metrics").text, re.M)  # type: ignore[attr-defined]
    assert found, name
    return float(found.group(1))


def render(data: bytes, size: int) -> bytes:
    return render_thumbnail(data, "image/jpeg", size, None, MemoryBudget(1024**3))[0]


def kept_files(uri: str, table: str = "photos") -> list[Path]:
    return sorted(p for p in (Path(uri) / f"{table}.lance" / "_lightbox" / "thumbnails").rglob("*") if p.is_file())


@pytest.fixture
def photos(tmp_path: Path) -> dict[str, object]:
    """Three 320x240 JPEGs and one 8x8 PNG (shown as is by the gallery: no thumbnail made) in ``photos``."""
    folder = tmp_path / "src"
    written = write_photos(folder, 3, size=(320, 240))
    Image.new("L", (8, 8), 200).save(folder / "dot.png")
    uri = str(tmp_path / "data")
    run_ingest(Store(uri), IngestOptions(table="photos", sources=[str(folder)], message="photos", progress=False))
    return {"uri": uri, "files": {p.name: p.read_bytes() for p in written}, "folder": folder}


def test_a_fresh_rows_thumbnails_are_kept_at_write_time_and_served_without_a_render(photos: dict) -> None:
    uri, files = photos["uri"], photos["files"]
    assert len(kept_files(uri)) == 2 * len(files)  # 128 and 256 of each photo; none for the 8x8 PNG
    app = InProcess(uri)  # a server that has never seen the table
    try:
        http = app.http()
        version = http.get(URL).json()["version"]
        for name, data in files.items():
            for size in (128, 256):
                got = http.get(f"{URL}/rows/{name}/thumbnail", params={"size": size, "version": version})
                assert got.status_code == 200 and got.content == render(data, size)
        assert metric(http, "lightbox_thumbnail_renders_total") == 0
        assert metric(http, "lightbox_thumbnail_kept_reads_total") == 2 * len(files)
        name = next(iter(files))
        other = http.get(f"{URL}/rows/{name}/thumbnail", params={"size": 64})  # a size never made: rendered ...
        assert other.content == render(files[name], 64)
        assert metric(http, "lightbox_thumbnail_renders_total") == 1
        assert len(kept_files(uri)) == 2 * len(files) + 1  # ... and kept
    finally:
        app.close()
    again = InProcess(uri)
    try:
        http = again.http()
        assert http.get(f"{URL}/rows/{name}/thumbnail", params={"size": 64}).content == render(files[name], 64)
        assert metric(http, "lightbox_thumbnail_renders_total") == 0
    finally:
        again.close()


def test_kept_thumbnails_are_right_at_every_version(photos: dict, tmp_path: Path) -> None:
    uri, files = photos["uri"], photos["files"]
    name = next(iter(files))
    replaced = tmp_path / "replaced"
    replaced.mkdir()
    Image.open(photos["folder"] / name).rotate(90, expand=True).save(replaced / name, quality=90)
    app = InProcess(uri)
    try:
        http = app.http()
        before = http.get(URL).json()["version"]
        run_ingest(Store(uri), IngestOptions(table="photos", sources=[str(replaced)], mode="upsert",
                                             message="rotate one", progress=False))
        after = http.get(URL).json()["version"]
        assert after == before + 1
        old = http.get(f"{URL}/rows/{name}/thumbnail", params={"size": 128, "version": before})
        new = http.get(f"{URL}/rows/{name}/thumbnail", params={"size": 128, "version": after})
        assert old.content == render(files[name], 128)
        assert new.content == render((replaced / name).read_bytes(), 128) != old.content
        assert Image.open(io.BytesIO(new.content)).size == (96, 128)  # the rotated photo, kept too
        assert old.headers["etag"] != new.headers["etag"]
        assert metric(http, "lightbox_thumbnail_renders_total") == 0
    finally:
        app.close()


def test_a_page_of_thumbnails_in_one_request(photos: dict) -> None:
    uri, files = photos["uri"], photos["files"]
    app = InProcess(uri, api_keys="rw-key,ro-key:ro")
    try:
        http = app.http(headers={"x-api-key": "ro-key"})  # a read: a read-only key may ask
        ids = [*files, "dot.png", "no-such-row.jpg"]
        got = http.post(f"{URL}/thumbnails", json={"ids": ids, "size": 128})
        assert got.status_code == 200, got.text
        body = got.json()
        assert [t["id"] for t in body["thumbnails"]] == [*files, "dot.png"]  # in the order asked
        for item in body["thumbnails"]:
            one = http.get(f"{URL}/rows/{item['id']}/thumbnail", params={"size": 128})
            assert base64.b64decode(item["data"]) == one.content and item["mime"] == one.headers["content-type"]
        [missing] = body["missing"]
        assert missing["id"] == "no-such-row.jpg" and "no-such-row.jpg" in missing["error"]["message"]
        assert missing["error"]["code"] == http.get(f"{URL}/rows/no-such-row.jpg/thumbnail").json()["error"]["code"]
        assert str(body["version"]) == got.headers["x-lightbox-version"]
    finally:
        app.close()


@pytest.mark.parametrize(("body", "wanted"), [
    ({"ids": ["a"], "size": 0}, "between 8 and 2048"), ({"ids": ["a"], "size": 4096}, "between 8 and 2048"),
    ({"ids": [], "size": 128}, "give the ids"), ({"ids": ["a"] * 201}, "at most 200"),
    ({"ids": ["a"], "size": "big"}, "size"), ({"ids": ["a"], "format": "gif"}, "format"),
    ({"ids": ["../x"]}, ".."),
])
def test_bad_batches_are_4xx(photos: dict, body: dict, wanted: str) -> None:
    app = InProcess(photos["uri"])
    try:
        got = app.http().post(f"{URL}/thumbnails", json=body)
        assert 400 <= got.status_code < 500 and wanted in got.text, got.text
    finally:
        app.close()


@pytest.mark.parametrize("size", ["0", "4096", "big"])
def test_bad_sizes_of_one_thumbnail_are_4xx(photos: dict, size: str) -> None:
    app = InProcess(photos["uri"])
    try:
        name = next(iter(photos["files"]))
        got = app.http().get(f"{URL}/rows/{name}/thumbnail", params={"size": size})
        assert 400 <= got.status_code < 500, got.text
    finally:
        app.close()


def test_an_upload_can_skip_making_thumbnails(photos: dict) -> None:
    uri, files = photos["uri"], photos["files"]
    uploads = Uploads(Store(uri), Registry(), ttl_seconds=60.0)
    try:
        began = uploads.begin("plain", UploadOptions.parse({"thumbnails": False}))
        uploads.add("plain", began["upload_id"], pa.table({"id": list(files), "image": list(files.values())}))
        uploads.commit("plain", began["upload_id"])
    finally:
        uploads.close()
    assert kept_files(uri, "plain") == []
    with pytest.raises(Exception, match="thumbnails is true or false"):
        UploadOptions.parse({"thumbnails": "sometimes"})


@pytest.mark.s3
def test_thumbnails_are_kept_on_object_storage(s3_root: object, tmp_path: Path) -> None:
    """On an S3 root (a real S3-compatible server on loopback) the kept thumbnails are objects beside the table."""
    write_photos(tmp_path / "src", 2, size=(320, 240))
    uri, options = s3_root.uri, s3_root.options  # type: ignore[attr-defined]
    run_ingest(Store(uri, storage_options=options), IngestOptions(table="photos", sources=[str(tmp_path / "src")],
                                                                    progress=False))
    app = InProcess(uri, storage_options=options)
    try:
        http = app.http()
        ids = [r["id"] for r in http.post(f"{URL}/query", json={"columns": ["id"]}).json()["rows"]]
        got = http.post(f"{URL}/thumbnails", json={"ids": ids, "size": 256}).json()
        assert len(got["thumbnails"]) == 2 and not got["missing"]
        assert metric(http, "lightbox_thumbnail_renders_total") == 0
        assert metric(http, "lightbox_thumbnail_kept_reads_total") == 2
    finally:
        app.close()


def test_a_read_replica_reads_kept_thumbnails_but_writes_none(photos: dict) -> None:
    """A replica (``writer_url`` set) never writes to the data root: what it renders stays in its memory."""
    uri, files = photos["uri"], photos["files"]
    before = kept_files(uri)
    replica = InProcess(uri, writer_url="http://127.0.0.1:9")  # the writer is never asked: these are reads
    try:
        http = replica.http()
        name = next(iter(files))
        assert http.get(f"{URL}/rows/{name}/thumbnail", params={"size": 128}).content == render(files[name], 128)
        assert http.get(f"{URL}/rows/{name}/thumbnail", params={"size": 64}).content == render(files[name], 64)
        assert metric(http, "lightbox_thumbnail_kept_reads_total") == 1
        assert metric(http, "lightbox_thumbnail_renders_total") == 1
    finally:
        replica.close()
    assert kept_files(uri) == before
