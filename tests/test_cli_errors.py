"""Every way a command fails ends in one line on stderr and an exit status that docs/cli.md lists:
no traceback, no secret.

Table-driven: every subcommand (read from the parser, so a new one cannot be left out) times the
mistakes that apply to it: a missing table, a wrong ref, a bad filter, an unreachable server, a
missing data root, a closed pipe, and the object-store mistakes (no such bucket, bad credentials, a
wrong endpoint). Commands run in-process through ``lightbox.cli.main``; only the end of a real
process writing into a closed pipe needs a child process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.store import Ref, Store
from app.store.writes import create_branch
from ingest.pipeline import IngestOptions, run_ingest
from lightbox.cli import build_parser, commands, main
from lightbox.cli.errors import EXIT_CODES
from tests.conftest import REPO_ROOT, LiveServer, cli_command, cli_env
from tests.serve_procs import free_port

T = "t"
ROW = "0/000.png"
SECRET = "moto-secret-for-tests"  # tests/s3.py's secret: it must never be printed


@dataclass(frozen=True)
class Command:
    """How to call one subcommand: ``ok`` is a valid call on the shared table; the other fields are the
    calls that make one mistake (``None``: that mistake cannot be made with this command)."""

    ok: list[str]
    missing_table: list[str] | None = None
    wrong_ref: list[str] | None = None
    bad_filter: list[str] | None = None
    remote: bool = True  # takes --server
    needs_root: bool = True  # a data root that is not there is an error (not created)
    prints: bool = False  # prints a listing (a closed pipe applies)
    flags: list[str] = field(default_factory=list)  # always added (e.g. --no-progress)


NO = "nosuch"
COMMANDS: dict[str, Command] = {
    "ingest": Command(["{images}", "--table", "t2"], needs_root=False, flags=["--no-progress"]),
    "tables": Command([], prints=True),
    "describe": Command([T], [NO], [T, "--at", "99"], prints=True),
    "drop": Command([T, "--yes"], [NO, "--yes"]),  # never run as `ok` but where it must fail first
    "log": Command([T], [NO], [T, "--branch", NO], prints=True),
    "tags": Command([T], [NO], [T, "create", "x", "--at", "99"], prints=True),
    "diff": Command([T, "1", "--ids"], [NO, "1"], [T, NO], prints=True),
    "branch": Command([T], [NO], [T, "b2", "--at", NO], prints=True),
    "merge": Command([T, "b"], [NO, "b"], [T, NO]),
    "clone": Command([T, "t3"], [NO, "t3"], [T, "t3", "--at", NO]),
    "optimize": Command([T], [NO]),
    "index": Command([T], [NO], [T, "--at", "99"], prints=True),
    "embed": Command([T, "--model", "builtin"], [NO, "--model", "builtin"]),
    "restore": Command([T, "--at", "v1"], [NO, "--at", "v1"], [T, "--at", NO]),
    "row": Command([T, ROW], [NO, ROW], [T, ROW, "--at", "99"], prints=True),
    "query": Command([T], [NO], [T, "--at", NO], [T, "--filter", "nosuch_column = 1"], prints=True),
    "count": Command([T], [NO], [T, "--branch", NO], [T, "-f", "label ==== 3"], prints=True),
    "search": Command([T, "--like", ROW, "-k", "2"], [NO, "--like", ROW], [T, "--like", ROW, "--at", NO],
                      [T, "--like", ROW, "--filter", "nosuch_column = 1"], prints=True),
    "delete": Command([T, "-f", "label = 99"], [NO, "-f", "label = 1"], None, [T, "-f", "nosuch_column = 1"]),
    "export": Command([T, "{out}"], [NO, "{out}"], [T, "{out}", "--at", NO], [T, "{out}", "--filter", "x ="]),
    "import-annotations": Command([T, "{coco}"], [NO, "{coco}"]),
    "curate": Command([T, "--label", "label"], [NO, "--label", "label"]),
    "view": Command(["list", T], ["list", NO], ["save", T, "v", "--at", NO], ["save", T, "v", "-f", "x ="]),
    "doctor": Command([], remote=False),
}
# Not in the matrix, and why: `serve` runs until stopped (its failures are HTTP answers, docs/http.md);
# `demo` builds its own root from bundled images (tests/test_demo.py runs it twice).
LEFT_OUT = {"serve", "demo"}


def subcommands() -> list[str]:
    """The commands by their names (an alias runs its command's code: tests/test_cli_grammar.py)."""
    return sorted(commands(build_parser()))


def documented_exit_codes() -> set[int]:
    text = (REPO_ROOT / "docs" / "cli.md").read_text()
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    return {int(code) for code in re.findall(r"^\| `(\d+)` \|", section, flags=re.M)}


def test_the_table_names_every_subcommand() -> None:
    assert sorted(set(COMMANDS) | LEFT_OUT) == subcommands(), "a new subcommand: add it to COMMANDS (or LEFT_OUT)"


def test_every_exit_code_is_documented() -> None:
    assert documented_exit_codes() == set(EXIT_CODES)


# -- one small table, shared ------------------------------------------------------------------------
@dataclass
class World:
    root: str
    images: Path
    out: Path
    coco: Path
    server: LiveServer

    def fill(self, argv: list[str]) -> list[str]:
        return [a.format(images=self.images, out=self.out / "x.parquet", coco=self.coco) for a in argv]


def write_images(folder: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        (folder / str(i % 2)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / str(i % 2) / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("cli_errors")
    images = write_images(base / "images")
    root = str(base / "data")
    report = run_ingest(Store(root), IngestOptions(table=T, sources=[str(images)], labels_from_dirs=True,
                                                   embed="builtin", tag="v1", progress=False))
    assert report.added == 6
    create_branch(Store(root), T, "b", Ref())  # so `branch` lists one, and `merge t b` is a valid call
    coco = base / "coco.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "000.png", "width": 8, "height": 8}],
                                "annotations": [], "categories": []}))
    (base / "out").mkdir()
    server = LiveServer(root).start()
    yield World(root, images, base / "out", coco, server)
    server.stop()


