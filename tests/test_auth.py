"""API keys: 401 without a key, 403 for a read-only key that writes, health stays open."""

from __future__ import annotations

from pathlib import Path

from app.auth import ApiKeys, is_read
from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest


def test_key_spec_parsing() -> None:
    keys = ApiKeys.parse(" admin , viewer:ro ,writer:rw ")
    assert keys is not None
    assert keys.access("admin") == "rw" and keys.access("writer") == "rw" and keys.access("viewer") == "ro"
    assert keys.access("nope") is None and keys.access(None) is None
    assert ApiKeys.parse("") is None and ApiKeys.parse(None) is None


def test_reads_that_are_posts_count_as_reads() -> None:
    assert is_read("POST", "/api/v1/tables/t/query") and is_read("POST", "/v1/table/t/count_rows/")
    assert is_read("GET", "/api/v1/tables") and not is_read("POST", "/api/v1/tables/t/rows")
    assert not is_read("DELETE", "/api/v1/tables/t") and not is_read("POST", "/api/v1/tables/t/tags")


def test_keys_guard_every_route_but_health(store: Store, samples_dir: Path, in_process) -> None:
    run_ingest(store, IngestOptions(table="pics", sources=[str(samples_dir)], progress=False))
    with in_process(store.uri, api_keys="secret,peek:ro").http() as client:
        assert client.get("/healthz").status_code == 200
        denied = client.get("/api/v1/tables")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        assert client.get("/api/v1/tables", headers={"x-api-key": "wrong"}).status_code == 401
        assert client.get("/api/v1/tables", headers={"x-api-key": "secret"}).status_code == 200
        assert client.get("/api/v1/tables", headers={"Authorization": "Bearer peek"}).status_code == 200
        peek = {"x-api-key": "peek"}
        image = client.get("/api/v1/tables/pics/rows/camera.png/image", headers=peek)
        assert image.status_code == 200 and image.content == (samples_dir / "camera.png").read_bytes()
        assert client.post("/api/v1/tables/pics/query", json={"limit": 1}, headers=peek).status_code == 200
        count = client.get("/api/v1/tables/pics/count", headers=peek).json()
        assert count == {"count": len(list(samples_dir.iterdir()))}
        forbidden = client.post("/api/v1/tables/pics/tags", json={"name": "x"}, headers=peek)
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
        assert client.delete("/api/v1/tables/pics", headers=peek).status_code == 403
        made = client.post("/api/v1/tables/pics/tags", json={"name": "x"}, headers={"x-api-key": "secret"})
        assert made.status_code == 201
