"""The everyday command line, run as a user runs it: the real `lightbox` in a child process, on a
real data root and against a real server (`--uri` and `--server` must give the same answers)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.store import Store
from lightbox import __version__
from tests.conftest import REPO_ROOT, LiveServer, cli_command, cli_env
from tests.helpers import on_terminal


@pytest.fixture
def digits_root(digits_dir: Path, tmp_path: Path, cli: Any) -> str:
    """The 200 test digits ingested (labels from folders, metadata joined), with builtin vectors, tagged v1."""
    uri = str(tmp_path / "data")
    done = cli("ingest", digits_dir / "images", "--table", "digits", "--uri", uri, "--labels-from-dirs",
               "--metadata", digits_dir / "digits.csv", "--key", "file", "--embed", "builtin", "--tag", "v1")
    assert done.returncode == 0, done.stderr
    return uri


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_version(cli: Any) -> None:
    assert ok(cli("--version")).strip() == f"lightbox {__version__}"


def test_query_and_row_as_table_json_and_csv(digits_root: str, live_server: Callable[[str], LiveServer],
                                              cli: Any) -> None:
    server = live_server(digits_root)
    store = Store(digits_root)
    expected = store.latest("digits").to_table(columns=["id", "label", "ink"], filter="label = 3")
    want = sorted(zip(expected.column("id").to_pylist(), expected.column("ink").to_pylist(), strict=True),
                  key=lambda r: (-r[1], r[0]))
    for where in (("--uri", digits_root), ("--server", server.url)):
        rows = json.loads(ok(cli("query", "digits", "-f", "label = 3", "-c", "id,ink", "--order-by", "ink desc",
                                 "-n", "0", "--format", "json", *where)))
        assert [(r["id"], r["ink"]) for r in rows] == want, where
        table = ok(cli("query", "digits", "label = 3", "-c", "id,label", "-n", "2", *where)).splitlines()
        assert table[0].split() == ["id", "label"] and table[-1] == "(2 rows)"
        assert all(line.split()[1] == "3" for line in table[1:3])
        got = list(csv.DictReader(io.StringIO(ok(cli("query", "digits", "-c", "id,label,split", "-n", "5",
                                                     "--order-by", "id", "--format", "csv", *where)))))
        assert [r["id"] for r in got] == sorted(store.latest("digits").to_table(columns=["id"]).column("id")
                                                .to_pylist())[:5]
        assert set(got[0]) == {"id", "label", "split"}
        one = json.loads(ok(cli("row", "digits", want[0][0], "--format", "json", *where)))
        assert len(one) == 1 and one[0]["id"] == want[0][0] and one[0]["label"] == 3
        assert "image" not in one[0] and "vector" not in one[0]  # bytes and vectors only when asked for
        missing = cli("row", "digits", "9/nope.png", *where)
        assert missing.returncode == 1 and "no row with id '9/nope.png'" in missing.stderr
        bad = cli("query", "digits", "lable = 3", *where)
        assert bad.returncode == 2 and bad.stderr.startswith("lightbox: error:") and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


def test_tags_list_create_delete(digits_root: str, live_server: Callable[[str], LiveServer], cli: Any) -> None:
    server = live_server(digits_root)
    for name, where in (("local", ("--uri", digits_root)), ("remote", ("--server", server.url))):
        assert ok(cli("tags", "digits", *where)).split()[:3] == ["v1", "version", "1"]
        assert ok(cli("tags", "digits", "create", f"t-{name}", *where)).strip() == \
            f"tagged version 1 of digits as t-{name}"
        assert f"t-{name}" in ok(cli("tags", "digits", *where))
        nowhere = cli("tags", "digits", "create", "t-99", "--at", "99", *where)
        assert nowhere.returncode == 2 and "99" in nowhere.stderr and "Traceback" not in nowhere.stderr
        ok(cli("tags", "digits", "delete", f"t-{name}", *where))
        assert f"t-{name}" not in ok(cli("tags", "digits", "list", *where))
    assert list(Store(digits_root).latest("digits").tags.list()) == ["v1"]


def test_search_by_row_image_vector_and_filter(digits_root: str, digits_dir: Path, tmp_path: Path,
                                               live_server: Callable[[str], LiveServer], cli: Any) -> None:
    server = live_server(digits_root)
    query_id = "3/00003.png"
    vector = np.asarray(Store(digits_root).latest("digits").to_table(
        columns=["vector"], filter=f"id = '{query_id}'").column("vector")[0].as_py(), np.float32)
    np.save(tmp_path / "q.npy", vector)
    for where in (("--uri", digits_root), ("--server", server.url)):
        like = json.loads(ok(cli("search", "digits", "--like", query_id, "-k", "5", "-c", "id,label",
                                 "--format", "json", *where)))
        assert len(like) == 5 and query_id not in [h["id"] for h in like]
        distances = [h["_distance"] for h in like]
        assert distances == sorted(distances)
        by_vector = json.loads(ok(cli("search", "digits", "--vector", tmp_path / "q.npy", "-k", "3", "-c", "id",
                                      "--format", "json", *where)))
        assert by_vector[0]["id"] == query_id and by_vector[0]["_distance"] < 1e-5
        by_image = json.loads(ok(cli("search", "digits", "--image", digits_dir / "images" / query_id, "-k", "1",
                                     "-c", "id", "--format", "json", *where)))
        assert by_image[0]["id"] == query_id
        filtered = json.loads(ok(cli("search", "digits", "--like", query_id, "-k", "4", "--filter",
                                     "label = 7", "-c", "id,label", "--format", "json", *where)))
        assert filtered and {h["label"] for h in filtered} == {7}
        table = ok(cli("search", "digits", "--like", query_id, "-k", "2", "-c", "id", *where)).splitlines()
        assert table[0].split() == ["id", "_distance"] and table[-1] == "(2 rows)"
        text = cli("search", "digits", "--text", "a three", *where)
        assert text.returncode == 2 and "does not embed text" in text.stderr and "Traceback" not in text.stderr


def test_ingest_over_http_is_one_version(digits_dir: Path, tmp_path: Path,
                                         live_server: Callable[[str], LiveServer], cli: Any) -> None:
    uri = str(tmp_path / "served")
    server = live_server(uri)
    done = cli("ingest", digits_dir / "images", "--table", "d", "--server", server.url, "--labels-from-dirs",
               "--batch-size", "64", "--tag", "v1", "-m", "over http", "--json")
    report = json.loads(ok(done))
    assert report["added"] == 200 and report["versions"] == [1] and report["tag"] == "v1"  # four batches, one version
    assert report["server"] == server.url and "\r" not in done.stderr
    ds = Store(uri).latest("d")
    assert ds.count_rows() == 200 and ds.tags.list()["v1"]["version"] == 1
    local = {p.relative_to(digits_dir / "images").as_posix(): p for p in (digits_dir / "images").rglob("*.png")}
    rows = ds.to_table(columns=["id", "label", "sha256"]).to_pylist()
    assert {r["id"] for r in rows} == set(local)
    for r in rows[:20]:
        assert r["label"] == int(r["id"].split("/")[0])
        assert r["sha256"] == hashlib.sha256(local[r["id"]].read_bytes()).hexdigest()
    again = ok(cli("ingest", digits_dir / "images", "--table", "d", "--server", server.url, "--no-progress"))
    assert "added      0 images" in again and "skipped    200: duplicate_id 200" in again
    assert Store(uri).latest("d").version == 1
    # a file edited in place, upserted over HTTP: one new version holding the new bytes, the rest unchanged
    edited = tmp_path / "edited"
    shutil.copytree(digits_dir / "images", edited)
    ok(cli("ingest", edited, "--table", "e", "--server", server.url, "--labels-from-dirs", "--no-progress"))
    changed = sorted(edited.rglob("*.png"))[7]
    Image.open(changed).rotate(90).save(changed)
    up = json.loads(ok(cli("ingest", edited, "--table", "e", "--server", server.url, "--mode", "upsert",
                           "--labels-from-dirs", "--json", "--no-progress")))
    assert up["updated"] == 1 and up["added"] == 1 and up["versions"] == [2]
    assert [s["reason"] for s in up["skipped"]] == ["unchanged"] * 199
    key = changed.relative_to(edited).as_posix()
    assert Store(uri).latest("e").to_table(columns=["sha256"], filter=f"id = '{key}'").column("sha256")[0] \
        .as_py() == hashlib.sha256(changed.read_bytes()).hexdigest()
    manifest = cli("ingest", digits_dir / "digits.csv", "--table", "m", "--server", server.url, "--json")
    assert json.loads(ok(manifest))["skipped_by_reason"] == {"unreadable": 200}  # its paths are relative to it


def test_ingest_upsert_replaces_edited_files_in_one_version(digits_dir: Path, tmp_path: Path, cli: Any) -> None:
    folder = tmp_path / "imgs"
    for i, path in enumerate(sorted((digits_dir / "images" / "3").glob("*.png"))[:6]):
        folder.mkdir(exist_ok=True)
        (folder / f"{i}.png").write_bytes(path.read_bytes())
    uri = str(tmp_path / "data")
    ok(cli("ingest", folder, "--table", "t", "--uri", uri))
    edited = folder / "2.png"
    Image.open(edited).rotate(90).save(edited)  # the same file, new bytes
    (folder / "new.png").write_bytes((folder / "0.png").read_bytes()[:-12] + b"\0" * 12)  # a truncated one
    Image.open(folder / "1.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "7.png")
    plain = ok(cli("ingest", folder, "--table", "t", "--uri", uri, "--json"))
    assert json.loads(plain)["added"] == 1  # insert mode: the edited file is a duplicate id
    assert Store(uri).latest("t").version == 2
    out = json.loads(ok(cli("ingest", folder, "--table", "t", "--uri", uri, "--mode", "upsert", "--json",
                            "-m", "edited in place")))
    assert out["version"] == 3 and out["updated"] == 1 and out["added"] == 1
    assert out["skipped_by_reason"]["unchanged"] == 6

    ds = Store(uri).latest("t")
    assert ds.version == 3 and ds.count_rows() == 7
    row = ds.to_table(columns=["sha256"], filter="id = '2.png'").column("sha256")[0].as_py()
    assert row == hashlib.sha256(edited.read_bytes()).hexdigest()
    summary = ok(cli("ingest", folder, "--table", "t", "--uri", uri, "--mode", "upsert"))
    assert "unchanged at version 3" in summary and "unchanged 7" in summary
    assert Store(uri).latest("t").version == 3


def test_embed_over_http(digits_dir: Path, tmp_path: Path, live_server: Callable[[str], LiveServer],
                         cli: Any) -> None:
    uri = str(tmp_path / "data")
    ok(cli("ingest", digits_dir / "images" / "1", "--table", "ones", "--uri", uri))
    server = live_server(uri)
    out = ok(cli("embed", "ones", "--model", "builtin", "--server", server.url))
    rows = Store(uri).latest("ones").count_rows()
    assert out.startswith(f"embedded {rows} rows of ones into vector (builtin, 224-d) as version 2")
    assert "vector" in Store(uri).latest("ones").schema.names


def test_merge_conflict_lists_ids_values_and_the_hint(digits_root: str, live_server: Callable[[str], LiveServer],
                                                      cli: Any) -> None:
    from lightbox import Client

    server = live_server(digits_root)
    ok(cli("branch", "digits", "relabel", "--uri", digits_root))
    with Client(server.url) as client:
        t = client.table("digits")
        t.branch("relabel").update("3/00003.png", {"label": 8})
        t.update("3/00003.png", {"label": 5})
    for where in (("--uri", digits_root), ("--server", server.url)):
        clash = cli("merge", "digits", "relabel", *where)
        assert clash.returncode == 2 and "Traceback" not in clash.stderr
        assert "1 id(s) changed on both" in clash.stderr
        assert "3/00003.png" in clash.stderr and "label: main has 5, relabel has 8" in clash.stderr
        assert "--on-conflict theirs" in clash.stderr and "--on-conflict ours" in clash.stderr
    ok(cli("merge", "digits", "relabel", "--on-conflict", "theirs", "--uri", digits_root))
    assert Store(digits_root).latest("digits").to_table(filter="id = '3/00003.png'", columns=["label"]) \
        .column("label")[0].as_py() == 8


# -- a missing optional dependency is one line saying what to install ------------------------------
def hiding(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment whose Python cannot import ``modules`` (as if they were not installed)."""
    site = tmp_path / "hide"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules))
    env = cli_env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    return env


