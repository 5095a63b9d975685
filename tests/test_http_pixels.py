"""Decoded pixels (``/array``) and thumbnails through the service's app (in this process), checked
against Pillow/tifffile."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import lance
import numpy as np
import pyarrow as pa
import pytest
import tifffile
from PIL import Image

from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import InProcess

ROWS = "/api/v1/tables/{table}/rows/{id}"


def _extras(folder: Path) -> Path:
    """Images the sample set lacks: CMYK JPEG, palette PNG with transparency, LA PNG, 16-bit PNG,
    an animated GIF with transparency."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    rgb = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=90)
    indices = rng.integers(1, 16, size=(40, 60), dtype=np.uint8)
    indices[:, :20] = 0  # the left third is the transparent colour
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette(list(rng.integers(0, 256, size=48, dtype=np.uint8)))
    palette.save(folder / "palette.png", transparency=0)
    Image.fromarray(np.stack([rgb[..., 0], rgb[..., 1]], axis=-1), mode="LA").save(folder / "la.png")
    Image.fromarray((rng.random((30, 20)) * 65535).astype(np.uint16)).save(folder / "deep.png")
    frames = [Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8))
              .convert("P", palette=Image.Palette.ADAPTIVE, colors=8) for _ in range(3)]
    frames[0].save(folder / "alpha.gif", save_all=True, append_images=frames[1:], duration=50, loop=0,
                   disposal=2, transparency=0)
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> str:
    base = tmp_path_factory.mktemp("pixels")
    uri = str(base / "data")
    store = Store(uri)
    report = run_ingest(store, IngestOptions(table="samples", sources=[str(samples_dir)], progress=False))
    assert not report.skipped
    extras = run_ingest(store, IngestOptions(table="extras", sources=[str(_extras(base / "extras"))], progress=False))
    assert extras.added == 5 and not extras.skipped
    store.create("plain", pa.schema([pa.field("id", pa.string()), pa.field("v", pa.int64())]))
    lance.write_dataset(pa.table({"id": ["a"], "v": [1]}), store.table_uri("plain"), mode="append")
    return uri


@pytest.fixture(scope="module")
def extras_dir(root: str) -> Path:
    return Path(root).parent / "extras"


@pytest.fixture
def client(app: InProcess) -> Iterator[httpx.Client]:
    with app.http(timeout=30) as c:
        yield c


def get_array(client: httpx.Client, table: str, row_id: str) -> np.ndarray:
    response = client.get(ROWS.format(table=table, id=row_id) + "/array")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    array = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert response.headers["x-lightbox-dtype"] == str(array.dtype)
    assert response.headers["x-lightbox-shape"] == ",".join(map(str, array.shape))
    return array


