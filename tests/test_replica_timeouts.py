"""A read replica whose writer stops answering, writes sent again with an Idempotency-Key, and a replica
that serves open reads for a writer that requires keys.

The writer is a real ``lightbox serve`` frozen with SIGSTOP (the replica in this process cannot tell
it from a partitioned or overloaded one). The replica must answer 504 ``writer_timeout`` within its
bound, go on serving reads, and a write sent again with the same key after the writer resumes must
be applied once whatever happened to the first.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.serve_procs import ServeProcess

T = "/api/v1/tables/pics"


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (4, 4), value).save(out, format="PNG")
    return out.getvalue()


def upload(client: httpx.Client, key: str, value: int, idempotency: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": idempotency} if idempotency else {}
    return client.post(f"{T}/rows", files=[("files", (key, png(value), "image/png"))], headers=headers)


def copies(client: httpx.Client, key: str) -> int:
    return client.get(f"{T}/count", params={"filter": f"id = '{key}'"}).json()["count"]


@pytest.fixture
def root(store: Store, samples_dir: Path) -> str:
    run_ingest(store, IngestOptions(table="pics", sources=[str(samples_dir)], progress=False))
    return store.uri


def test_a_frozen_writer_is_a_504_and_a_write_sent_again_applies_once(root: str, tmp_path: Path,
                                                                       tuned_server) -> None:
    writer = ServeProcess(root, log=tmp_path / "writer.log").wait_ready()
    try:
        replica = tuned_server(root, writer_url=writer.url, writer_timeout_seconds=2.0)
        with httpx.Client(base_url=replica.url, timeout=60) as client:
            assert upload(client, "before.png", 1).status_code == 201  # forwarding works
            os.kill(writer.proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                late = upload(client, "late.png", 2, idempotency="late-1")
                waited = time.monotonic() - started
                assert late.status_code == 504, late.text
                error = late.json()["error"]
                assert error["code"] == "writer_timeout" and "may still be applied" in error["message"], error
                assert waited < 30, waited  # bounded by the setting (2 s), not by the client's patience
                assert client.get(f"{T}/rows/before.png").status_code == 200  # reads go on
            finally:
                os.kill(writer.proc.pid, signal.SIGCONT)
            for _ in range(100):  # sent again with the same key: applied once, whatever the first did
                again = upload(client, "late.png", 2, idempotency="late-1")
                if again.status_code != 409:  # 409: the first is still running on the resumed writer
                    break
                time.sleep(0.1)
            assert again.status_code == 201, again.text
            assert copies(client, "late.png") == 1
            twice = upload(client, "late.png", 2, idempotency="late-1")
            assert twice.status_code == 201 and twice.headers["idempotent-replayed"] == "true"
            assert twice.json() == again.json()
            other = client.patch(f"{T}/rows/late.png", json={"source": "x"}, headers={"Idempotency-Key": "late-1"})
            assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    finally:
        writer.stop()


def test_a_json_write_sent_again_is_answered_not_applied(root: str, live_server) -> None:
    server = live_server(root)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        key = {"Idempotency-Key": "patch-1"}
        first = client.patch(f"{T}/rows/camera.png", json={"source": "one"}, headers=key)
        assert first.status_code == 200 and "idempotent-replayed" not in first.headers
        versions = len(client.get(f"{T}/versions").json())
        again = client.patch(f"{T}/rows/camera.png", json={"source": "one"}, headers=key)
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json() and len(client.get(f"{T}/versions").json()) == versions
        changed = client.patch(f"{T}/rows/camera.png", json={"source": "two"}, headers=key)
        assert changed.status_code == 422, changed.text
        failed = client.patch(f"{T}/rows/nope.png", json={"source": "x"}, headers={"Idempotency-Key": "p2"})
        assert failed.status_code == 404  # a failed write is not remembered: sent again, it runs again
        assert client.patch(f"{T}/rows/nope.png", json={"source": "x"},
                            headers={"Idempotency-Key": "p2"}).status_code == 404


def test_a_replica_without_keys_for_a_writer_with_keys_says_so(root: str, tuned_server,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    writer = tuned_server(root, api_keys="writer-secret")
    with caplog.at_level(logging.WARNING, logger="lightbox"):
        replica = tuned_server(root, writer_url=writer.url)
    ready = httpx.get(f"{replica.url}/readyz", timeout=30).json()
    assert any("no API keys" in w for w in ready.get("warnings", [])), ready
    assert any("no API keys" in r.getMessage() for r in caplog.records)
    keyed = tuned_server(root, writer_url=writer.url, api_keys="writer-secret")  # the same keys: nothing to say
    assert "warnings" not in httpx.get(f"{keyed.url}/readyz", timeout=30, headers={"x-api-key": "writer-secret"}).json()