def test_missing_embeddings_extra_is_one_line(digits_dir: Path, tmp_path: Path) -> None:
    done = subprocess.run(cli_command("ingest", str(digits_dir / "images" / "1"), "--table", "t", "--uri",
                                      str(tmp_path / "data"), "--embed", "sentence-transformers:all-MiniLM-L6-v2"),
                          capture_output=True, text=True, env=hiding(tmp_path, "sentence_transformers"),
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "pip install 'lightbox[embeddings]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "t.lance").exists()


def test_missing_pandas_and_torch_name_their_extras(digits_root: str, tmp_path: Path,
                                                    live_server: Callable[[str], LiveServer]) -> None:
    server = live_server(digits_root)
    code = (
        "import lightbox\n"
        f"t = lightbox.Client({server.url!r}).table('digits')\n"
        "for call in (lambda: t.to_pandas(limit=1), lambda: t.at(tag='v1').torch_dataset()):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as exc:\n"
        "        print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=hiding(tmp_path, "pandas", "torch"), cwd=REPO_ROOT, timeout=120)
    lines = ok(done).splitlines()
    assert lines == [
        "MissingExtra to_pandas needs 'pandas', which is not installed: pip install 'lightbox[pandas]'",
        "MissingExtra torch_dataset needs 'torch', which is not installed: pip install 'lightbox[torch]'",
    ]


# -- the SDK and the HTTP commands do not load the service -----------------------------------------
SERVICE_MODULES = ("fastapi", "faiss", "app", "ingest", "embeddings", "lance", "uvicorn")


def test_http_only_use_imports_no_service_modules(digits_root: str, live_server: Callable[[str], LiveServer]) -> None:
    server = live_server(digits_root)
    code = (
        "import sys, lightbox, lightbox.client\n"
        "from lightbox.cli import main\n"
        "u = sys.argv[1]\n"
        "rc = [main(['tables', '--server', u]), main(['query', 'digits', '-n', '1', '--server', u]),\n"
        "      main(['search', 'digits', '--like', '3/00003.png', '-k', '1', '--server', u]),\n"
        "      main(['tags', 'digits', '--server', u]), main(['row', 'digits', 'x', '--server', u]),\n"
        "      main(['log', 'digits', '--server', u]), main(['diff', 'digits', 'v1', '--server', u]),\n"
        "      main(['branch', 'digits', '--server', u]), main(['describe', 'digits', '--server', u])]\n"
        f"print('RC', rc, 'LOADED', sorted(m for m in {SERVICE_MODULES!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, server.url], capture_output=True, text=True,
                          env=cli_env(), cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last == "RC [0, 0, 0, 0, 1, 0, 0, 0, 0] LOADED []", done.stdout


def test_progress_in_a_pipe_is_plain_lines_per_phase(digits_dir: Path, tmp_path: Path) -> None:
    """Not a terminal: plain lines (no carriage returns), naming the probe and embed phases."""
    env = cli_env()
    env["LIGHTBOX_PROGRESS_SECONDS"] = "0"
    done = subprocess.run(cli_command("ingest", str(digits_dir / "images"), "--table", "d", "--uri",
                                      str(tmp_path / "data"), "--embed", "builtin"),
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines and "\r" not in done.stderr
    assert all(line.startswith("ingest: probed ") and " of 200 files, embedded " in line for line in lines), lines
    assert lines[-1] == "ingest: probed 200 of 200 files, embedded 200"
    quiet = subprocess.run(cli_command("ingest", str(digits_dir / "images"), "--table", "e", "--uri",
                                       str(tmp_path / "data")), capture_output=True, text=True, env=cli_env(),
                           cwd=REPO_ROOT, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""  # a short run in a pipe prints no progress at all


def test_progress_on_a_terminal_is_two_bars(digits_dir: Path, tmp_path: Path) -> None:
    """On a terminal the probe and embed phases each get a bar."""
    code, terminal, _ = on_terminal(cli_command("ingest", str(digits_dir / "images"), "--table", "d", "--uri",
                                                str(tmp_path / "data"), "--embed", "builtin"),
                                    env=cli_env(), cwd=REPO_ROOT)
    assert code == 0
    assert b"probe: 100%" in terminal and b"embed: 100%" in terminal and b"200/200" in terminal
