"""A data root is a directory you can move: moved, copied, read from another directory, mounted at
another path, copied to an S3 prefix and back, every table, tag, branch, clone, index and version
note still reads, through the store, the command line (run from another directory) and the service
(the command line and the service run in this process, from the directory and environment given).

Lance records where a branch's parent and a shallow clone's source live (the manifest's base paths)
as the writer named them; one root, built once per module with all of those, is copied for each
case and read back against what it held where it was made. ``lightbox doctor`` is then run on a
damaged copy: it names each problem, exits non-zero, and ``--repair`` fixes what it says it fixed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import lance
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.services.clones import clone
from app.services.diff import diff
from app.services.embed import embed_table
from app.services.history import list_tags, list_versions
from app.services.writes import delete_rows, patch_row
from app.settings import Settings
from app.store import LATEST, Ref, RowReader, Store
from app.store.bases import ManifestUnreadable, manifest_files, read_bases, read_manifest
from app.store.maintenance import optimize
from app.store.vectors import IndexKeeper
from app.store.writes import create_branch, tag_version
from embeddings.registry import load
from ingest.pipeline import IngestOptions, run_ingest
from tests.helpers import Ran
from tests.helpers import run_cli as run_in_process

# every point of the root that must read: (table, ref)
READS = [("pics", LATEST), ("pics", Ref(tag="v1")), ("pics", Ref(tag="indexed")), ("pics", Ref(branch="exp")),
         ("snap", LATEST), ("expsnap", LATEST), ("lonesome", LATEST)]
LOGS = [("pics", None), ("pics", "exp"), ("snap", None), ("expsnap", None), ("lonesome", None)]
PATCHED, DELETED = "3/00003.png", "4/00004.png"


# -- the root, made once -------------------------------------------------------------------------
def build_root(root: Path, digits: Path, scratch: Path) -> None:
    """A table with tags, an index and notes; a branch with its own commits; a clone, a clone of the
    branch, and a small table with a clone of its own."""
    store = Store(str(root), refresh_seconds=0.0)
    run_ingest(store, IngestOptions(table="pics", sources=[str(digits / "images")], labels_from_dirs=True,
                                    tag="v1", progress=False))
    embed_table(store, "pics", load("builtin"), message="vectors")  # a Merge commit: its message is a note
    assert IndexKeeper(store, min_rows=50, sample=20).fold("pics")  # a Lance vector index (IVF_FLAT)
    tag_version(store, "pics", "indexed")
    create_branch(store, "pics", "exp", Ref(tag="indexed"))
    patch_row(store, "pics", PATCHED, {"label": 9}, branch="exp", message="relabel")
    delete_rows(store, "pics", ids=[DELETED], branch="exp", message="drop one")
    clone(store, "pics", "snap", Ref(tag="indexed"), message="snapshot")  # shares the index's files too
    clone(store, "pics", "expsnap", Ref(branch="exp"))
    optimize(store, "pics", timedelta(days=7))  # compaction versions, noted
    few = scratch / "few"
    for path in sorted((digits / "images" / "7").glob("*.png"))[:3]:
        (few / "7").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, few / "7" / path.name)
    run_ingest(store, IngestOptions(table="lonely", sources=[str(few)], labels_from_dirs=True, progress=False))
    clone(store, "lonely", "lonesome", LATEST)


def store_facts(uri: str, options: dict[str, str] | None = None, *, every: int = 1) -> dict[str, Any]:
    """What the root holds, read through the store: rows, image bytes (each ``every``-th checked
    against its sha256), the branch's diff against main, logs (notes included), tags and indexes."""
    store = Store(uri, storage_options=options, refresh_seconds=0.0)
    reader = RowReader()
    out: dict[str, Any] = {}
    for table, ref in READS:
        snap = store.snapshot(table, ref)
        rows = snap.read(["id", "sha256", "label"]).sort_by("id").to_pylist()
        for row in rows[::every]:
            data = reader.image_bytes(snap, reader.image_ref(snap, row["id"]))
            assert hashlib.sha256(data).hexdigest() == row["sha256"], (table, ref, row["id"])
        out[f"{table} {ref.describe()}"] = rows
    out["diff"] = diff(store.snapshot("pics"), store.snapshot("pics", Ref(branch="exp"))).page(1000, 0)
    out["logs"] = {f"{t} {b}": list_versions(store, t, branch=b, limit=1000)[0] for t, b in LOGS}
    out["tags"] = list_tags(store, "pics")
    out["indexes"] = {t: sorted(i["name"] for i in store.latest(t).list_indices()) for t in ("pics", "snap")}
    return out


