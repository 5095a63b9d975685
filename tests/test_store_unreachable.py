"""A data root whose object store stops answering: every route is a 503 ``store_unreachable``, never a 500.

The server runs on an ``s3://`` root served by its own moto server (not the session's), which is
stopped under it. Lance retries a store that does not answer and then fails with an I/O error that
any engine call may raise; the service must tell the client what happened, in its error shape.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.store import Store
from app.store.outage import STORE_DEFAULTS
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import LiveServer

pytestmark = pytest.mark.s3
T = "/api/v1/tables/pics"


@pytest.fixture
def own_moto() -> object:
    pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    from tests.s3 import MotoS3

    server = MotoS3().start()
    yield server
    server.stop()  # stopping twice is harmless


def test_routes_answer_503_when_the_object_store_is_gone(own_moto: object, samples_dir: Path) -> None:
    root = own_moto.root()  # type: ignore[attr-defined]
    options = {**root.options, "client_max_retries": "0"}  # the test's own budget: fail fast
    store = Store(root.uri, storage_options=options)
    run_ingest(store, IngestOptions(table="pics", sources=[str(samples_dir)], tag="v1", progress=False))
    server = LiveServer(root.uri, storage_options=options).start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            first = client.post(f"{T}/query", json={"columns": ["id"], "limit": 1}).json()["rows"][0]["id"]
            assert client.get(f"{T}/rows/{first}").status_code == 200
            own_moto.stop()  # type: ignore[attr-defined]
            calls = [("GET", "/api/v1/tables", None), ("GET", T, None), ("GET", f"{T}/rows/{first}", None),
                     ("GET", f"{T}/rows/{first}/image", None), ("GET", f"{T}/versions", None),
                     ("GET", f"{T}/tags", None), ("GET", f"{T}/rows/{first}?tag=v1", None),
                     ("POST", f"{T}/query", {"limit": 5}), ("PATCH", f"{T}/rows/{first}", {"label": "x"}),
                     ("POST", f"{T}/tags", {"name": "v2"}), ("GET", "/readyz", None)]

            def call(method: str, path: str, body: object) -> httpx.Response:
                with httpx.Client(base_url=server.url, timeout=120) as own:  # a connection each, at once
                    return own.request(method, path, json=body)

            with ThreadPoolExecutor(len(calls)) as pool:
                answers = list(pool.map(lambda c: call(*c), calls))
            for (method, path, _), response in zip(calls, answers, strict=True):
                assert response.status_code == 503, (method, path, response.status_code, response.text)
                error = response.json()["error"]
                assert error["code"] == "store_unreachable", (path, error)
                assert "did not answer" in error["message"] and response.headers["retry-after"]
                assert root.options["secret_access_key"] not in response.text
            assert client.get("/healthz").status_code == 200  # the process itself is alive
    finally:
        server.stop()


def test_object_store_waits_are_bounded_unless_the_root_says_otherwise(tmp_path: Path) -> None:
    s3 = Store("s3://bucket/root", storage_options={"client_retry_timeout": "7", "region": "x"})
    assert s3.storage_options == {**STORE_DEFAULTS, "client_retry_timeout": "7", "region": "x"}
    assert Store(str(tmp_path)).storage_options is None  # local roots get no object-store options
