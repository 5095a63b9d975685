"""The read routes of the foundation through the service's app (in this process, no socket)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import InProcess
from tests.helpers import assert_error


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path, digits_dir: Path) -> Path:
    """Tables ``samples`` (tagged ``v1``) and ``digits`` (labels and metadata), built once for the module."""
    root = tmp_path_factory.mktemp("rows") / "data"
    store = Store(str(root))
    run_ingest(store, IngestOptions(table="samples", sources=[str(samples_dir)], tag="v1", progress=False))
    run_ingest(store, IngestOptions(table="digits", sources=[str(digits_dir / "images")], labels_from_dirs=True,
                                    metadata=str(digits_dir / "digits.csv"), key="file", progress=False))
    return root


@pytest.fixture
def served(built: Path, data_uri: str, in_process) -> Iterator[tuple[InProcess, httpx.Client]]:
    """A copy of the built root at ``data_uri`` (the ``store`` fixture's), served in this process."""
    shutil.copytree(built, data_uri)
    app = in_process(data_uri)
    with app.http(timeout=10) as client:
        yield app, client


def test_health(served: tuple[InProcess, httpx.Client]) -> None:
    _, client = served
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_list_and_describe_tables(served: tuple[InProcess, httpx.Client], samples_dir: Path) -> None:
    _, client = served
    tables = {t["name"]: t for t in client.get("/api/v1/tables").json()["tables"]}
    assert tables["samples"]["num_rows"] == len(list(samples_dir.iterdir()))
    assert tables["digits"]["num_rows"] == 200
    info = client.get("/api/v1/tables/digits")
    assert info.headers["x-lightbox-version"] == "1"
    body = info.json()
    columns = {c["name"]: c["type"] for c in body["schema"]}
    assert columns["image"] == "blob" and columns["label"] == "int64" and columns["ink"] == "double"
    assert client.get("/api/v1/tables/samples").json()["tags"] == {"v1": {"version": 1, "branch": None}}


def test_row_json_has_metadata_not_bytes(served: tuple[InProcess, httpx.Client]) -> None:
    _, client = served
    ids = [f"{lbl}/{i:05d}.png" for lbl, i in ((0, 0), (1, 1), (2, 2))]
    for row_id in ids:
        response = client.get(f"/api/v1/tables/digits/rows/{row_id}")
        assert response.status_code == 200, response.text
        row = response.json()
        assert row["id"] == row_id and row["label"] == int(row_id.split("/")[0])
        assert "image" not in row and row["image_url"].endswith(f"/rows/{row_id}/image")
        assert row["mime"] == "image/png" and row["width"] == 8 and row["split"] in ("train", "test")


def test_image_bytes_identical_with_headers(served: tuple[InProcess, httpx.Client], samples_dir: Path) -> None:
    _, client = served
    for path in sorted(samples_dir.iterdir()):
        response = client.get(f"/api/v1/tables/samples/rows/{path.name}/image")
        assert response.status_code == 200
        original = path.read_bytes()
        assert response.content == original, path.name
        digest = hashlib.sha256(original).hexdigest()
        assert response.headers["etag"] == f'"{digest}"'
        assert response.headers["x-lightbox-version"] == "1"
        assert response.headers["cache-control"] == "no-cache"
    assert client.get("/api/v1/tables/samples/rows/camera.png/image").headers["content-type"] == "image/png"
    assert client.get("/api/v1/tables/samples/rows/rocket.jpg/image").headers["content-type"] == "image/jpeg"
    assert client.get("/api/v1/tables/samples/rows/camera16.tif/image").headers["content-type"] == "image/tiff"


def test_pinned_reads_are_immutable(served: tuple[InProcess, httpx.Client]) -> None:
    _, client = served
    for query in ("?tag=v1", "?version=1"):
        response = client.get(f"/api/v1/tables/samples/rows/camera.png/image{query}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    row = client.get("/api/v1/tables/samples/rows/camera.png?tag=v1").json()
    assert row["image_url"].endswith("/image?tag=v1")


def test_if_none_match_gives_304(served: tuple[InProcess, httpx.Client]) -> None:
    _, client = served
    first = client.get("/api/v1/tables/samples/rows/camera.png/image")
    etag = first.headers["etag"]
    again = client.get("/api/v1/tables/samples/rows/camera.png/image", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    listed = client.get("/api/v1/tables/samples/rows/camera.png/image",
                        headers={"If-None-Match": f'"nope", W/{etag}'})
    assert listed.status_code == 304
    other = client.get("/api/v1/tables/samples/rows/camera.png/image", headers={"If-None-Match": '"nope"'})
    assert other.status_code == 200 and other.content == first.content


def test_range_requests(served: tuple[InProcess, httpx.Client], samples_dir: Path) -> None:
    _, client = served
    original = (samples_dir / "astronaut.png").read_bytes()
    size = len(original)
    url = "/api/v1/tables/samples/rows/astronaut.png/image"
    for header, expected, span in (
        ("bytes=0-7", original[:8], f"0-7/{size}"),
        ("bytes=100-199", original[100:200], f"100-199/{size}"),
        (f"bytes={size - 10}-", original[-10:], f"{size - 10}-{size - 1}/{size}"),
        ("bytes=-16", original[-16:], f"{size - 16}-{size - 1}/{size}"),
        (f"bytes=5-{size + 1000}", original[5:], f"5-{size - 1}/{size}"),
    ):
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == expected, header
        assert response.headers["content-range"] == f"bytes {span}"
    outside = client.get(url, headers={"Range": f"bytes={size}-{size + 5}"})
    assert outside.status_code == 416
    assert outside.headers["content-range"] == f"bytes */{size}"
    assert assert_error(outside, outside.status_code)["code"] == "range_not_satisfiable"
    ignored = client.get(url, headers={"Range": "bytes=0-1,5-6"})
    assert ignored.status_code == 200 and ignored.content == original


def test_not_found_errors_have_the_error_body(served: tuple[InProcess, httpx.Client]) -> None:
    _, client = served
    cases = [
        ("/api/v1/tables/nope", "table_not_found"),
        ("/api/v1/tables/nope/rows/a/b.png", "table_not_found"),
        ("/api/v1/tables/digits/rows/9/99999.png", "row_not_found"),
        ("/api/v1/tables/digits/rows/9/99999.png/image", "row_not_found"),
        ("/api/v1/tables/digits?version=42", "version_not_found"),
        ("/api/v1/tables/digits/rows/0/00000.png?tag=nope", "version_not_found"),
        ("/api/v1/tables/digits?branch=nope", "version_not_found"),
        ("/api/v1/tables/digits?as_of=2000-01-01T00:00:00Z", "version_not_found"),
        ("/api/v1/nothing-here", "not_found"),
    ]
    for url, code in cases:
        response = client.get(url)
        assert response.status_code == 404, url
        assert assert_error(response, response.status_code)["code"] == code, url


def test_bad_refs_are_400(served: tuple[InProcess, httpx.Client]) -> None:
    _, client = served
    for query in ("?version=1&tag=v1", "?version=abc", "?version=0", "?as_of=yesterday", "?branch=x&as_of=2020-01-01"):
        response = client.get(f"/api/v1/tables/samples{query}")
        assert response.status_code == 400, query
        assert assert_error(response, response.status_code)["code"] == "invalid_ref"
    bad_name = client.get("/api/v1/tables/..%2Fetc")
    assert bad_name.status_code in (400, 404)
    assert_error(bad_name, bad_name.status_code)


def test_as_of_picks_the_version_at_that_time(served: tuple[InProcess, httpx.Client]) -> None:
    _, client = served
    response = client.get("/api/v1/tables/digits?as_of=2999-01-01T00:00:00Z")
    assert response.status_code == 200 and response.json()["version"] == 1


def test_create_and_drop_table(served: tuple[InProcess, httpx.Client]) -> None:
    _, client = served
    created = client.post("/api/v1/tables", json={"name": "fresh", "schema": [{"name": "label", "type": "int64"}]})
    assert created.status_code == 201, created.text
    assert created.json() == {"name": "fresh", "version": 1, "num_rows": 0}
    again = client.post("/api/v1/tables", json={"name": "fresh"})
    assert again.status_code == 409 and assert_error(again, again.status_code)["code"] == "table_exists"
    bad = client.post("/api/v1/tables", json={"name": "no/slash"})
    assert bad.status_code == 400 and assert_error(bad, bad.status_code)["code"] == "invalid_name"
    bad_type = client.post("/api/v1/tables", json={"name": "x", "schema": [{"name": "a", "type": "nonsense"}]})
    assert bad_type.status_code == 400
    assert client.delete("/api/v1/tables/fresh").status_code == 204
    assert client.get("/api/v1/tables/fresh").status_code == 404
    assert client.delete("/api/v1/tables/fresh").status_code == 404


def test_server_sees_new_versions_written_elsewhere(
    served: tuple[InProcess, httpx.Client], store: Store, samples_dir: Path, tmp_path: Path
) -> None:
    _, client = served
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "again.png").write_bytes((samples_dir / "camera.png").read_bytes())
    run_ingest(Store(store.uri), IngestOptions(table="samples", sources=[str(extra)], progress=False))
    latest = client.get("/api/v1/tables/samples/rows/again.png")
    assert latest.status_code == 200 and latest.headers["x-lightbox-version"] == "2"
    old = client.get("/api/v1/tables/samples/rows/again.png?version=1")
    assert old.status_code == 404 and assert_error(old, old.status_code)["code"] == "row_not_found"
