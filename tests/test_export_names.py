"""Exports of ids and labels too long for a file name: every path component within 255 bytes (a
prefix plus a hash), the full id in a sidecar, extractable onto a real file system; and a CLI export
that fails leaves its destination as it was."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from tests.helpers import run_cli

LONG = "é" * 200 + ".png"  # 404 bytes: 1,206 percent-encoded
LONG_TOO = "é" * 200 + "x.png"  # the same first 255 bytes once encoded: only the hash tells them apart
LABEL = "l" * 300


def png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4, 4), shade).save(buf, "PNG")
    return buf.getvalue()


ROWS = {LONG: ("a", png(10)), LONG_TOO: ("a", png(20)), "short.png": (LABEL, png(30)), "plain.png": ("b", png(40))}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = str(tmp_path_factory.mktemp("names") / "data")
    rows = pa.table({"id": list(ROWS), "label": [v[0] for v in ROWS.values()],
                     "image": pa.array([v[1] for v in ROWS.values()], pa.large_binary())})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    with TestClient(create_app(Settings(uri=uri, warm_on_start=False))) as http:
        made = http.post("/api/v1/tables", json={"name": "long", "schema": [{"name": "label", "type": "string"}]})
        assert made.status_code == 201, made.text
        added = http.post("/api/v1/tables/long/rows", content=sink.getvalue().to_pybytes(),
                          headers={"content-type": "application/vnd.apache.arrow.stream"})
        assert added.status_code == 201 and added.json()["inserted"] == len(ROWS), added.text
    return uri


def export(root: str, **params: str) -> bytes:
    with TestClient(create_app(Settings(uri=root, warm_on_start=False))) as http:
        answer = http.get("/api/v1/tables/long/export", params=params)
        assert answer.status_code == 200, answer.text
        return answer.content


def assert_short(names: list[str]) -> None:
    for name in names:
        assert all(len(part.encode()) <= 255 for part in name.split("/")), name


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_webdataset_keys_fit_a_file_name_and_the_json_keeps_the_id(root: str, tmp_path: Path) -> None:
    data = export(root, format="webdataset")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert_short(names)
        tar.extractall(tmp_path / "out", filter="data")  # onto a real file system: no "File name too long"
    keys = {n.split(".", 1)[0] for n in names}
    assert len(keys) == len(ROWS) == len(names) // 2  # shortened keys stay unique
    found = {}
    for meta in (tmp_path / "out").glob("*.json"):
        row = json.loads(meta.read_text())
        found[row["id"]] = sha((tmp_path / "out" / f"{meta.stem}.png").read_bytes())
    assert found == {row_id: sha(image) for row_id, (_, image) in ROWS.items()}


def test_imagefolder_names_fit_and_a_shortened_file_has_a_sidecar(root: str, tmp_path: Path) -> None:
    data = export(root, format="imagefolder", archive="zip")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert_short(names)
        archive.extractall(tmp_path / "tree")
    images = [n for n in names if n.endswith(".png")]
    assert len(images) == len(ROWS) and "b/plain.png" in names
    sidecars = {json.loads((tmp_path / "tree" / n).read_text())["id"]: n for n in names if n.endswith(".json")}
    assert set(sidecars) == {LONG, LONG_TOO, "short.png"}  # long ids, and the row under the long label
    for row_id, sidecar in sidecars.items():
        image = (tmp_path / "tree" / sidecar).with_suffix(".png").read_bytes()
        assert sha(image) == sha(ROWS[row_id][1])
        assert json.loads((tmp_path / "tree" / sidecar).read_text())["label"] == ROWS[row_id][0]


def test_cli_imagefolder_tree_of_long_names(root: str, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    done = run_cli("export", "long", dest, "--format", "imagefolder", "--uri", root)
    assert done.returncode == 0, done.stderr
    images = sorted(p for p in dest.rglob("*.png"))
    assert len(images) == len(ROWS)
    assert {sha(p.read_bytes()) for p in images} == {sha(v[1]) for v in ROWS.values()}
    assert not [p for p in dest.iterdir() if p.name.startswith(".lightbox")]  # no staging or temp archive left


def test_a_failed_cli_export_leaves_no_partial_tree(root: str, tmp_path: Path) -> None:
    dest = tmp_path / "tree"
    dest.mkdir()
    (dest / "b").write_text("a file where the export puts the folder of label b")
    done = run_cli("export", "long", dest, "--format", "imagefolder", "--uri", root)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "is a file where the export has a folder" in done.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["b"]  # nothing else: no label folders, no staging
    assert (dest / "b").read_text().startswith("a file")
