"""Limits that hold before memory is spent: body sizes, stalled requests, slow clients.

A real server on loopback with small limits (the socket is the point here), one for the module: every
body is refused (413, the error shape) before it is read whole, whether its size is declared or it
streams chunked; half-sent requests are closed within the configured bound while other clients keep
being served.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.helpers import arrow_stream, assert_error

T = "/api/v1/tables/pics"
JSON_LIMIT = 64 * 1024
BIG = 20 * 1024**2  # the 20 MiB JSON body a client may send


def big_json() -> bytes:
    """A 20 MiB JSON object that parses: a filter string padded with spaces."""
    head, tail = b'{"filter": "id = \'x\'', b'", "limit": 1}'
    return head + b" " * (BIG - len(head) - len(tail)) + tail


def chunks(body: bytes, size: int = 1024**2) -> Iterator[bytes]:
    """A generator body: httpx sends it chunked, with no Content-Length to refuse early."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Iterator[LiveServer]:
    """Table ``pics`` with one row (``horse.png``), served with small limits and short timeouts."""
    live = LiveServer(str(tmp_path_factory.mktemp("limits") / "data"), max_json_bytes=JSON_LIMIT,
                      max_upload_bytes=4 * 1024**2, header_timeout_seconds=1.0, body_timeout_seconds=1.0,
                      keep_alive_seconds=1).start()
    with httpx.Client(base_url=live.url, timeout=60) as http:
        assert http.post("/api/v1/tables", json={"name": "pics"}).status_code == 201
        horse = (samples_dir / "horse.png").read_bytes()
        assert http.post(f"{T}/rows", files=[("files", ("horse.png", horse, "image/png"))]).status_code == 201
    yield live
    live.stop()