def app_facts(uri: str, options: dict[str, str] | None = None, *, every: int = 1) -> dict[str, Any]:
    """The same through the HTTP API of a served app: rows and image bytes, diff, versions, searches
    that use the index (the clone's reads the source's index files), and the indexes listed."""
    settings = Settings(uri=uri, storage_options=options or {}, warm_on_start=False, latest_refresh_seconds=0.0)
    out: dict[str, Any] = {}
    with TestClient(create_app(settings)) as http:
        api = "/api/v1/tables"
        for table, params in [("pics", {}), ("pics", {"branch": "exp"}), ("pics", {"tag": "v1"}), ("snap", {}),
                              ("expsnap", {}), ("lonesome", {})]:
            answer = http.post(f"{api}/{table}/query", params=params,
                               json={"columns": ["id", "sha256"], "limit": 10_000})
            assert answer.status_code == 200, answer.text
            rows = sorted(answer.json()["rows"], key=lambda r: r["id"])
            for row in rows[::every]:
                image = http.get(f"{api}/{table}/rows/{row['id']}/image", params=params)
                assert image.status_code == 200, image.text
                assert hashlib.sha256(image.content).hexdigest() == row["sha256"]
            out[f"rows {table} {params}"] = rows
        for table, params in [("pics", {}), ("pics", {"branch": "exp"}), ("snap", {})]:
            found = http.post(f"{api}/{table}/search", params=params, json={"image_id": "0/00000.png", "k": 5,
                                                                             "columns": ["id"]})
            assert found.status_code == 200, found.text
            out[f"search {table} {params}"] = [hit["id"] for hit in found.json()["hits"]]
        answer = http.get(f"{api}/pics/diff", params={"from": "main", "to": "exp"})
        assert answer.status_code == 200, answer.text
        out["diff"] = {k: answer.json()[k] for k in ("counts", "added", "removed", "changed")}
        for table in ("snap", "expsnap"):
            out[f"versions {table}"] = http.get(f"{api}/{table}/versions").json()
        out["indexes snap"] = [i["name"] for i in http.get(f"{api}/snap/indexes").json()["indexes"]]
    return out


def untagged(facts: dict[str, Any]) -> dict[str, Any]:
    """Facts with the tags left out (a root given more tags still holds the same rows and log)."""
    logs = {k: [{**v, "tags": None} for v in page] for k, page in facts["logs"].items()}
    return {**facts, "logs": logs, "tags": None}


class Made:
    def __init__(self, root: Path, store: dict[str, Any], app: dict[str, Any]) -> None:
        self.root, self.store, self.app = root, store, app

    def copy(self, dest: Path) -> Path:
        shutil.copytree(self.root, dest)
        return dest

    @contextlib.contextmanager
    def hidden(self) -> Iterator[None]:
        """The root where it was made is out of reach meanwhile, as on another machine or after
        ``mv``: a copy that still read its files from there would fail."""
        away = self.root.with_name(self.root.name + "-away")
        self.root.rename(away)
        try:
            yield
        finally:
            away.rename(self.root)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path) -> Made:
    base = tmp_path_factory.mktemp("made")
    root = base / "lightbox-data"
    build_root(root, digits_dir, base)
    facts = store_facts(str(root))
    assert facts["diff"]["counts"] == {"added": 0, "removed": 1, "changed": 1}
    assert facts["indexes"]["snap"] == facts["indexes"]["pics"] == ["vector_idx"]
    return Made(root, facts, app_facts(str(root)))


def run_cli(cwd: Path, *args: str | Path, env: dict[str, str] | None = None) -> Ran:
    """`lightbox ARGS` run from ``cwd`` (in this process, its working directory and environment set)."""
    return run_in_process(*args, cwd=cwd, env=env)


def ok(result: Ran) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def check_diff(made: Made, cwd: Path, *target: str, env: dict[str, str] | None = None) -> None:
    """The branch's diff against main, by the command line run from ``cwd``."""
    counts = made.store["diff"]["counts"]
    out = ok(run_cli(cwd, "diff", "pics", "main", "exp", "--ids", *target, env=env))
    assert out.splitlines()[0] == f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed"
    assert f"- {DELETED}" in out and f"~ {PATCHED} (label)" in out


