"""Small files that are huge in pixels: what a render or an ``/array`` makes the server hold.

The images are made here, small on disk and large decoded: a 6000² 16-bit zlib TIFF (72 MB of
pixels in ~100 KB), a 10-page one stored as one strip a page (so a page can only be decoded whole),
a 6000² JPEG and a 120-frame GIF. Each request's peak RSS growth is measured in this process (the
server runs in it) and bounded well under what decoding the whole image would cost.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.services.budget import MemoryBudget, OverBudget, RendersBusy
from app.settings import Settings
from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.helpers import assert_error
from tests.rss import MIB, peak_rss

SIDE = 6000
DEEP_BYTES = SIDE * SIDE * 2  # one 16-bit page, decoded
PAGES = 10
GIF_FRAMES, GIF_SIDE = 120, 400
ROW = "/api/v1/tables/big/rows/{id}"


def _deep_page() -> np.ndarray:
    """A horizontal ramp over a tenth of the 16-bit range (dark left, bright right), in 120 flat steps."""
    return np.tile(np.repeat(np.linspace(1000, 7000, 120).astype(np.uint16), SIDE // 120), (SIDE, 1))


def _images(folder: Path) -> Path:
    folder.mkdir()
    page = _deep_page()
    tifffile.imwrite(folder / "deep.tif", page, compression="zlib")  # strips of ~64 KB
    with tifffile.TiffWriter(folder / "pages.tif") as tif:  # one strip a page: a page decodes whole
        for _ in range(PAGES):
            tif.write(page, compression="zlib", rowsperstrip=SIDE)
    ramp = (page >> 5).astype(np.uint8)
    Image.fromarray(np.stack([ramp, ramp, ramp], axis=-1)).save(folder / "wide.jpg", quality=60)
    del page, ramp
    frames = []
    for i in range(GIF_FRAMES):
        pixels = np.full((GIF_SIDE, GIF_SIDE, 3), (i * 2) % 256, np.uint8)
        pixels[i:i + 10, :, 0] = 255  # a red band that moves down a row a frame
        frames.append(Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE, colors=4))
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=40)
    Image.new("L", (16, 16), 128).save(folder / "tiny.png")
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("pixel-memory")
    folder = _images(base / "images")
    assert (folder / "deep.tif").stat().st_size < DEEP_BYTES / 100  # each file a hundredth of its pixels
    assert (folder / "pages.tif").stat().st_size < PAGES * DEEP_BYTES / 100
    uri = str(base / "data")
    report = run_ingest(Store(uri), IngestOptions(table="big", sources=[str(folder)], progress=False))
    assert report.added == 5 and not report.skipped, report.skipped
    return uri


@pytest.fixture(scope="module")
def gif_path(root: str) -> Path:
    return Path(root).parent / "images" / "anim.gif"


def client(root: str, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(uri=root, warm_on_start=False, **settings)))  # type: ignore[arg-type]


def warm(http: httpx.Client | TestClient) -> None:
    """A render of a tiny image first: imports, the id map and the blob reader are then not counted."""
    assert http.get(ROW.format(id="tiny.png") + "/thumbnail", params={"size": 8}).status_code == 200


# -- renders decode no more than they need -------------------------------------------------------


def test_a_deep_tiff_resizes_from_every_nth_row_not_the_whole_page(root: str) -> None:
    with client(root) as http:
        warm(http)
        for path, size in (("/image?width=64", (64, 64)), ("/thumbnail?size=128", (128, 128))):
            with peak_rss() as peak:
                response = http.get(ROW.format(id="deep.tif") + path)
            assert response.status_code == 200, response.text
            img = Image.open(io.BytesIO(response.content)).convert("L")
            assert img.size == size
            pixels = np.asarray(img, dtype=np.float64)
            assert pixels[:, :8].mean() + 100 < pixels[:, -8:].mean()  # the ramp, stretched to 8 bits
            # the page is 72 MB decoded (and a float64 stretch of it 288 MB): a render holds a sliver
            assert peak.growth < DEEP_BYTES / 4, (path, peak.mib)


def test_a_large_jpeg_is_drafted_at_a_fraction_of_its_size(root: str) -> None:
    with client(root) as http:
        warm(http)
        with peak_rss() as peak:
            response = http.get(ROW.format(id="wide.jpg") + "/thumbnail", params={"size": 128})
        assert response.status_code == 200
        assert Image.open(io.BytesIO(response.content)).size == (128, 128)
        assert peak.growth < SIDE * SIDE * 4 / 4, peak.mib  # Pillow holds the full frame in 144 MB


# -- the memory budget ---------------------------------------------------------------------------


def test_a_render_larger_than_the_whole_budget_is_422(root: str) -> None:
    with client(root, decode_budget_bytes=32 * MIB) as http:
        body = assert_error(http.get(ROW.format(id="pages.tif") + "/thumbnail"), 422, "decode_budget_exceeded")
        assert body["detail"]["needed_bytes"] > 32 * MIB == body["detail"]["budget_bytes"]
        assert "LIGHTBOX_DECODE_BUDGET_BYTES" in body["message"]
        assert http.get(ROW.format(id="deep.tif") + "/thumbnail").status_code == 200  # strip by strip: fits


def test_a_render_that_cannot_get_room_soon_is_503_with_retry_after(root: str) -> None:
    with client(root, decode_budget_bytes=256 * MIB, decode_wait_seconds=0.2) as http:
        budget = http.app.state.decode_budget  # type: ignore[attr-defined]
        held = budget.reserve(budget.total - MIB)  # another render holds nearly all of it
        try:
            busy = http.get(ROW.format(id="pages.tif") + "/image", params={"width": 32})
            assert_error(busy, 503, "renders_busy")
            assert int(busy.headers["retry-after"]) >= 1
        finally:
            held.release()
        assert http.get(ROW.format(id="pages.tif") + "/image", params={"width": 32}).status_code == 200
        assert budget.used == 0


def test_only_a_few_renders_wait_for_room_at_once() -> None:
    """Each waiter holds a worker thread: past ``max_waiters`` a render is told to come back at once,
    not after the whole wait, so large renders cannot take every worker from the other reads."""
    budget = MemoryBudget(100, wait_seconds=60, max_waiters=1)
    held = budget.reserve(100)
    outcome: list[str] = []
    waiter = threading.Thread(target=lambda: outcome.append(type(_try(budget)).__name__))
    waiter.start()
    while budget.waiting < 1:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(RendersBusy):
        budget.reserve(10)
    assert time.monotonic() - started < 20  # refused at once, not after the 60 s wait
    with pytest.raises(OverBudget):
        budget.reserve(101)  # more than all of it: never waits
    held.release()
    waiter.join(10)
    assert outcome == ["Reservation"] and budget.used == 10 and budget.waiting == 0


def _try(budget: MemoryBudget) -> object:
    return budget.reserve(10)


def test_concurrent_renders_of_whole_pages_share_the_budget(root: str, in_process) -> None:
    budget = 160 * MIB  # one render of a page (held as one 72 MB strip) at a time
    server = in_process(root, decode_budget_bytes=budget, decode_wait_seconds=60)
    statuses: list[int] = []
    with server.http(timeout=120) as http:
        warm(http)

    def fetch(width: int) -> None:
        with server.http(timeout=120) as http:
            statuses.append(http.get(ROW.format(id="pages.tif") + "/image", params={"width": width}).status_code)

    with peak_rss() as peak:
        threads = [threading.Thread(target=fetch, args=(w,)) for w in (100, 200, 300)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert statuses == [200, 200, 200]
    assert peak.growth < budget + 100 * MIB, peak.mib  # three at once would hold about 3 x 140 MB


# -- /array: capped, one frame on request, streamed ----------------------------------------------


def test_array_of_many_frames_is_capped_and_one_frame_can_be_asked_for(root: str, gif_path: Path) -> None:
    whole = GIF_FRAMES * GIF_SIDE * GIF_SIDE * 3
    with client(root, max_array_bytes=16 * MIB) as http:
        body = assert_error(http.get(ROW.format(id="anim.gif") + "/array"), 422, "array_too_large")
        assert body["detail"]["bytes"] == whole and body["detail"]["frames"] == GIF_FRAMES
        assert "?frame=" in body["message"]
        one = http.get(ROW.format(id="anim.gif") + "/array", params={"frame": 7})
        assert one.status_code == 200, one.text
        got = np.load(io.BytesIO(one.content), allow_pickle=False)
        with Image.open(gif_path) as img:
            img.seek(7)
            assert np.array_equal(got, np.asarray(img.convert("RGB")))
        assert one.headers["x-lightbox-shape"] == f"{GIF_SIDE},{GIF_SIDE},3"
        assert_error(http.get(ROW.format(id="anim.gif") + "/array", params={"frame": GIF_FRAMES}), 400, "bad_request")
        page = assert_error(http.get(ROW.format(id="pages.tif") + "/array", params={"frame": 9}), 422,
                            "array_too_large")
        assert page["detail"]["bytes"] == DEEP_BYTES and "?frame=" not in page["message"]  # one page is over it too


def test_array_of_all_frames_streams_a_frame_at_a_time(root: str, gif_path: Path, in_process) -> None:
    server = in_process(root)
    whole = GIF_FRAMES * GIF_SIDE * GIF_SIDE * 3
    received = 0
    head = b""
    with server.http(timeout=120) as http, peak_rss() as peak:
        warm(http)
        with http.stream("GET", ROW.format(id="anim.gif") + "/array") as response:
            assert response.status_code == 200
            assert response.headers["x-lightbox-shape"] == f"{GIF_FRAMES},{GIF_SIDE},{GIF_SIDE},3"
            for chunk in response.iter_bytes():
                if len(head) < 4096:
                    head += chunk[:4096]
                received += len(chunk)
    stream = io.BytesIO(head)
    assert np.lib.format.read_magic(stream) == (1, 0)
    shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    assert shape == (GIF_FRAMES, GIF_SIDE, GIF_SIDE, 3) and dtype == np.uint8
    assert received == stream.tell() + whole
    assert peak.growth < whole / 4, peak.mib  # 57.6 MB answered; about a frame (0.5 MB) held at a time
    with server.sdk() as sdk, Image.open(gif_path) as img:  # the SDK asks for one frame too
        img.seek(GIF_FRAMES - 1)
        assert np.array_equal(sdk.table("big").array("anim.gif", frame=GIF_FRAMES - 1), np.asarray(img.convert("RGB")))
