"""The image fast path (``app.fast_image``): the same answers as the FastAPI route, and every production
middleware (keys, body limits, request ids, metrics, access log) still applies to what it serves."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.fast_image import FastImage
from tests.conftest import InProcess, Lines
from tests.helpers import assert_error, middleware, without_middleware

IMAGE = "/api/v1/tables/digits/rows/3/00003.png/image"
IMAGE_ROUTE = "/api/v1/tables/{table}/rows/{row_id:path}/image"


def test_only_memory_is_read_on_the_fast_path(in_process: Callable[..., InProcess], root: str) -> None:
    """A latest due for its refresh (here: always) is left to the route, which reads the store."""
    server = in_process(root)  # latest_refresh_seconds=0
    with server.http() as client:
        for _ in range(3):
            assert client.get(IMAGE).status_code == 200
    assert fast_path(server).served == 0


def fast_path(server: InProcess) -> FastImage:
    return middleware(server, FastImage)


def routed(server: InProcess) -> InProcess:
    """The same app without the fast path: the FastAPI route answers every image."""
    return without_middleware(server, FastImage)


def answer(client: httpx.Client, method: str, url: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    r = client.request(method, url, headers=headers)
    return r.status_code, {k: v for k, v in r.headers.items() if k != "x-request-id"}, r.content


def test_same_answers_as_the_route(in_process: Callable[..., InProcess], root: str) -> None:
    fast, slow = in_process(root, latest_refresh_seconds=60), routed(in_process(root, latest_refresh_seconds=60))
    with fast.http() as a, slow.http() as b:
        etag = a.get(IMAGE).headers["etag"]
        taken = fast_path(fast).served
        served_here = [
            ("GET", IMAGE, {}),
            ("GET", IMAGE + "?version=1", {}),
            ("GET", IMAGE, {"if-none-match": etag}),
            ("GET", IMAGE, {"if-none-match": f'"nope", W/{etag}'}),
            ("GET", IMAGE, {"if-none-match": '"nope"'}),
        ]
        for method, url, headers in served_here:
            mine = answer(a, method, url, headers)
            assert mine == answer(b, method, url, headers), (method, url, headers)
            assert mine[0] in (200, 304) and mine[1]["etag"] == etag
        assert fast_path(fast).served == taken + len(served_here)
        left_to_the_route = [
            ("GET", IMAGE + "?tag=v1", {}),  # resolving a tag reads the store
            ("GET", IMAGE, {"range": "bytes=0-9"}),
            ("GET", IMAGE + "?width=4", {}),
            ("GET", IMAGE + "?version=1&foo=bar", {}),
            ("GET", IMAGE + "?version=1&tag=v1", {}),
            ("GET", IMAGE + "?version=99", {}),
            ("GET", IMAGE + "?version=abc", {}),
            ("GET", "/api/v1/tables/digits/rows/nope.png/image", {}),
            ("GET", "/api/v1/tables/nope/rows/3/00003.png/image", {}),
            ("GET", "/api/v1/tables/digits/rows/3/00003.png%2Fimage", {}),  # the row ``3/00003.png/image``
            ("GET", "/api/v1/tables/digits/rows/3/%2E%2E/00003.png/image", {}),
            ("HEAD", IMAGE, {}),
        ]
        for method, url, headers in left_to_the_route:
            assert answer(a, method, url, headers) == answer(b, method, url, headers), (method, url, headers)
        assert fast_path(fast).served == taken + len(served_here)
        assert a.get(IMAGE, headers={"range": "bytes=0-9"}).status_code == 206
        assert_error(a.get("/api/v1/tables/digits/rows/nope.png/image"), 404, "row_not_found")
        assert_error(a.get(IMAGE + "?version=abc"), 400)


def served_count(client: httpx.Client, status: str) -> float:
    text = client.get("/metrics", headers={"x-api-key": "secret"}).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "lightbox_http_requests_total" and s.labels == {"method": "GET", "route": IMAGE_ROUTE,
                                                                             "status": status})


def test_production_middlewares_see_the_fast_path(in_process: Callable[..., InProcess], root: str,
                                                  access_lines: Lines) -> None:
    server = in_process(root, api_keys="secret,reader:ro", access_log="json", max_json_bytes=100,
                        latest_refresh_seconds=60)
    with server.http() as client:
        assert_error(client.get(IMAGE), 401, "unauthorized")
        assert_error(client.get(IMAGE, headers={"x-api-key": "wrong"}), 401, "unauthorized")
        assert client.get(IMAGE, headers={"x-api-key": "secret"}).status_code == 200  # the id index is built
        taken = fast_path(server).served
        ok = client.get(IMAGE, headers={"x-api-key": "reader", "x-request-id": "trace-fast"})
        assert ok.status_code == 200 and fast_path(server).served == taken + 1
        assert ok.headers["x-request-id"] == "trace-fast" and ok.headers["x-content-type-options"] == "nosniff"
        generated = client.get(IMAGE, headers={"x-api-key": "secret"}).headers["x-request-id"]
        assert len(generated) == 32 and int(generated, 16) >= 0
        fresh = client.get(IMAGE, headers={"x-api-key": "secret", "if-none-match": ok.headers["etag"]})
        assert fresh.status_code == 304 and fast_path(server).served == taken + 3
        # a GET that declares a body over the limit is refused before anything is read
        assert_error(client.request("GET", IMAGE, headers={"x-api-key": "secret"}, content=b"x" * 200), 413,
                     "payload_too_large")
        assert served_count(client, "200") == 3 and served_count(client, "304") == 1
    entry = next(json.loads(line) for line in access_lines.lines if "trace-fast" in line)
    assert entry["route"] == IMAGE_ROUTE and entry["status"] == 200 and entry["bytes"] == len(ok.content)
    assert entry["ts"].endswith("Z") and entry["method"] == "GET" and entry["path"] == IMAGE