def check_query(made: Made, cwd: Path, *target: str, env: dict[str, str] | None = None) -> None:
    """The rows of the clone of the branch, by the command line run from ``cwd``."""
    out = ok(run_cli(cwd, "query", "expsnap", "-c", "id,sha256", "-n", "0", "--format", "csv", *target, env=env))
    rows = sorted(line.split(",") for line in out.splitlines()[1:])
    assert rows == [[r["id"], r["sha256"]] for r in made.store["expsnap latest"]]


def check_cli(made: Made, cwd: Path, *target: str) -> None:
    check_diff(made, cwd, *target)
    check_query(made, cwd, *target)


def bases_of(root: Path) -> set[str]:
    """Every base path the root's manifests record (unreadable manifests left out)."""
    store = Store(str(root), relocate=False)
    out = set()
    for name in store.names():
        for file in manifest_files(store, name):
            with contextlib.suppress(ManifestUnreadable):
                out |= {b.path for b in read_bases(read_manifest(store, name, file))}
    return out


# -- moving, copying, reading from elsewhere --------------------------------------------------------
def test_a_moved_root_reads(made: Made, tmp_path: Path) -> None:
    moved = made.copy(tmp_path / "moved")
    with made.hidden():  # `mv root moved`
        assert app_facts(str(moved)) == made.app  # a served app is the first to open it
        assert store_facts(str(moved)) == made.store
        check_cli(made, tmp_path / "elsewhere", "--uri", str(moved))
    assert all(path.startswith(f"{moved}/") for path in bases_of(moved))


def test_a_copied_root_reads_after_the_original_is_gone(made: Made, tmp_path: Path) -> None:
    original = made.copy(tmp_path / "original")
    with made.hidden():
        assert store_facts(str(original)) == made.store
        copy = tmp_path / "copy"
        shutil.copytree(original, copy)  # `cp -r`: the copy's versions name the original, which is still there
        check_cli(made, tmp_path / "elsewhere", "--uri", str(copy))
        shutil.rmtree(original)
        assert store_facts(str(copy)) == made.store
        assert app_facts(str(copy)) == made.app


def test_a_relative_root_reads_from_another_directory(made: Made, tmp_path: Path) -> None:
    project = tmp_path / "project"
    made.copy(project / "lightbox-data")
    with made.hidden():
        # what the default `./lightbox-data` is from the project folder, named from its parent
        check_diff(made, tmp_path, "--uri", "project/lightbox-data")
        check_query(made, tmp_path / "elsewhere", env={"LIGHTBOX_URI": str(project / "lightbox-data")})
        assert store_facts(str(project / "lightbox-data")) == made.store


def test_a_root_made_by_older_code_reads_from_another_directory(made: Made, tmp_path: Path) -> None:
    """Earlier versions passed Lance the root as given, so `./lightbox-data` made relative base paths,
    which Lance resolves against the reader's current directory: made here as they made them."""
    project = tmp_path / "project"
    made.copy(project / "lightbox-data")
    with contextlib.chdir(project):
        ds = lance.dataset("./lightbox-data/pics.lance")
        ds.create_branch("old", ds.tags.get_version("v1"))
        ds.tags.create("lightbox-clone-oldclone", ds.tags.get_version("v1"))
        ds.shallow_clone("./lightbox-data/oldclone.lance", "v1")
    assert {p for p in bases_of(project / "lightbox-data") if p.startswith("./")} == {"./lightbox-data/pics.lance"}

    elsewhere = tmp_path / "elsewhere"
    env = {"LIGHTBOX_URI": str(project / "lightbox-data")}  # the issue's case: cd elsewhere; LIGHTBOX_URI=/abs/...
    with made.hidden():
        assert ok(run_cli(elsewhere, "diff", "pics", "v1", "old", env=env)).startswith("0 added, 0 removed, 0 changed")
        out = ok(run_cli(elsewhere, "query", "oldclone", "-c", "id,sha256", "-n", "0", "--format", "csv", env=env))
        assert sorted(line.split(",") for line in out.splitlines()[1:]) == [
            [r["id"], r["sha256"]] for r in made.store["pics tag 'v1'"]]
        assert untagged(store_facts(str(project / "lightbox-data"))) == untagged(made.store)  # (it has more tags)
    assert not {p for p in bases_of(project / "lightbox-data") if not os.path.isabs(p)}


