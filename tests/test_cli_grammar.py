"""The command line's one grammar: every option explained, aliases that run their command's code and
say they are aliases, ``--at REF`` with ``--branch B`` on every read, ``--filter/-f`` wherever rows
are chosen, and the table commands ``describe`` and ``drop``. Commands run in-process on a data root
(``lightbox.cli.main``), which is the same code as against a service (tests/test_cli_both_ways.py).
"""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import pytest

from app.store import Store
from lightbox.cli import build_parser, commands, main
from tests.test_cli_errors import write_images

T = "t"


@pytest.fixture
def root(tmp_path: Path) -> str:
    """A root with one table of 8 images, labels 0 and 1, tagged v1 (version 1)."""
    uri = str(tmp_path / "data")
    assert main(["ingest", str(write_images(tmp_path / "images", 8)), "--table", T, "--uri", uri, "--labels-from-dirs",
                 "--tag", "v1", "--no-progress"]) == 0
    return uri


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out


def subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


# -- the parser ------------------------------------------------------------------------------------
def test_every_option_and_argument_has_help() -> None:
    parser = build_parser()
    found = []
    for name, sub in {"lightbox": parser, **{n: subparsers(parser).choices[n] for n in commands(parser)}}.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not (action.help or "").strip():
                found.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not found, f"options without help: {found}"


def test_aliases_share_their_command_and_help_calls_them_aliases() -> None:
    parser = build_parser()
    choices = subparsers(parser).choices
    named = commands(parser)
    assert {alias: name for name, aliases in named.items() for alias in aliases} == \
        {"show": "row", "versions": "log", "tag": "tags"}
    top = parser.format_help()
    for name, aliases in named.items():
        for alias in aliases:
            assert choices[alias] is choices[name]  # the same parser, so the same handler and options
            assert re.search(rf"{name} \({alias}\) .*alias: {alias}", " ".join(top.split())), (name, alias)
    for name in named:  # an option that is an alias says of which, and that one exists beside it
        sub = choices[name]
        flags = {o for a in sub._actions for o in a.option_strings}
        for action in sub._actions:
            if (action.help or "").startswith("alias of "):
                assert action.help.removeprefix("alias of ") in flags | {a.dest for a in sub._actions}, action
    for name, flags in {"export": ("--tag", "--version"), "clone": ("--tag", "--version"), "branch": ("--from",),
                        "tags": ("--version",)}.items():
        helps = {o: a.help for a in choices[name]._actions for o in a.option_strings}
        assert all(helps[f] == "alias of --at" for f in flags), (name, helps)