def call(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refused the arguments themselves
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code: int, err: str, status: int, *mentions: str) -> str:
    assert "Traceback" not in err and SECRET not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lightbox: error: "), err
    assert code == status and code in documented_exit_codes(), (code, err)
    for text in mentions:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def cases(kind: str, *, where: tuple[str, ...] = ("uri", "server")) -> list[tuple[str, str]]:
    """(command, where) pairs for which a mistake applies, for every subcommand in the parser."""
    out = []
    for name in subcommands():
        spec = COMMANDS.get(name)
        if spec is None or getattr(spec, kind) is None:
            continue
        out += [(name, w) for w in where if w == "uri" or spec.remote]
    return out


def target(world: World, where: str) -> list[str]:
    return ["--uri", world.root] if where == "uri" else ["--server", world.server.url]


# -- the mistakes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "where"), cases("missing_table"))
def test_missing_table(name: str, where: str, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    spec = COMMANDS[name]
    code, _, err = call(capsys, [name, *world.fill(spec.missing_table or []), *spec.flags, *target(world, where)])
    assert_one_line(code, err, 2, NO)


@pytest.mark.parametrize(("name", "where"), cases("wrong_ref"))
def test_wrong_ref(name: str, where: str, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    spec = COMMANDS[name]
    code, _, err = call(capsys, [name, *world.fill(spec.wrong_ref or []), *spec.flags, *target(world, where)])
    line = assert_one_line(code, err, 2)
    assert NO in line or "99" in line, line


@pytest.mark.parametrize(("name", "where"), cases("bad_filter"))
def test_bad_filter(name: str, where: str, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    spec = COMMANDS[name]
    code, _, err = call(capsys, [name, *world.fill(spec.bad_filter or []), *spec.flags, *target(world, where)])
    assert_one_line(code, err, 2)


@pytest.mark.parametrize(("name", "where"), cases("ok", where=("server",)))
def test_unreachable_server(name: str, where: str, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = COMMANDS[name]
    code, _, err = call(capsys, [name, *world.fill(spec.ok), *spec.flags, "--server", url])
    line = assert_one_line(code, err, 3, url, "cannot reach the Lightbox service")
    assert "unreachable, request" not in line  # the SDK's status and request id mean nothing here


@pytest.mark.parametrize("name", [n for n, _ in cases("ok", where=("uri",)) if COMMANDS[n].needs_root])
def test_missing_root(name: str, world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = tmp_path / "does" / "not" / "exist"
    spec = COMMANDS[name]
    code, out, err = call(capsys, [name, *world.fill(spec.ok), *spec.flags, "--uri", str(nowhere)])
    assert_one_line(code, err, 2, f"no data root at {nowhere}")
    assert out == "" and not nowhere.exists()


@contextlib.contextmanager
def closed_stdout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """stdout is a pipe whose reader has gone (``| head`` after its lines): every flush is EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    pipe = open(write_end, "w")  # noqa: SIM115  (closed below, once the command is done)
    previous = sys.stdout
    monkeypatch.setattr(sys, "stdout", pipe)
    try:
        yield
    finally:
        monkeypatch.setattr(sys, "stdout", previous)
        with contextlib.suppress(OSError):
            pipe.close()


@pytest.mark.parametrize(("name", "where"), [c for c in cases("ok") if COMMANDS[c[0]].prints])
def test_closed_pipe_is_quiet(name: str, where: str, world: World, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = COMMANDS[name]
    with closed_stdout(monkeypatch):
        code = main([name, *world.fill(spec.ok), *spec.flags, *target(world, where)])
    assert code == 141 and code in documented_exit_codes()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [["diff", T, "1", "--ids"], ["log", T]], ids=["diff", "log"])
def test_closed_pipe_ends_a_real_process_quietly(argv: list[str], world: World) -> None:
    """As ``lightbox diff ... --ids | head`` and ``lightbox log ... | head``: the process's last flush of
    stdout (at interpreter exit) must not print "Exception ignored ... BrokenPipeError" either."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(cli_command(*argv, "--uri", world.root), stdout=write_end, stderr=subprocess.PIPE,
                              text=True, env=cli_env(), cwd=REPO_ROOT, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode == 141


# -- object-store mistakes (moto on loopback) ------------------------------------------------------
QUICK = {"connect_timeout": "2s", "timeout": "5s", "client_max_retries": "0"}  # a mistake is told at once


@contextlib.contextmanager
def moto_checks_credentials(endpoint: str) -> Iterator[None]:
    """moto accepts any key unless told to authenticate; its API turns that on (and back off) for a test."""
    httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
    try:
        yield
    finally:
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf").raise_for_status()


S3_MISTAKES = ("no_bucket", "bad_credentials", "wrong_endpoint")
# Each call costs Lance's list retries (about 2.5 s, not configurable), so each subcommand makes one of
# the three mistakes, in turn: every mistake is still made by six or seven commands, reads and writes.
S3_CASES = [(name, S3_MISTAKES[i % len(S3_MISTAKES)]) for i, (name, _) in enumerate(cases("ok", where=("uri",)))]


@pytest.mark.parametrize(("name", "mistake"), S3_CASES)
def test_object_store_mistakes(name: str, mistake: str, world: World, s3_root: object,
                               capsys: pytest.CaptureFixture[str]) -> None:
    options = {**s3_root.options, **QUICK}  # type: ignore[attr-defined]
    uri = s3_root.uri  # type: ignore[attr-defined]
    if mistake == "no_bucket":
        uri = "s3://nobucket/root"
    if mistake == "wrong_endpoint":
        options["endpoint"] = f"http://127.0.0.1:{free_port()}"
    flags = [arg for key, value in options.items() for arg in ("--storage-option", f"{key}={value}")]
    spec = COMMANDS[name]
    argv = [name, *world.fill(spec.ok), *spec.flags, "--uri", uri, *flags]
    with moto_checks_credentials(s3_root.endpoint) if mistake == "bad_credentials" else contextlib.nullcontext():  # type: ignore[attr-defined]
        code, _, err = call(capsys, argv)
    if mistake == "no_bucket":
        assert_one_line(code, err, 2, "bucket 'nobucket'", "does not exist")
    elif mistake == "bad_credentials":
        assert_one_line(code, err, 2, "refused the credentials", "InvalidAccessKeyId")
    else:
        assert_one_line(code, err, 3, options["endpoint"], "cannot reach the object store")


# -- what a run tells: where it wrote, and what it skipped ------------------------------------------
def test_ingest_names_the_root_it_wrote_and_says_it_created_it(world: World, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A user in another folder gets a second ./lightbox-data: the summary must say so, absolutely."""
    monkeypatch.delenv("LIGHTBOX_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = call(capsys, ["ingest", str(world.images), "--table", "t", "--no-progress"])
    assert code == 0, err
    assert f"root       {tmp_path / 'lightbox-data'}\n" in out
    assert f"created the data root {tmp_path / 'lightbox-data'}" in out
    code, out, _ = call(capsys, ["ingest", str(world.images), "--table", "u", "--no-progress"])
    assert f"root       {tmp_path / 'lightbox-data'}\n" in out and "created the data root" not in out


@pytest.mark.parametrize("where", ["uri", "server"])
def test_a_rerun_summarises_skips_by_reason(where: str, world: World, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Re-running an ingest skips every file as `duplicate_id`: the file that is really wrong comes first,
    each reason shows a few examples, and the full list is pointed to only where it is."""
    folder = write_images(tmp_path / "images")
    (folder / "0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    root = str(tmp_path / "data")
    table = f"skips_{where}"
    dest = ["--uri", root] if where == "uri" else ["--server", world.server.url]
    assert call(capsys, ["ingest", str(folder), "--table", table, "--no-progress", *dest])[0] == 0
    code, out, err = call(capsys, ["ingest", str(folder), "--table", table, "--no-progress", *dest])
    assert code == 0, err
    lines = out.splitlines()
    head = next(line for line in lines if line.startswith("skipped    7: "))
    bad_reason = head.removeprefix("skipped    7: ").split()[0]
    assert bad_reason != "duplicate_id" and head.endswith(", duplicate_id 6"), head
    broken = next(i for i, line in enumerate(lines) if "broken.png" in line)
    duplicates = [i for i, line in enumerate(lines) if "is already in the table" in line]
    assert len(duplicates) == 3 and broken < min(duplicates), out  # the real problem first, 3 examples
    assert "    ... and 3 more" in lines and "  to list every skipped file, run again with --report FILE" in lines
    report = tmp_path / "report.json"
    code, out, _ = call(capsys, ["ingest", str(folder), "--table", table, "--no-progress", "--report", str(report),
                                 *dest])
    assert f"  every skipped file is listed in {report}" in out.splitlines() and "--report FILE" not in out
    assert len(json.loads(report.read_text())["skipped"]) == 7


@pytest.mark.parametrize("where", ["uri", "server"])
def test_export_wants_the_destination_folder_to_exist(where: str, world: World, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Like cp or tar: a typo in the destination is refused, not a new tree of folders."""
    dest = tmp_path / "nonexistent" / "dir" / "x.parquet"
    code, _, err = call(capsys, ["export", T, str(dest), *target(world, where)])
    assert_one_line(code, err, 2, str(tmp_path / "nonexistent" / "dir"), "does not exist")
    assert not (tmp_path / "nonexistent").exists()
    shards = tmp_path / "shards"  # a destination folder itself is made when its parent exists
    code, _, err = call(capsys, ["export", T, str(shards), "--format", "webdataset", *target(world, where)])
    assert code == 0, err
    assert sorted(p.name for p in shards.iterdir()) == [f"{T}-000000.tar"]
