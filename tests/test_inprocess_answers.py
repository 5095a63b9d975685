"""What the service answers that the command line relies on, through the SDK on a data root in this
process (the same app a server runs): a version of a branch as a ref, ``describe``, an object
store's failure as a 502/503 in one line, and the app's own exception behind a 500."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

import lightbox
from lightbox._inprocess import AppError


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (8, 8), value).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    with lightbox.connect(str(tmp_path / "root")) as c:
        c.create_table("t", [{"name": "label", "type": "int64"}])
        c.table("t").add([png(1), png(2)], ids=["a.png", "b.png"], metadata=[{"label": 1}, {"label": 2}])
        yield c


def test_a_version_of_a_branch_is_a_ref(client: lightbox.Client) -> None:
    t = client.table("t")
    b = t.create_branch("b")
    b.update("a.png", {"label": 10})
    b.update("b.png", {"label": 20})
    numbers = [v["version"] for v in b.versions()]
    middle = numbers[-2]
    assert t.at(version=middle, branch="b").fetch(["a.png", "b.png"], ["label"]).column("label").to_pylist() == [10, 2]
    assert t.at(branch="b").count("label > 5") == 2 and t.count("label > 5") == 0
    assert t.at(version=numbers[-1], branch="b").info()["version"] == numbers[-1]
    with pytest.raises(lightbox.NotFound, match="no version 99 on branch 'b'"):
        t.at(version=99, branch="b").count()
    with pytest.raises(ValueError, match="a version with its branch"):
        t.at(tag="x", branch="b")
    http = client._http  # the raw query parameters, as any HTTP client sends them
    assert http.get("/api/v1/tables/t/count", params={"branch": "b", "version": middle}).json() == {"count": 2}
    refused = http.get("/api/v1/tables/t/count", params={"branch": "b", "tag": "x"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_ref"
    # a tag of a branch's version, and a branch forked from one (JSON bodies take the same refs)
    assert b.tag("b-middle", middle)["version"] == middle
    fork = b.create_branch("fork", version=middle)
    assert fork.fetch(["b.png"], ["label"]).column("label").to_pylist() == [2]
    assert client.table("t").branches()[1]["parent_version"] == middle


def test_describe_adds_heads_versions_index_tuning_and_size(client: lightbox.Client, tmp_path: Path) -> None:
    t = client.table("t")
    t.create_branch("b").update("a.png", {"label": 3})
    t.create_index("label", "BTREE")
    described = t.describe()
    info = t.info()
    assert {k: described[k] for k in ("name", "version", "num_rows", "schema", "tags", "embeddings")} == \
        {k: info[k] for k in ("name", "version", "num_rows", "schema", "tags", "embeddings")}
    assert described["versions"] == len(t.versions()) == 3
    assert described["branches"]["b"] == {"parent_branch": None, "parent_version": 2, "version": 3, "num_rows": 2}
    assert [(i["name"], i["num_indexed_rows"]) for i in described["indexes"]] == [("label_idx", 2)]
    files = [p for p in (tmp_path / "root" / "t.lance").rglob("*") if p.is_file()]
    assert described["size"]["bytes"] == sum(p.stat().st_size for p in files)
    assert described["size"]["files"] == len(files) and described["size"]["parts"]["indexes"] > 0
    assert t.at(version=2).describe()["version"] == 2


def test_an_object_store_failure_is_a_502_in_one_line(s3_root: object) -> None:
    options = {**s3_root.options, "client_max_retries": "0"}  # type: ignore[attr-defined]
    with lightbox.connect("s3://nobucket/root", storage_options=options) as c, \
            pytest.raises(lightbox.ServerError) as error:
        c.table("t").count()
    assert error.value.status == 502 and error.value.code == "storage_error"
    assert "the bucket 'nobucket'" in error.value.message and "does not exist" in error.value.message
    assert options["secret_access_key"] not in str(error.value)


def test_the_exception_behind_a_500_is_the_errors_cause(client: lightbox.Client, tmp_path: Path) -> None:
    """A server logs what it raised; in this process the caller is the one told, one redacted line."""
    for manifest in (tmp_path / "root" / "t.lance" / "_versions").glob("*.manifest"):
        manifest.write_bytes(b"garbage")
    with lightbox.connect(str(tmp_path / "root")) as fresh, \
            pytest.raises(lightbox.ServerError) as error:  # a fresh client: no handle cached before the damage
        fresh.table("t").count()
    assert error.value.status == 500 and error.value.message == "internal error; see the server log"
    cause = error.value.__cause__
    assert isinstance(cause, AppError) and str(cause).startswith(("ValueError: ", "OSError: "))
    assert "garbage" in str(cause) and cause.__cause__ is not None


def test_a_server_keeps_its_500_to_itself(tmp_path: Path, live_server) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    with lightbox.connect(str(root)) as c:
        c.create_table("t")
    for manifest in (root / "t.lance" / "_versions").glob("*.manifest"):
        manifest.write_bytes(b"garbage")
    server = live_server(str(root))
    with lightbox.Client(server.url, retries=0) as c, pytest.raises(lightbox.ServerError) as error:
        c.table("t").count()
    assert error.value.status == 500 and error.value.__cause__ is None  # nothing of the server's insides
    assert httpx.get(f"{server.url}/healthz").status_code == 200
