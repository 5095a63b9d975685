"""Operations through the service's app (in this process): /metrics (Prometheus), API keys on it, JSON
access logs, resize on fetch, and search hits that link to their images."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app.access_log import LOGGERS, Batched
from tests.conftest import InProcess, Lines


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


IMAGE_ROUTE = "/api/v1/tables/{table}/rows/{row_id:path}/image"


def test_metrics_count_requests_caches_ingest_and_indexes(in_process: Callable[..., InProcess], root: str,
                                                          digits_dir: Path) -> None:
    server = in_process(root, warm_on_start=False, index_min_rows=50)  # digits' vectors get a Lance index
    with server.http() as http:
        for _ in range(3):
            assert http.get("/api/v1/tables/digits/rows/3/00003.png/image").status_code == 200
        assert http.get("/api/v1/tables/digits/rows/nope.png/image").status_code == 404
        assert http.get("/no/such/path").status_code == 404
        for _ in range(2):
            assert http.get("/api/v1/tables/digits/rows/3/00003.png/thumbnail", params={"size": 16}).status_code == 200
        for _ in range(2):
            r = http.post("/api/v1/tables/digits/search", json={"image_id": "3/00003.png", "k": 3})
            assert r.status_code == 200
        built = http.post("/api/v1/tables/digits/indexes", json={"column": "label", "type": "BTREE"})
        assert built.status_code == 201, built.text
        png = (digits_dir / "images" / "1/00001.png").read_bytes()
        up = http.post("/api/v1/tables/digits/rows", files=[("files", ("ops-new.png", png)),
                                                            ("files", ("bad.png", b"not an image"))])
        assert up.status_code == 201, up.text
        deadline = time.monotonic() + 60  # the vector index is built in the background
        while True:
            r = http.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            found = samples(r.text)
            if value(found, "lightbox_vector_index_builds_total") >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert value(found, "lightbox_http_requests_total", method="GET", route=IMAGE_ROUTE, status="200") == 3
    assert value(found, "lightbox_http_requests_total", method="GET", route=IMAGE_ROUTE, status="404") == 1
    assert value(found, "lightbox_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(found, "lightbox_http_request_duration_seconds_count", method="GET", route=IMAGE_ROUTE) == 4
    assert value(found, "lightbox_cache_hits_total", cache="thumbnails") == 1
    assert value(found, "lightbox_cache_misses_total", cache="thumbnails") == 1
    assert value(found, "lightbox_cache_hits_total", cache="id_maps") >= 4
    assert value(found, "lightbox_vector_index_builds_total") >= 1
    assert value(found, "lightbox_vector_index_build_seconds_total") > 0
    assert value(found, "lightbox_index_build_seconds_count", type="BTREE") == 1
    assert value(found, "lightbox_ingest_rows_total", table="digits", outcome="written") == 1
    assert value(found, "lightbox_ingest_rows_total", table="digits", outcome="skipped") == 1

    other = in_process(root, warm_on_start=False)  # a second app in the same process counts on its own
    fresh = samples(other.http().get("/metrics").text)
    assert value(fresh, "lightbox_http_requests_total", method="GET", route=IMAGE_ROUTE, status="200") == 0


def test_metrics_and_api_keys(in_process: Callable[..., InProcess], root: str) -> None:
    keyed = in_process(root, api_keys="secret,reader:ro").http()
    assert keyed.get("/metrics").status_code == 401
    assert keyed.get("/metrics", headers={"x-api-key": "reader"}).status_code == 200
    public = in_process(root, api_keys="secret", metrics_public=True).http()
    assert public.get("/metrics").status_code == 200
    assert public.get("/api/v1/tables").status_code == 401  # only /metrics is opened
    found = samples(public.get("/metrics").text)
    assert value(found, "lightbox_http_requests_total", method="GET", route="unmatched", status="401") == 1


def test_json_access_log(in_process: Callable[..., InProcess], root: str, access_lines: Lines) -> None:
    server = in_process(root, access_log="json")
    r = server.http().get("/api/v1/tables/digits/rows/3/00003.png", headers={"x-request-id": "trace-1"})
    assert r.status_code == 200
    deadline = time.monotonic() + 5  # the line is written once the last byte has gone
    while not any("trace-1" in line for line in access_lines.lines) and time.monotonic() < deadline:
        time.sleep(0.01)
    entries = [json.loads(line) for line in access_lines.lines]
    entry = next(e for e in entries if e["request_id"] == "trace-1")
    assert entry["method"] == "GET" and entry["status"] == 200 and entry["path"].endswith("/rows/3/00003.png")
    assert entry["route"] == "/api/v1/tables/{table}/rows/{row_id:path}" and entry["duration_ms"] > 0
    assert entry["bytes"] == len(r.content)


def test_text_access_log_is_uvicorns_line_written_in_batches(in_process: Callable[..., InProcess], root: str) -> None:
    lines = Lines()
    log = logging.getLogger(LOGGERS["text"])
    log.addHandler(lines)
    try:
        server = in_process(root, access_log="text")
        with server.http() as http:
            assert http.get("/api/v1/tables/digits/rows/3/00003.png", params={"w": "8"}).status_code == 200
            assert http.get("/api/v1/tables/nope").status_code == 404
        deadline = time.monotonic() + 5
        while len(lines.lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        log.removeHandler(lines)
    fetched = r'INFO: {5}\S+ - "GET /api/v1/tables/digits/rows/3/00003\.png\?w=8 HTTP/1\.1" 200 OK'
    assert re.fullmatch(fetched, lines.lines[0])
    assert lines.lines[1].endswith('"GET /api/v1/tables/nope HTTP/1.1" 404 Not Found')
    # the stream gets them together: one write for what came within a tenth of a second
    stream = io.StringIO()
    batched = Batched(stream)
    for n in range(3):
        batched.emit(logging.LogRecord("x", logging.INFO, __file__, 0, f"line {n}", None, None))
    assert stream.getvalue() == ""
    deadline = time.monotonic() + 5
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stream.getvalue() == "line 0\nline 1\nline 2\n"


def test_resize_on_fetch(in_process: Callable[..., InProcess], root: str, digits_dir: Path) -> None:
    server = in_process(root)
    original = Image.open(digits_dir / "images" / "3/00003.png")
    assert original.size == (8, 8)
    url = f"{server.url}/api/v1/tables/digits/rows/3/00003.png/image"
    with server.http() as http:
        r = http.get(url, params={"width": 4})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (4, 4)
        again = http.get(url, params={"width": 4})
        assert again.content == r.content and again.headers["etag"] == r.headers["etag"]
        assert http.get(url, params={"width": 4}, headers={"if-none-match": r.headers["etag"]}).status_code == 304
        webp = http.get(url, params={"height": 2, "format": "webp", "tag": "v1"})
        assert webp.headers["content-type"] == "image/webp" and "immutable" in webp.headers["cache-control"]
        assert Image.open(io.BytesIO(webp.content)).size == (2, 2)
        big = http.get(url, params={"width": 100})  # never enlarged
        assert Image.open(io.BytesIO(big.content)).size == (8, 8)
        for params in ({"width": 0}, {"width": "abc"}, {"height": 5000}, {"format": "gif"}, {"width": -3}):
            bad = http.get(url, params=params)
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request", params
        assert http.get(url).content == (digits_dir / "images" / "3/00003.png").read_bytes()
        found = samples(http.get(f"{server.url}/metrics").text)
    assert value(found, "lightbox_cache_hits_total", cache="thumbnails") == 1  # the repeat; the 304 renders nothing
    assert value(found, "lightbox_cache_misses_total", cache="thumbnails") == 3


def test_search_hits_carry_image_url(in_process: Callable[..., InProcess], root: str, digits_dir: Path) -> None:
    server = in_process(root)
    with server.http() as http:
        hits = http.post("/api/v1/tables/digits/search", params={"tag": "v1"},
                         json={"image_id": "3/00003.png", "k": 3}).json()["hits"]
        assert len(hits) == 3
        for hit in hits:
            assert hit["image_url"].endswith("/image?tag=v1")
            assert http.get(hit["image_url"]).content == (digits_dir / "images" / hit["id"]).read_bytes()


def test_service_sets_arrows_memory_pool_while_it_runs(root: str) -> None:
    """While the service runs Arrow allocates from glibc (app/arrow_pool.py); once it stops, the process has the
    pool it had before, and ``arrow_memory_pool="default"`` leaves it alone."""
    import pyarrow as pa

    original = pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    try:
        server = InProcess(root, warm_on_start=False)
        try:
            with server.http() as http:  # the lifespan starts with the first request
                assert http.get("/api/v1/tables").status_code == 200
            assert pa.default_memory_pool().backend_name == "system"
        finally:
            server.close()
        assert pa.default_memory_pool().backend_name == "mimalloc"
        kept = InProcess(root, warm_on_start=False, arrow_memory_pool="default")
        try:
            with kept.http() as http:
                assert http.get("/api/v1/tables").status_code == 200
            assert pa.default_memory_pool().backend_name == "mimalloc"
        finally:
            kept.close()
    finally:
        pa.set_memory_pool(original)