def test_a_root_mounted_at_another_path_reads(made: Made, tmp_path: Path) -> None:
    host = made.copy(tmp_path / "host" / "lightbox-data")
    with made.hidden():
        assert store_facts(str(host)) == made.store  # used where it was copied to first
        # another name for the same folder (a symlink, a bind mount) reads with nothing rewritten
        (tmp_path / "alias").symlink_to(host, target_is_directory=True)
        manifests = {p: p.read_bytes() for p in host.rglob("*.manifest")}
        assert store_facts(str(tmp_path / "alias")) == made.store
        assert {p: p.read_bytes() for p in host.rglob("*.manifest")} == manifests
        # a container's `-v $PWD/lightbox-data:/data`: the path it was used at does not exist in there
        (tmp_path / "host").rename(tmp_path / "hidden")
        (tmp_path / "data").symlink_to(tmp_path / "hidden" / "lightbox-data", target_is_directory=True)
        assert app_facts(str(tmp_path / "data")) == made.app
        assert store_facts(str(tmp_path / "data")) == made.store


@pytest.mark.s3
def test_a_root_copied_to_an_s3_prefix_and_back_reads(made: Made, tmp_path: Path, s3_root: Any) -> None:
    from pyarrow import fs

    from app.store.files import filesystem

    s3, prefix = filesystem(s3_root.uri, s3_root.options)
    fs.copy_files(str(made.root), prefix, source_filesystem=fs.LocalFileSystem(), destination_filesystem=s3)
    flags = ["--uri", s3_root.uri, *s3_root.flags()]
    with made.hidden():
        check_cli(made, tmp_path / "elsewhere", *flags)  # the command line is the first to open it
        assert store_facts(s3_root.uri, s3_root.options, every=25) == made.store
        assert app_facts(s3_root.uri, s3_root.options, every=25) == made.app
        doctor = run_cli(tmp_path, "doctor", "--sample", "5", *flags)
        assert doctor.returncode == 0 and not doctor.stdout, doctor.stdout + doctor.stderr
        assert "checked 5 table(s)" in doctor.stderr and "no problems" in doctor.stderr

        back = tmp_path / "back"  # and from the bucket to local disk: its versions now name s3://
        fs.copy_files(prefix, str(back), source_filesystem=s3, destination_filesystem=fs.LocalFileSystem())
        assert any(p.startswith("s3://") for p in bases_of(back))
        assert store_facts(str(back)) == made.store
    assert all(p.startswith(f"{back}/") for p in bases_of(back))


# -- one spelling of a root ------------------------------------------------------------------------
def test_every_uri_is_normalised_at_the_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings(uri="./lightbox-data/").uri == str(tmp_path / "lightbox-data")
    assert Settings().uri == str(tmp_path / "lightbox-data")  # the default too
    assert Settings(uri=f"file://{tmp_path}/x/").uri == str(tmp_path / "x")
    assert Settings(uri="s3://bucket/root/").uri == "s3://bucket/root"
    monkeypatch.setenv("LIGHTBOX_URI", "rel//")
    assert Settings().uri == str(tmp_path / "rel")
    assert Store("rel/").uri == Store(f"file://{tmp_path}/rel").uri == str(tmp_path / "rel")
    with pytest.raises(ValueError, match="empty"):
        Settings(uri=" ")