# -- aliases run the same code ---------------------------------------------------------------------
def test_old_spellings_give_what_the_new_ones_give(root: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    where = ("--uri", root)
    assert ok(capsys, "show", T, "0/000.png", "--format", "json", *where) == \
        ok(capsys, "row", T, "0/000.png", "--format", "json", *where)
    assert ok(capsys, "versions", T, "--oneline", *where) == ok(capsys, "log", T, "--oneline", *where)
    assert ok(capsys, "query", T, "label = 1", *where) == ok(capsys, "query", T, "-f", "label = 1", *where) == \
        ok(capsys, "query", T, "--filter", "label = 1", *where)
    assert ok(capsys, "tag", T, "old", "--version", "1", *where).strip() == "tagged version 1 of t as old"
    assert ok(capsys, "tags", T, *where) == ok(capsys, "tag", T, *where)
    assert ok(capsys, "tag", T, "old", "--delete", *where).strip() == "deleted tag old"
    ok(capsys, "branch", T, "b1", "--from", "v1", *where)
    ok(capsys, "branch", T, "b2", "--at", "v1", *where)
    lines = ok(capsys, "branch", T, *where).splitlines()
    assert [line.split("\t")[2:] for line in lines] == [["from main@1", "8 rows"]] * 2
    a, b = ok(capsys, "export", T, str(tmp_path / "a.parquet"), "--tag", "v1", *where), \
        ok(capsys, "export", T, str(tmp_path / "b.parquet"), "--at", "v1", *where)
    assert a.replace("a.parquet", "b.parquet") == b
    assert ok(capsys, "clone", T, "c1", "--version", "1", *where).strip() == \
        "cloned t@1 as c1 (8 rows, no bytes copied)"
    ok(capsys, "delete", T, "-f", "label = 1", *where)
    assert ok(capsys, "restore", T, "v1", *where).startswith("restored version 1 as new version 3")
    code, _, err = run(capsys, "restore", T, "v1", "--at", "1", *where)
    assert code == 2 and "give the ref once" in err


def test_minus_f_is_the_filter_and_says_so_when_given_a_format(root: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "query", T, "-f", "csv", "--uri", root)
    assert code == 2 and out == "" and err.strip() == \
        "lightbox: error: -f is --filter; for the output format give --format csv"
    code, _, err = run(capsys, "query", T, "label = 1", "-f", "label = 0", "--uri", root)
    assert code == 2 and "give the filter once" in err
    assert ok(capsys, "count", T, "-f", "label = 1", "--uri", root).strip() == "4"
    assert ok(capsys, "count", T, "--uri", root).strip() == "8"
    out = ok(capsys, "delete", T, "--filter", "label = 1", "-m", "odd ones out", "--uri", root)
    assert out.strip() == "deleted 4 rows of t as version 2"
    assert ok(capsys, "count", T, "--at", "v1", "--uri", root).strip() == "8"
    assert "odd ones out" in ok(capsys, "log", T, "-n", "1", "--uri", root)
    code, _, err = run(capsys, "delete", T, "--uri", root)  # the filter is required: never "every row"
    assert code == 2 and "--filter" in err


# -- refs: --at and --branch -----------------------------------------------------------------------
def test_a_version_of_a_branch_is_at_n_with_branch(root: str, capsys: pytest.CaptureFixture[str]) -> None:
    where = ("--uri", root)
    ok(capsys, "branch", T, "b", *where)
    ok(capsys, "row", T, "0/000.png", "--set", "label=7", "--branch", "b", "-m", "relabel", *where)
    ok(capsys, "row", T, "0/002.png", "--set", "label=8", "--branch", "b", *where)
    store = Store(root)
    numbers = [v["version"] for v in json_log(capsys, root, "b")]
    before, latest = numbers[-2], numbers[-1]

    def labels(*ref: str) -> dict[str, int]:
        rows = json.loads(ok(capsys, "query", T, "-c", "id,label", "-f", "id < '0/003'", "--format", "json",
                             *ref, *where))
        return {r["id"]: r["label"] for r in rows}

    assert labels() == {"0/000.png": 0, "0/002.png": 0}  # main untouched
    assert labels("--branch", "b") == {"0/000.png": 7, "0/002.png": 8}
    assert labels("--branch", "b", "--at", str(before)) == {"0/000.png": 7, "0/002.png": 0}
    assert labels("--at", "v1") == labels()
    one = json.loads(ok(capsys, "row", T, "0/002.png", "--branch", "b", "--at", str(before), "--format", "json",
                        *where))
    assert one[0]["label"] == 0
    assert ok(capsys, "count", T, "-f", "label > 6", "--branch", "b", "--at", str(latest), *where).strip() == "2"
    # a tag on a branch's version, and a branch forked from one
    out = ok(capsys, "tags", T, "create", "b-before", "--branch", "b", "--at", str(before), *where)
    assert out.strip() == f"tagged version {before} of t as b-before (branch b)"
    assert labels("--at", "b-before") == {"0/000.png": 7, "0/002.png": 0}
    ok(capsys, "branch", T, "c", "--branch", "b", "--at", str(before), *where)
    assert labels("--branch", "c") == {"0/000.png": 7, "0/002.png": 0}
    assert store.latest(T).version == 1
    code, _, err = run(capsys, "query", T, "--branch", "b", "--at", "v1", *where)
    assert code == 2 and "with --branch give --at N" in err
    code, _, err = run(capsys, "query", T, "--branch", "b", "--at", "99", *where)
    assert code == 2 and "no version 99 on branch 'b'" in err


def json_log(capsys: pytest.CaptureFixture[str], root: str, branch: str) -> list[dict[str, object]]:
    lines = ok(capsys, "log", T, "--branch", branch, "--oneline", "--reverse", "-n", "0", "--uri", root).splitlines()
    return [{"version": int(line.split("\t")[0])} for line in lines]


# -- describe and drop -----------------------------------------------------------------------------
def test_describe_tells_schema_rows_versions_tags_branches_indexes_and_size(
        root: str, capsys: pytest.CaptureFixture[str]) -> None:
    where = ("--uri", root)
    ok(capsys, "branch", T, "b", *where)
    ok(capsys, "row", T, "1/001.png", "--set", "label=5", *where)
    described = json.loads(ok(capsys, "describe", T, "--json", *where))
    assert described["version"] == 2 and described["num_rows"] == 8 and described["versions"] == 2
    assert described["tags"] == {"v1": {"version": 1, "branch": None}}
    assert described["branches"]["b"]["version"] >= 1 and described["branches"]["b"]["num_rows"] == 8
    assert {"id", "image", "label"} <= {f["name"] for f in described["schema"]}
    size = described["size"]
    on_disk = sum(p.stat().st_size for p in (Path(root) / f"{T}.lance").rglob("*") if p.is_file())
    assert size["bytes"] == on_disk and size["files"] > 3 and size["parts"]["data"] > 0
    assert set(size["parts"]) <= {"data", "indexes", "versions", "deletions", "transactions", "refs", "branches",
                                  "notes", "other"}
    text = ok(capsys, "describe", T, *where)
    assert text.startswith("table      t\nversion    2\nrows       8\nversions   2\nsize       ")
    for section in ("schema", "tags", "branches", "indexes   (none)", "embeddings   (none)"):
        assert f"\n{section}" in text, section
    assert "\n  v1  version 1\n" in text and re.search(r"\n  b  version \d+, 8 rows, from main@1\n", text)
    at_v1 = json.loads(ok(capsys, "describe", T, "--at", "v1", "--json", *where))
    assert at_v1["version"] == 1 and at_v1["versions"] == 2  # the ref's version, the branch's whole log


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_drop_asks_on_a_terminal_and_needs_yes_elsewhere(root: str, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    where = ("--uri", root)
    code, out, err = run(capsys, "drop", T, *where)  # not a terminal: refused, nothing asked, nothing dropped
    assert code == 2 and out == "" and "add --yes" in err and len(err.strip().splitlines()) == 1
    assert Store(root).exists(T)
    for answer, dropped in (("n\n", False), ("\n", False), ("yes\n", True)):
        monkeypatch.setattr("sys.stdin", Terminal(answer))
        monkeypatch.setattr("sys.stderr", Terminal())
        code = main(["drop", T, *where])
        question = __import__("sys").stderr.getvalue()
        assert "drop table 't' (8 rows at version 1) and all its history? [y/N]" in question
        assert (code == 0) is dropped and Store(root).exists(T) is not dropped, answer
        monkeypatch.undo()
        if not dropped:
            assert "not dropped" in question
    code, _, err = run(capsys, "drop", T, "--yes", *where)
    assert code == 2 and "table 't' does not exist" in err


def test_drop_with_yes_drops_without_asking(root: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert ok(capsys, "drop", T, "--yes", "--uri", root).strip() == "dropped t"
    assert not Store(root).exists(T) and ok(capsys, "tables", "--uri", root) == ""


# -- optimize on a data root is the service's optimize ---------------------------------------------
def test_optimize_on_a_data_root_builds_and_tunes_vector_indexes(digits_dir: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``POST .../optimize``: the index keeper builds the vector index of a table past its size and
    tunes it to the recall target (the settings come from the environment, as for ``serve``)."""
    uri = str(tmp_path / "data")
    assert main(["ingest", str(digits_dir / "images"), "--table", "d", "--uri", uri, "--embed", "builtin",
                 "--no-progress"]) == 0
    monkeypatch.setenv("LIGHTBOX_INDEX_MIN_ROWS", "50")
    monkeypatch.setenv("LIGHTBOX_RECALL_SAMPLE", "20")
    capsys.readouterr()
    out = ok(capsys, "optimize", "d", "--uri", uri)
    assert out.startswith("optimized d: version ")
    indexes = json.loads(ok(capsys, "describe", "d", "--json", "--uri", uri))["indexes"]
    vector = [i for i in indexes if i["columns"] == ["vector"]]
    assert len(vector) == 1 and vector[0]["type"].startswith("IVF") and vector[0]["tuned"] is True
    assert vector[0]["num_unindexed_rows"] == 0 and vector[0]["recall"] >= vector[0]["recall_target"]
    assert "tune_index" in ok(capsys, "log", "d", "--oneline", "--uri", uri)
    assert "tuned: recall" in ok(capsys, "describe", "d", "--uri", uri)


def test_storage_options_are_for_a_data_root(capsys: pytest.CaptureFixture[str]) -> None:
    """A service has its own storage settings: the flag with --server is a mistake, told before any request."""
    code, out, err = run(capsys, "tables", "--server", "http://127.0.0.1:9", "--storage-option", "region=x")
    assert code == 2 and out == "" and "--storage-option is for a data root" in err
