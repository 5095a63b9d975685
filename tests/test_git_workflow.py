"""The Dolt MNIST tutorial, on Lightbox: load, tag, branch, ingest on the branch, merge, log, diff."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from app.store import Store


@pytest.fixture
def mnist_like(digits_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Digits 0-4 and digits 5-9 as two folders of label folders (real scikit-learn digits)."""
    low, high = tmp_path / "low", tmp_path / "high"
    for label_dir in sorted((digits_dir / "images").iterdir()):
        target = low if int(label_dir.name) <= 4 else high
        shutil.copytree(label_dir, target / label_dir.name)
    return low, high


def test_dolt_mnist_workflow(mnist_like: tuple[Path, Path], digits_dir: Path, store: Store, cli,
                             live_server) -> None:
    low, high = mnist_like
    uri = store.uri
    first = cli("ingest", low, "--table", "training", "--uri", uri, "--labels-from-dirs", "--tag", "v1",
                "--message", "labels 0-4")
    assert first.returncode == 0, first.stderr
    everything = cli("ingest", digits_dir / "images", "--table", "testing", "--uri", uri, "--labels-from-dirs",
                     "--message", "all ten labels")
    assert everything.returncode == 0, everything.stderr
    low_ids = {f"{p.parent.name}/{p.name}" for p in low.rglob("*.png")}
    high_ids = {f"{p.parent.name}/{p.name}" for p in high.rglob("*.png")}

    server = live_server(uri)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        t = "/api/v1/tables/training"
        made = client.post(f"{t}/branches", json={"name": "additional-labels"})
        assert made.status_code == 201, made.text
        on_branch = cli("ingest", high, "--table", "training", "--uri", uri, "--labels-from-dirs",
                        "--branch", "additional-labels", "--message", "labels 5-9")
        assert on_branch.returncode == 0, on_branch.stderr

        def ids(query: str) -> set[str]:
            body = client.post(f"{t}/query{query}", json={"columns": ["id"], "limit": 10_000}).json()
            return {r["id"] for r in body["rows"]}

        assert ids("") == low_ids  # main untouched by the branch
        assert ids("?branch=additional-labels") == low_ids | high_ids
        assert client.get(f"{t}/count", params={"branch": "additional-labels", "filter": "label >= 5"}).json() == {
            "count": len(high_ids)}

        merged = client.post(f"{t}/branches/additional-labels/merge", json={"into": "main"})
        assert merged.status_code == 200, merged.text
        assert merged.json()["upserted"] == len(high_ids) and merged.json()["conflicts"] == []
        assert ids("") == low_ids | high_ids
        assert ids("?tag=v1") == low_ids  # the tag still reads exactly the first load

        log = client.get(f"{t}/versions", params={"order": "asc"}).json()
        messages = [e["message"] for e in log]
        assert messages[0] == "labels 0-4"
        assert messages[-1] == "merge additional-labels into main"
        assert log[0]["tags"] == ["v1"] and log[-1]["rows_delta"] == len(high_ids)
        branch_log = client.get(f"{t}/versions", params={"branch": "additional-labels", "order": "asc"}).json()
        assert branch_log[-1]["message"] == "labels 5-9" and branch_log[-1]["branch"] == "additional-labels"

        diff = client.get(f"{t}/diff", params={"from": "v1", "to": "main", "limit": 10_000}).json()
        assert diff["counts"] == {"added": len(high_ids), "removed": 0, "changed": 0}
        assert set(diff["added"]) == high_ids

        # merging again changes nothing
        again = client.post(f"{t}/branches/additional-labels/merge", json={})
        assert again.status_code == 200 and again.json()["merged"] is False

        # image bytes read through both refs are the files
        some = sorted(high_ids)[0]
        assert client.get(f"{t}/rows/{some}/image").content == (high / some).read_bytes()
        assert client.get(f"{t}/rows/{some}/image", params={"tag": "v1"}).status_code == 404


def test_fetch_with_images_across_fragments(mnist_like: tuple[Path, Path], store: Store, cli, live_server) -> None:
    """Several commits make several fragments, where row ids and row addresses differ."""
    low, high = mnist_like
    for folder in (low, high):
        done = cli("ingest", folder, "--table", "t", "--uri", store.uri, "--labels-from-dirs")
        assert done.returncode == 0, done.stderr
    files = {f"{p.parent.name}/{p.name}": p for p in [*low.rglob("*.png"), *high.rglob("*.png")]}
    wanted = sorted(files)[::7][::-1]
    server = live_server(store.uri)
    body = httpx.post(f"{server.url}/api/v1/tables/t/fetch", json={"ids": wanted, "columns": ["id"],
                                                                    "with_images": True}, timeout=30).json()
    import base64

    assert [r["id"] for r in body["rows"]] == wanted
    for row in body["rows"]:
        assert base64.b64decode(row["image"]) == files[row["id"]].read_bytes(), row["id"]