def test_branches_and_clones_of_a_relative_root_record_where_it_is(tmp_path: Path, digits_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Made through a relative root, they read from any directory with nothing rewritten."""
    monkeypatch.chdir(tmp_path)
    store = Store("lightbox-data", refresh_seconds=0.0)
    run_ingest(store, IngestOptions(table="t", sources=[str(digits_dir / "images" / "1")], progress=False))
    create_branch(store, "t", "b", LATEST)
    delete_rows(store, "t", ids=["00001.png"], branch="b")
    clone(store, "t", "c", Ref(branch="b"))
    assert bases_of(tmp_path / "lightbox-data") == {f"{tmp_path}/lightbox-data/t.lance",
                                                    f"{tmp_path}/lightbox-data/t.lance/tree/b"}
    monkeypatch.chdir(tmp_path.parent)
    elsewhere = Store(str(tmp_path / "lightbox-data"), relocate=False)  # nothing pointed, nothing needed
    assert elsewhere.snapshot("c").count() == elsewhere.snapshot("t").count() - 1
    assert lance.dataset(f"{tmp_path}/lightbox-data/c.lance").to_table(columns=["sha256"]).num_rows > 0


# -- doctor -----------------------------------------------------------------------------------------
def test_doctor_finds_nothing_wrong_with_a_healthy_root(made: Made, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "doctor", "--uri", made.root, "--sample", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "checked 5 table(s)" in result.stderr and "no problems" in result.stderr
    assert run_cli(tmp_path, "doctor", "--uri", tmp_path / "nothing-here").returncode == 2


def corrupt_image(root: Path, key: str) -> None:
    """Change one byte inside the stored bytes of row ``key``, in the data file that holds them."""
    store = Store(str(root), relocate=False)
    snap = store.snapshot("pics")
    reader = RowReader()
    data = reader.image_bytes(snap, reader.image_ref(snap, key))
    for path in sorted((root / "pics.lance" / "data").glob("*.lance")):
        blob = bytearray(path.read_bytes())
        at = blob.find(data)
        if at >= 0:
            blob[at + len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(blob))
            return
    raise AssertionError(f"no data file holds the bytes of {key}")


def damage(made: Made, root: Path) -> dict[str, str]:
    """A `cp -r` of the root with a deleted data file, a truncated manifest, an image's bytes changed,
    a clone whose source was dropped, a clone dropped behind its guard tag and a truncated note."""
    made.copy(root)
    branch_file = sorted((root / "pics.lance" / "tree" / "exp" / "data").glob("*.lance"))[0]
    branch_file.unlink()
    store = Store(str(root), relocate=False)
    first = next(f for f in manifest_files(store, "pics") if f.branch is None and f.version == 1)
    Path(first.path).write_bytes(Path(first.path).read_bytes()[:100])
    corrupt_image(root, "5/00005.png")
    shutil.rmtree(root / "lonely.lance")
    shutil.rmtree(root / "expsnap.lance")
    note = next((root / "snap.lance" / "_lightbox" / "notes").rglob("*.json"))
    note.write_text(note.read_text()[:10])
    return {"branch_file": branch_file.name, "note": note.name}


def test_doctor_reports_a_damaged_copy_and_repairs_what_it_can(made: Made, tmp_path: Path) -> None:
    root = tmp_path / "damaged"
    found = damage(made, root)
    with made.hidden():
        check_damaged_copy(made, root, found, tmp_path)


def check_damaged_copy(made: Made, root: Path, found: dict[str, str], tmp_path: Path) -> None:
    result = run_cli(tmp_path, "doctor", "--uri", root, "--sample", "0")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    expected = {
        "moved": "record their shared files at",
        "manifest": "version 1: its manifest pics.lance/_versions/",
        "tag": "tag 'v1' points at version 1, which has no readable manifest",
        "guard": "tag 'lightbox-clone-expsnap' keeps",
        "missing": f"data file pics.lance/tree/exp/data/{found['branch_file']} is missing",
        "digest": "row '5/00005.png': its image bytes do not match its sha256",
        "dangling": "lonesome: 1 version(s) read files of lonely.lance, which is not in this root",
        "note": f"version note snap.lance/_lightbox/notes/_main/{found['note']} is unreadable",
    }
    for what, text in expected.items():
        assert any(text in line for line in lines), (what, lines)
    assert not any(line.startswith("repaired") for line in lines)
    assert len(lines) == len(set(lines))

    repaired = run_cli(tmp_path, "doctor", "--uri", root, "--sample", "0", "--repair")
    assert repaired.returncode == 1, repaired.stderr  # what only a backup has is still missing
    fixed = [line for line in repaired.stdout.splitlines() if line.startswith("repaired: ")]
    assert {w for w, text in expected.items() if any(text in line for line in fixed)} == {"moved", "guard", "note"}
    assert all(line.startswith(("repaired: pics:", "repaired: snap:")) for line in fixed), fixed

    again = run_cli(tmp_path, "doctor", "--uri", root, "--sample", "0")
    assert again.returncode == 1 and not any(line.startswith("repaired") for line in again.stdout.splitlines())
    left = {w for w, text in expected.items() if any(text in line for line in again.stdout.splitlines())}
    assert left == {"manifest", "tag", "missing", "digest", "dangling"}
    assert "snap: version" in again.stdout  # the clone reads the changed bytes too, now from this root
    # what it said it repaired is so: bases point here, the guard tag and the note are gone
    assert all(p.startswith(f"{root}/") for p in bases_of(root) if "lonely.lance" not in p)
    assert "lightbox-clone-expsnap" not in lance.dataset(f"{root}/pics.lance").tags.list()
    assert not list((root / "snap.lance" / "_lightbox" / "notes").rglob(found["note"]))
    assert Store(str(root)).snapshot("snap").count() == len(made.store["snap latest"])
    # a branch whose versions are gone leaves the rest of its table readable
    shutil.rmtree(root / "pics.lance" / "tree" / "exp" / "_versions")
    assert Store(str(root)).snapshot("pics").count() == len(made.store["pics latest"])
