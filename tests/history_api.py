"""The version log and ``diff`` read through the HTTP API of an in-process app (``TestClient`` over
``create_app``, lifespan run), for the tests that hold the one to the other."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings

ARROW = "application/vnd.apache.arrow.stream"


@contextmanager
def in_process(uri: str) -> Iterator[TestClient]:
    """The service over ``uri`` in this process, its lifespan run (store, keeper, registry)."""
    settings = Settings(uri=uri, latest_refresh_seconds=0.0, warm_on_start=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def png(seed: int, size: tuple[int, int] = (8, 6)) -> bytes:
    """A small real PNG whose pixels (and so bytes) depend on ``seed``."""
    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    image.putpixel((seed % size[0], 0), (255 - (seed % 256), 0, 0))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def ok(response: Any, *codes: int) -> Any:
    assert response.status_code in (codes or (200, 201, 204)), response.text
    return response.json() if response.content else None


class Log:
    """One table's log entries and diffs."""

    def __init__(self, http: TestClient, table: str) -> None:
        self.http = http
        self.base = f"/api/v1/tables/{table}"

    def entries(self) -> list[dict[str, Any]]:
        """Every entry of main's log, newest first."""
        return ok(self.http.get(f"{self.base}/versions", params={"limit": 1000}))

    def head(self) -> int:
        return self.entries()[0]["version"]

    def since(self, version: int) -> list[dict[str, Any]]:
        """The entries of the versions after ``version``, oldest first."""
        return [e for e in reversed(self.entries()) if e["version"] > version]

    def diff(self, a: int | str, b: int | str) -> dict[str, Any]:
        return ok(self.http.get(f"{self.base}/diff", params={"from": str(a), "to": str(b), "limit": 100_000}))

    def check(self, since: int) -> list[dict[str, Any]]:
        """Every version after ``since``: its logged counts equal ``diff`` against the version before."""
        entries = self.since(since)
        previous = since
        for entry in entries:
            found = self.diff(previous, entry["version"])["counts"]
            logged = {"added": entry["rows_added"], "removed": entry["rows_removed"], "changed": entry["rows_updated"]}
            assert logged == found, (entry, found)
            previous = entry["version"]
        return entries
