"""Everything Lightbox does on local disk, on ``s3://`` too: an S3-compatible server (moto) on loopback.

The command line ingests with a tag, the builtin embedder and a branch (``--storage-option`` flags);
a server over the same root (``LIGHTBOX_STORAGE_OPTIONS``) answers fetch, filter, search, time travel,
merge, clone, diff, optimize and restore, and the official LanceDB client reads it. Credentials never
show in a repr, a readiness answer, an error message or the log.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import httpx
import lance
import lancedb
import pytest

from app.settings import Settings
from app.storage import REDACTED, RedactingFilter, parse_pairs, redact, redact_body
from app.store import Store
from lightbox.client import Client
from tests.conftest import LiveServer
from tests.helpers import Ran, run_cli
from tests.s3 import S3Root

pytestmark = pytest.mark.s3

FILES = {"1/horse.png": "horse.png", "2/board.png": "chessboard_GRAY.png", "3/pages.tif": "multipage.tif",
         "3/camera.png": "camera.png"}


@pytest.fixture
def folders(samples_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    first, later = tmp_path / "first", tmp_path / "later"
    for rel, name in FILES.items():
        (first / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(samples_dir / name, first / rel)
    (later / "4").mkdir(parents=True)
    shutil.copyfile(samples_dir / "no_time_for_that_tiny.gif", later / "4" / "anim.gif")
    return first, later


def ok(result: Ran) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_whole_flow_on_s3(s3_root: S3Root, folders: tuple[Path, Path]) -> None:
    first, later = folders
    flags = ["--uri", s3_root.uri, *s3_root.flags()]

    # ingest with a tag and the builtin embedder, then onto a branch: the command line, options as flags
    report = json.loads(ok(run_cli("ingest", first, "--table", "pics", "--labels-from-dirs", "--tag", "v1",
                               "--embed", "builtin", "-m", "first load", "--json", "--no-progress", *flags)))
    assert report["added"] == len(FILES)
    ok(run_cli("ingest", later, "--table", "pics", "--labels-from-dirs", "--branch", "feat", "--embed", "builtin",
           "--no-progress", *flags))
    assert "pics" in ok(run_cli("tables", *flags))

    # nothing was written on local disk: the files are in the bucket, where Lance reads them
    ds = lance.dataset(f"{s3_root.uri}/pics.lance", storage_options=s3_root.options)
    assert sorted(ds.to_table(columns=["id"]).column("id").to_pylist()) == sorted(FILES)
    assert "feat" in ds.branches.list() and "v1" in ds.tags.list()
    assert not Path(s3_root.uri).exists() and not Path("s3:").exists()

    # the service over the same root, options from settings
    server = LiveServer(s3_root.uri, storage_options=s3_root.options).start()
    try:
        _service_flow(Client(server.url), server, s3_root)
    finally:
        server.stop()


def _service_flow(client: Client, server: LiveServer, s3_root: S3Root) -> None:
    t = client.table("pics")
    v1 = t.info()["version"]
    # fetch and image bytes, filter, search
    row = t.get("1/horse.png")
    assert row["label"] == 1
    assert t.image_bytes("2/board.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert t.count("label = 3") == 2
    fetched = t.fetch(["3/camera.png", "nope"])
    assert fetched.column("id").to_pylist() == ["3/camera.png"]
    hits = t.search(like="3/camera.png", k=2, columns=["id"])
    assert hits.num_rows == 2 and "3/camera.png" not in hits.column("id").to_pylist()

    # writes on main, time travel to the tag
    assert t.update("1/horse.png", {"label": 10}, message="relabel")["version"] == v1 + 1
    assert t.at(tag="v1").get("1/horse.png")["label"] == 1
    assert t.at(version=v1 + 1).get("1/horse.png")["label"] == 10

    # the branch's new row merges into main; diff shows it
    assert t.diff("v1", "feat")["counts"]["added"] == 1
    merged = t.merge("feat", message="bring feat in")
    assert t.get("4/anim.gif")["label"] == 4 and merged["version"] == t.info()["version"]

    # clone at the tag (no bytes copied), restore the tag, optimize
    clone = client.clone("pics", "pics-v1", tag="v1")
    assert clone.count() == len(FILES) and clone.get("1/horse.png")["label"] == 1
    restored = t.restore(tag="v1")
    assert t.get("1/horse.png")["label"] == 1 and t.count() == len(FILES)
    assert restored["version"] == t.info()["version"]
    out = t.optimize()
    assert out["version"] >= restored["version"]
    assert t.at(tag="v1").count() == len(FILES)

    # the official LanceDB client against the server on S3
    db = lancedb.connect("db://lightbox", api_key="none", host_override=server.url)
    assert {"pics", "pics-v1"} <= set(db.table_names())
    tbl = db.open_table("pics")
    assert tbl.count_rows("label = 3") == 2
    vector = tbl.search().where("id = '3/camera.png'").limit(1).select(["vector"]).to_arrow()
    near = tbl.search(vector.column("vector")[0].as_py()).limit(1).select(["id"]).to_arrow()
    assert near.column("id").to_pylist() == ["3/camera.png"]

    # readiness names the root, never a secret; a direct lancedb connection on S3 opens the same tables
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["uri"] == s3_root.uri
    direct = lancedb.connect(s3_root.uri, storage_options=s3_root.options)
    assert direct.open_table("pics").count_rows() == len(FILES)


def test_drop_and_recreate_on_s3(s3_root: S3Root) -> None:
    """Listing, dropping and creating tables on object storage (no directory listing there)."""
    import pyarrow as pa

    store = Store(s3_root.uri, storage_options=s3_root.options, refresh_seconds=0.0)
    assert store.names() == [] and not store.exists("t")
    schema = pa.schema([pa.field("id", pa.string(), nullable=False)])
    store.create("t", schema)
    assert store.names() == ["t"] and store.exists("t")
    store.drop("t")
    assert store.names() == [] and not store.exists("t")


def test_credentials_are_never_shown(s3_root: S3Root, caplog: pytest.LogCaptureFixture,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    secret = s3_root.options["secret_access_key"]
    monkeypatch.setenv("LIGHTBOX_STORAGE_OPTIONS", json.dumps({"aws_secret_access_key": "from-json-secret",
                                                               "allow_http": True}))
    monkeypatch.setenv("LIGHTBOX_STORAGE_SECRET_ACCESS_KEY", secret)
    settings = Settings(uri=s3_root.uri)
    resolved = settings.resolved_storage_options()
    assert resolved["secret_access_key"] == secret and resolved["allow_http"] == "true"
    assert secret not in repr(settings) and "from-json-secret" not in repr(settings) and secret not in str(settings)

    # engine messages, URIs with user info and signed URLs lose their secrets
    assert redact(f"denied with {secret}", s3_root.options) == f"denied with {REDACTED}"
    assert redact("s3://AKIA:hunter2@bucket/x") == f"s3://{REDACTED}@bucket/x"
    assert "abcdef" not in redact("https://h/b?X-Amz-Signature=abcdef&x=1")
    body = {"error": {"code": "conflict", "message": f"the write does not fit: {secret} rejected", "detail": {}}}
    assert secret not in json.dumps(redact_body(body, s3_root.options))
    assert parse_pairs(["Endpoint=http://h:1", "allow_http=true"]) == {"endpoint": "http://h:1", "allow_http": "true"}

    # the log: a record quoting the secret is cleaned by the filter the service installs
    logger = logging.getLogger("lightbox.test-redaction")
    logger.addFilter(RedactingFilter(s3_root.options))
    with caplog.at_level(logging.WARNING, logger="lightbox.test-redaction"):
        logger.warning("could not open with %s", secret)
    assert secret not in caplog.text and REDACTED in caplog.text

    # the command line: a wrong secret fails without echoing it
    options = {**s3_root.options, "secret_access_key": "wrong-" + secret}
    flags = [arg for k, v in options.items() for arg in ("--storage-option", f"{k}={v}")]
    result = run_cli("tables", "--uri", s3_root.uri, *flags)
    assert "wrong-" + secret not in result.stdout + result.stderr
    bad = run_cli("tables", "--uri", s3_root.uri, "--storage-option", "no-equals-" + secret)
    assert bad.returncode == 2 and secret not in bad.stderr
