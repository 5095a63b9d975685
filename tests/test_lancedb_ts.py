"""The official LanceDB TypeScript client (``@lancedb/lancedb``, pinned in tests/ts/package.json) against
a real Lightbox server on loopback: ``tests/ts/conformance.mjs`` runs the scenario with node and
prints each step's answer, checked here against the native API.

``make test`` installs the client into tests/ts/node_modules (``npm ci`` from the committed lock).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from tests.conftest import LiveServer

TS_DIR = Path(__file__).resolve().parent / "ts"
CLIENT = TS_DIR / "node_modules" / "@lancedb" / "lancedb" / "package.json"
PINNED = json.loads((TS_DIR / "package.json").read_text())["dependencies"]["@lancedb/lancedb"]
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not CLIENT.is_file(),
    reason="needs node and the TypeScript client: run `make tests/ts/node_modules` (part of `make test`)")


@pytest.fixture
def server(live_server: Callable[[str], LiveServer], mnist_root: Path, tmp_path: Path) -> LiveServer:
    """A real server (the client's core is Rust and opens its own socket) over a copy of ``mnist_root``."""
    uri = tmp_path / "data"
    shutil.copytree(mnist_root, uri)
    return live_server(str(uri))


def _first_vector(server: LiveServer) -> list[float]:
    """A label-3 row's vector, read over the LanceDB protocol itself (the native JSON leaves vectors out)."""
    body = httpx.post(f"{server.url}/v1/table/mnist/query/", timeout=30,
                      json={"vector": [], "k": 1, "filter": "label = 3", "columns": ["vector"]}).content
    return pa.ipc.open_file(pa.BufferReader(body)).read_all().column("vector")[0].as_py()


def native(server: LiveServer, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{server.url}/api/v1/tables/{path}", timeout=30, **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


def run_client(config: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([NODE or "node", "conformance.mjs", json.dumps(config)], cwd=TS_DIR, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_typescript_client_is_pinned() -> None:
    assert json.loads(CLIENT.read_text())["version"] == PINNED == "0.37.1"


def test_typescript_client_scenario(server: LiveServer, samples_dir: Path) -> None:
    vector = _first_vector(server)
    png = (samples_dir / "horse.png").read_bytes()
    out = run_client({"url": server.url, "table": "mnist", "vector": vector, "filter": "label = 3", "k": 5,
                      "columns": ["id", "label"], "image_b64": base64.b64encode(png).decode()})
    failed = {k: v["error"] for k, v in out.items() if "error" in v and k not in ("missing_table", "fts_no_index")}
    assert not failed
    ok = {k: v.get("ok") for k, v in out.items()}

    assert ok["table_names"] == ["mnist"]
    types = {f["name"]: f["type"] for f in ok["schema"]}
    dim = native(server, "GET", "mnist")["embeddings"][0]["dim"]
    assert types["image"] == "LargeBinary" and types["vector"] == f"FixedSizeList[{dim}]<Float32>"
    assert ok["count"] == 200
    assert ok["count_filter"] == native(server, "GET", "mnist/count", params={"filter": "label = 3"})["count"]

    expected = native(server, "POST", "mnist/search",
                      json={"vector": vector, "k": 5, "filter": "label = 3", "columns": ["id", "label"]})["hits"]
    assert [h["id"] for h in ok["search"]] == [h["id"] for h in expected]
    assert [h["_distance"] for h in ok["search"]] == pytest.approx([h["_distance"] for h in expected], rel=1e-6)
    assert {h["label"] for h in ok["search"]} == {3}
    rows = native(server, "POST", "mnist/query", json={"filter": "label = 3", "columns": ["id"], "limit": 10})["rows"]
    assert [r["id"] for r in ok["filter_only"]] == [r["id"] for r in rows]
    first3 = native(server, "POST", "mnist/query", json={"columns": ["id"], "limit": 3})["rows"]
    assert [r["id"] for r in ok["take_offsets"]] == [first3[0]["id"], first3[2]["id"]]

    assert ok["version"] == 1 and ok["tags_list"] == {"ts-v1": 1} and ok["tag_version"] == 1
    assert ok["add"]["version"] == 2 and ok["count_after_add"] == 201
    assert native(server, "GET", "mnist/rows/ts-new.png")["mime"] == "image/png"
    assert ok["checkout_version"] == {"version": 1, "count": 200}
    assert ok["checkout_tag"] == {"version": 1, "count": 200}
    assert ok["checkout_latest"] == {"version": 2, "count": 201}
    logged = sorted(v["version"] for v in native(server, "GET", "mnist/versions"))
    assert ok["list_versions"] == logged[:2] == [1, 2]  # read before create_index made version 3
    assert {"name": "id_idx", "type": "BTree"} in ok["list_indices"]
    assert {i["name"] for i in native(server, "GET", "mnist/indexes")["indexes"]} == {"id_idx"}
    assert ok["tag_delete"] == []
    assert ok["create_table"] == 2 and ok["drop_table"] == ["mnist"]
    assert "not found" in out["missing_table"]["error"]

    # full-text and hybrid search (a table the client made, indexed with positions, then written to)
    assert sorted(ok["fts"]) == ["a", "c", "d"]  # "d" came after the index: found all the same
    assert ok["fts_scores"] == sorted(ok["fts_scores"], reverse=True) and all(s > 0 for s in ok["fts_scores"])
    assert ok["fts_phrase"] == ["a"]
    assert ok["hybrid"][0] == "c"  # the nearest row, and the best keyword match
    assert sorted(ok["fts_at_old_version"]) == ["a", "c"]
    assert "400" in out["fts_no_index"]["error"] and "no full-text index" in out["fts_no_index"]["error"]
