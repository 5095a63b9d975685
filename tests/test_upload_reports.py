"""Uploads that write nothing are refused; partial ones say what they skipped; search says what is wrong.

Through a live server and the SDK: every file skipped is a 422 with each file's reason (and no new
version), the SDK raises it; some skipped is a 201 listing them, and the SDK warns; a non-image
uploaded to search gets a message a person can read.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import lightbox
from lightbox._calls import SkippedFiles

T = "/api/v1/tables/pics"


@pytest.fixture
def server_url(live_server, data_uri: str, samples_dir: Path) -> str:
    server = live_server(data_uri)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.post("/api/v1/tables", json={"name": "pics"}).status_code == 201
        horse = (samples_dir / "horse.png").read_bytes()
        assert http.post(f"{T}/rows", files=[("files", ("horse.png", horse, "image/png"))]).status_code == 201
    return server.url


def version(http: httpx.Client) -> int:
    return http.get(T).json()["version"]


def test_every_file_skipped_is_422_with_the_reasons(server_url: str, samples_dir: Path) -> None:
    horse = (samples_dir / "horse.png").read_bytes()
    with httpx.Client(base_url=server_url, timeout=60) as http:
        before = version(http)
        response = http.post(f"{T}/rows", files=[("files", ("notes.txt", b"just some text", "text/plain")),
                                                  ("files", ("horse.png", horse, "image/png"))])
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "unprocessable"
        assert "nothing was written" in error["message"] and "notes.txt" in error["message"]
        reasons = {s["file"]: s["reason"] for s in error["detail"]["skipped"]}
        assert reasons == {"notes.txt": reasons["notes.txt"], "horse.png": "duplicate_id"}
        assert reasons["notes.txt"] not in ("", None)
        assert version(http) == before  # nothing written, no version


def test_the_sdk_raises_when_nothing_was_written_and_warns_when_some_was(server_url: str,
                                                                         samples_dir: Path) -> None:
    table = lightbox.Client(server_url).table("pics")
    with pytest.raises(lightbox.Unprocessable) as raised:
        table.add([b"\x89PNG but not really", b"GIF89a nope"], ids=["bad1", "bad2"])
    assert raised.value.status == 422
    skipped = raised.value.detail["skipped"]
    assert len(skipped) == 2 and all(s["reason"] and s["message"] for s in skipped)
    assert table.count() == 1

    camera = (samples_dir / "camera.png").read_bytes()
    with pytest.warns(SkippedFiles, match=r"1 of the files were skipped: \w+: \w+ \(.+\)"):
        report = table.add([camera, b"not an image"], ids=["camera", "bad3"])
    assert report["inserted"] == 1
    assert len(report["skipped"]) == 1
    assert table.count() == 2


def test_a_non_image_uploaded_to_search_gets_a_readable_message(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=120) as http:
        assert http.post(f"{T}/embeddings", json={"model": "builtin"}).status_code == 201
        response = http.post(f"{T}/search", files={"image": ("q.txt", b"hello, not an image", "text/plain")})
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "BytesIO" not in message and "object at 0x" not in message
    assert "not an image" in message and "hello, not" in message
    with pytest.raises(lightbox.Unprocessable, match="not an image"):
        lightbox.Client(server_url).table("pics").search(image=b"hello, not an image")
