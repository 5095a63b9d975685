"""The example deployment (deploy/compose.yaml) parses, and each Lightbox service's environment is
settings this version accepts: one writer, replicas that name it, storage options for the S3 store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.settings import Settings

COMPOSE = Path(__file__).resolve().parent.parent / "deploy" / "compose.yaml"


def test_compose_file_is_one_writer_and_replicas_over_one_root(monkeypatch: pytest.MonkeyPatch) -> None:
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    lightbox = {name: s for name, s in services.items() if s.get("build")}
    writers = [n for n, s in lightbox.items() if "LIGHTBOX_WRITER_URL" not in s["environment"]]
    replicas = [n for n, s in lightbox.items() if "LIGHTBOX_WRITER_URL" in s["environment"]]
    assert writers == ["writer"] and len(replicas) == 2
    roots = set()
    for name, service in lightbox.items():
        for key in [k for k in os.environ if k.startswith("LIGHTBOX_")]:
            monkeypatch.delenv(key)
        for key, value in service["environment"].items():
            monkeypatch.setenv(key, str(value).replace("${LIGHTBOX_S3_PASSWORD:-change-me-please}", "x")
                               .replace("${LIGHTBOX_S3_USER:-lightbox}", "lightbox"))
        settings = Settings()
        roots.add(settings.uri)
        options = settings.resolved_storage_options()
        assert options["endpoint"] == "http://minio:9000" and options["allow_http"] == "true"
        if name in replicas:
            assert settings.writer_url == "http://writer:8000"
    assert roots == {"s3://lightbox/root"}
    nginx = (COMPOSE.parent / "nginx.conf").read_text()
    assert all(f"server {r}:8000" in nginx for r in replicas) and "writer" not in nginx.split("upstream")[1]