def pillow_frames(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as img:
        frames = []
        for i in range(img.n_frames):
            img.seek(i)
            frames.append(np.asarray(img.convert(mode)))
    return np.stack(frames)


def assert_same(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)


# -- arrays ---------------------------------------------------------------------------------------


def test_png_arrays_keep_dtype_and_shape(client: httpx.Client, samples_dir: Path, extras_dir: Path) -> None:
    camera = get_array(client, "samples", "camera.png")
    assert camera.dtype == np.uint8 and camera.shape == (512, 512)
    assert_same(camera, np.asarray(Image.open(samples_dir / "camera.png")))
    astronaut = get_array(client, "samples", "astronaut.png")
    assert astronaut.shape == (512, 512, 3)
    assert_same(astronaut, np.asarray(Image.open(samples_dir / "astronaut.png")))
    horse = get_array(client, "samples", "horse.png")
    assert horse.shape == (328, 400, 4)
    assert_same(horse, np.asarray(Image.open(samples_dir / "horse.png")))
    deep = get_array(client, "extras", "deep.png")  # 16-bit PNG stays 16-bit
    assert deep.dtype == np.uint16 and deep.shape == (30, 20) and deep.max() > 255
    assert_same(deep, np.asarray(Image.open(extras_dir / "deep.png")))
    la = get_array(client, "extras", "la.png")
    assert_same(la, np.asarray(Image.open(extras_dir / "la.png")))
    assert la.shape == (40, 60, 2)
    palette = get_array(client, "extras", "palette.png")  # palette + transparency: RGBA pixels, not indices
    assert_same(palette, np.asarray(Image.open(extras_dir / "palette.png").convert("RGBA")))
    assert (palette[..., 3] == 0).any() and (palette[..., 3] == 255).any()


def test_tiff_arrays_keep_dtype_and_pages(client: httpx.Client, samples_dir: Path) -> None:
    deep = get_array(client, "samples", "camera16.tif")
    assert deep.dtype == np.uint16 and deep.shape == (512, 512)
    assert_same(deep, tifffile.imread(samples_dir / "camera16.tif"))
    assert deep.max() > 255
    pages = get_array(client, "samples", "multipage.tif")
    assert pages.shape == (2, 15, 10) and pages.dtype == np.uint8
    assert_same(pages, tifffile.imread(samples_dir / "multipage.tif", key=range(2)))
    assert not np.array_equal(pages[0], pages[1])
    float_pages = get_array(client, "samples", "multipage_rgb.tif")
    expected = tifffile.imread(samples_dir / "multipage_rgb.tif", key=range(2))
    assert float_pages.dtype == np.float64 and float_pages.shape[0] == 2
    assert_same(float_pages, expected)


def test_gif_and_jpeg_arrays(client: httpx.Client, samples_dir: Path, extras_dir: Path) -> None:
    gif = get_array(client, "samples", "no_time_for_that_tiny.gif")
    assert gif.shape == (24, 25, 14, 3)  # frames x H x W x C
    assert_same(gif, pillow_frames(samples_dir / "no_time_for_that_tiny.gif", "RGB"))
    alpha = get_array(client, "extras", "alpha.gif")
    assert alpha.shape == (3, 12, 16, 4)
    assert_same(alpha, pillow_frames(extras_dir / "alpha.gif", "RGBA"))
    rocket = get_array(client, "samples", "rocket.jpg")
    assert rocket.shape == (427, 640, 3)
    assert_same(rocket, np.asarray(Image.open(samples_dir / "rocket.jpg")))
    cmyk = get_array(client, "extras", "cmyk.jpg")
    assert_same(cmyk, np.asarray(Image.open(extras_dir / "cmyk.jpg")))
    assert cmyk.shape == (40, 60, 4)
    for name in ("camera.webp", "camera.bmp"):
        assert_same(get_array(client, "samples", name), np.asarray(Image.open(samples_dir / name)))


def test_array_errors_are_404(client: httpx.Client) -> None:
    missing = client.get(ROWS.format(table="samples", id="nope.png") + "/array")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "row_not_found"
    no_image = client.get(ROWS.format(table="plain", id="a") + "/array")
    assert no_image.status_code == 404 and no_image.json()["error"]["code"] == "no_image"
    assert client.get(ROWS.format(table="plain", id="a") + "/thumbnail").status_code == 404
    assert client.get(ROWS.format(table="plain", id="a")).json() == {"id": "a", "v": 1}


# -- thumbnails -----------------------------------------------------------------------------------


def thumbnail(client: httpx.Client, table: str, row_id: str, **params: Any) -> tuple[Image.Image, httpx.Response]:
    response = client.get(ROWS.format(table=table, id=row_id) + "/thumbnail", params=params)
    assert response.status_code == 200, (row_id, params, response.text)
    img = Image.open(io.BytesIO(response.content))
    img.load()
    return img, response


def test_thumbnails_for_every_format(client: httpx.Client, samples_dir: Path, extras_dir: Path) -> None:
    names = [("samples", p.name) for p in sorted(samples_dir.iterdir())]
    names += [("extras", p.name) for p in sorted(extras_dir.iterdir())]
    suffixes = {Path(n).suffix for _, n in names}
    assert {".png", ".jpg", ".gif", ".tif", ".webp", ".bmp"} <= suffixes
    for table, name in names:
        row = client.get(ROWS.format(table=table, id=name)).json()
        long_side = max(row["width"], row["height"])
        for size in (16, 64, 256):
            img, response = thumbnail(client, table, name, size=size)
            assert max(img.size) <= size, (name, size, img.size)
            assert max(img.size) == min(size, long_side), (name, size, img.size)
            media = response.headers["content-type"]
            assert media in ("image/jpeg", "image/png"), name
            assert img.format == {"image/jpeg": "JPEG", "image/png": "PNG"}[media]
            assert response.headers["x-lightbox-version"] == "1"
        default, _ = thumbnail(client, table, name)
        assert max(default.size) == min(256, long_side)


def test_thumbnails_render_deep_and_odd_images_visibly(client: httpx.Client) -> None:
    for table, name in (("samples", "camera16.tif"), ("samples", "multipage_rgb.tif"), ("extras", "deep.png"),
                        ("extras", "cmyk.jpg")):
        img, _ = thumbnail(client, table, name, size=64)
        pixels = np.asarray(img.convert("L"), dtype=np.float64)
        assert pixels.std() > 5, name  # stretched to 8 bits, not a flat black or white square
    cmyk, response = thumbnail(client, "extras", "cmyk.jpg", size=64)
    assert cmyk.mode == "RGB" and response.headers["content-type"] == "image/jpeg"
    horse, response = thumbnail(client, "samples", "horse.png", size=64)  # alpha: PNG by default
    assert response.headers["content-type"] == "image/png" and horse.mode == "RGBA"
    palette, response = thumbnail(client, "extras", "palette.png", size=32)
    assert response.headers["content-type"] == "image/png" and palette.mode == "RGBA"
    alpha = np.asarray(palette)[..., 3]
    assert alpha[:, :8].max() == 0 and alpha[:, -8:].min() == 255  # the transparent third stays transparent
    la, response = thumbnail(client, "extras", "la.png", size=32)
    assert response.headers["content-type"] == "image/png" and la.mode == "LA"
    camera, response = thumbnail(client, "samples", "camera.png", size=32)
    assert response.headers["content-type"] == "image/jpeg" and camera.mode == "L"


def test_thumbnail_format_is_honoured(client: httpx.Client) -> None:
    for name in ("camera.png", "horse.png", "camera16.tif", "no_time_for_that_tiny.gif"):
        for fmt, pil, media in (("png", "PNG", "image/png"), ("webp", "WEBP", "image/webp"),
                                ("jpeg", "JPEG", "image/jpeg")):
            img, response = thumbnail(client, "samples", name, size=48, format=fmt)
            assert response.headers["content-type"] == media, (name, fmt)
            assert img.format == pil and max(img.size) <= 48
    jpeg_of_alpha, _ = thumbnail(client, "samples", "horse.png", size=48, format="jpeg")
    assert jpeg_of_alpha.mode == "RGB"


def test_bad_thumbnail_requests_are_400_or_404(client: httpx.Client) -> None:
    url = ROWS.format(table="samples", id="camera.png") + "/thumbnail"
    for query in ("?size=0", "?size=7", "?size=-5", "?size=5000", "?size=abc", "?size=1e3", "?format=gif",
                  "?format=", "?size=99999999999999999999999"):
        response = client.get(url + query)
        assert response.status_code == 400, (query, response.text)
        assert set(response.json()) == {"error"}
    assert client.get(url + "?size=8").status_code == 200
    assert client.get(url + "?size=2048").status_code == 200
    missing = client.get(ROWS.format(table="samples", id="nope.png") + "/thumbnail")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "row_not_found"


def test_thumbnail_etag_and_304(client: httpx.Client) -> None:
    url = ROWS.format(table="samples", id="astronaut.png") + "/thumbnail"
    first = client.get(url, params={"size": 64})
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert first.headers["cache-control"] == "no-cache"
    again = client.get(url, params={"size": 64})
    assert again.headers["etag"] == etag and again.content == first.content
    cached = client.get(url, params={"size": 64}, headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag
    weak = client.get(url, params={"size": 64}, headers={"If-None-Match": f'"other", W/{etag}'})
    assert weak.status_code == 304
    other_size = client.get(url, params={"size": 65}, headers={"If-None-Match": etag})
    assert other_size.status_code == 200 and other_size.headers["etag"] != etag
    other_format = client.get(url, params={"size": 64, "format": "webp"}, headers={"If-None-Match": etag})
    assert other_format.status_code == 200 and other_format.headers["etag"] != etag
    stale = client.get(url, params={"size": 64}, headers={"If-None-Match": '"not-it"'})
    assert stale.status_code == 200 and stale.content == first.content
    pinned = client.get(url, params={"size": 64, "version": 1})
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert pinned.headers["etag"] == etag