@pytest.fixture
def limited(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


ROUTES = [(f"{T}/query", {"filter": "id = 'horse.png'"}), ("/v1/table/pics/count_rows", {})]


@pytest.mark.parametrize(("path", "fine"), ROUTES)
def test_big_json_is_413_before_it_is_read(limited: httpx.Client, path: str, fine: dict[str, Any]) -> None:
    body = big_json()
    declared = limited.post(path, content=body, headers={"content-type": "application/json"})
    error = assert_error(declared, 413, "payload_too_large")
    assert error["detail"] == {"limit": JSON_LIMIT}
    streamed = limited.post(path, content=chunks(body), headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "payload_too_large")
    no_type = limited.post(path, content=chunks(body))  # no Content-Type: still the JSON limit
    assert_error(no_type, 413, "payload_too_large")
    # a declared size over the limit is refused before a byte of the body is sent
    url = httpx.URL(str(limited.base_url))
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     f"content-length: {BIG}\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    # the same connection and server still answer a body under the limit
    ok = limited.post(path, json=fine)
    assert ok.status_code == 200, ok.text


def test_uploads_keep_their_own_larger_limit(limited: httpx.Client, samples_dir: Path) -> None:
    camera = (samples_dir / "camera.png").read_bytes()
    assert JSON_LIMIT < len(camera) < 4 * 1024**2
    ok = limited.post(f"{T}/rows", files=[("files", ("camera.png", camera, "image/png"))])
    assert ok.status_code == 201, ok.text
    # a JSON body dressed as nothing in particular does not get the upload limit
    assert_error(limited.post(f"{T}/query", content=b"{" + b" " * JSON_LIMIT + b"}",
                              headers={"content-type": "text/plain"}), 413, "payload_too_large")
    over = limited.post(f"{T}/rows", content=chunks(b"\0" * (5 * 1024**2)),
                        headers={"content-type": "application/vnd.apache.arrow.stream"})
    assert_error(over, 413, "payload_too_large")


def json_as(size: int) -> bytes:
    """A JSON object of ``size`` bytes that parses (a filter padded with spaces)."""
    head, tail = b'{"predicate": "id = \'x\'', b'"}'
    return head + b" " * (size - len(head) - len(tail)) + tail


DECLARED = ["image/png", "application/octet-stream", "multipart/form-data; boundary=x"]
PARSERS = ("/v1/table/pics/count_rows/", f"{T}/query", f"{T}/annotations", f"{T}/search")
JSON_ROUTES = [(path, declared) for path in PARSERS
               for declared in DECLARED if not (path.endswith("/search") and declared.startswith("multipart/"))]


@pytest.mark.parametrize(("path", "declared"), JSON_ROUTES)  # search takes an image as multipart: an upload
def test_a_json_route_holds_the_json_limit_whatever_the_declared_type(limited: httpx.Client, path: str,
                                                                      declared: str) -> None:
    """A route that parses JSON (or does not take an upload) never gets the upload limit because the
    client named an upload type: the body is refused at the JSON limit, declared or streamed."""
    body = json_as(1024**2)  # over the JSON limit, under the upload limit
    error = assert_error(limited.post(path, content=body, headers={"content-type": declared}), 413,
                         "payload_too_large")
    assert error["detail"] == {"limit": JSON_LIMIT}
    streamed = limited.post(path, content=chunks(body, 64 * 1024), headers={"content-type": declared})
    assert_error(streamed, 413, "payload_too_large")
    assert limited.post("/v1/table/pics/count_rows/", json={"predicate": "id = 'horse.png'"}).json() == 1


def test_arrow_writes_keep_the_upload_limit(limited: httpx.Client) -> None:
    import pyarrow as pa

    body = arrow_stream(pa.table({"id": [f"r{i}" for i in range(200)], "note": ["x" * 1000] * 200}))
    assert JSON_LIMIT < len(body) < 4 * 1024**2
    made = limited.post("/v1/table/notes/create/", content=body,
                        headers={"content-type": "application/vnd.apache.arrow.stream"})
    assert made.status_code == 200, made.text
    assert limited.post("/v1/table/notes/count_rows/", json={}).json() == 200


def test_a_stalled_body_is_408_and_closed(limited: httpx.Client) -> None:
    url = httpx.URL(str(limited.base_url))
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/tables/pics/query HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 1000\r\n\r\n{\"filter\": ")
        started = time.monotonic()
        answer = read_until_closed(sock)
        assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code":"request_timeout"' in answer
    assert limited.get("/healthz").status_code == 200


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_half_sent_requests_are_closed_within_the_bound(limited: httpx.Client) -> None:
    url = httpx.URL(str(limited.base_url))
    halves = [b"", b"GET /api/v1/tab", b"GET /api/v1/tables HTTP/1.1\r\nhost: x\r\n",
              b"POST /api/v1/tables/pics/query HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n"]
    socks = []
    for i in range(200):  # the 200 half-sent requests a hostile client holds open
        sock = socket.create_connection((url.host, url.port), timeout=10)
        sock.sendall(halves[i % len(halves)])
        socks.append(sock)
    started = time.monotonic()
    # others are served meanwhile
    assert limited.get("/api/v1/tables").status_code == 200
    # a slow client trickling its headers byte by byte is cut off at the same deadline
    trickle = socket.create_connection((url.host, url.port), timeout=10)
    trickle_started, cut_off = time.monotonic(), False
    for byte in b"GET /api/v1/tables HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 100:
        try:
            trickle.sendall(bytes([byte]))
        except OSError:
            cut_off = True
            break
        time.sleep(0.1)
    assert cut_off and time.monotonic() - trickle_started < 4
    trickle.close()
    answers = []
    for sock in socks:
        answers.append(read_until_closed(sock))
        sock.close()
    assert time.monotonic() - started < 8
    assert answers[0] == b""  # a connection that sent nothing is closed without an answer
    for answer in answers[1:4]:
        assert answer.startswith(b"HTTP/1.1 408") and b'"code":"request_timeout"' in answer, answer[:200]
    assert limited.get("/api/v1/tables").status_code == 200


def test_a_head_over_the_size_cap_is_431(limited: httpx.Client) -> None:
    url = httpx.URL(str(limited.base_url))
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/tables HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * (70 * 1024))
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert limited.get("/healthz").status_code == 200
