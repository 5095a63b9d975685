"""The shared test harnesses do what the tests that use them rely on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.helpers import on_terminal, run_cli


def test_on_terminal_gives_the_child_a_terminal_of_the_given_width(tmp_path: Path) -> None:
    script = ("import os, sys; print(sys.stderr.isatty(), os.get_terminal_size(2).columns, file=sys.stderr); "
              "print('to the pipe')")
    code, terminal, stdout = on_terminal([sys.executable, "-c", script], env=dict(os.environ), cwd=tmp_path,
                                         columns=77)
    assert code == 0
    assert terminal.split() == [b"True", b"77"]
    assert stdout == "to the pipe\n"


def test_run_cli_runs_from_the_directory_and_environment_given_and_restores_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIGHTBOX_URI", str(tmp_path / "not-this-one"))
    before = os.getcwd()
    relative = run_cli("tables", "--uri", "root", cwd=tmp_path / "here")  # a relative root, from `here`
    assert relative.returncode == 2 and str(tmp_path / "here" / "root") in relative.stderr, relative
    from_env = run_cli("tables", env={"LIGHTBOX_URI": str(tmp_path / "from-env")})
    assert from_env.returncode == 2 and str(tmp_path / "from-env") in from_env.stderr, from_env
    assert os.getcwd() == before and os.environ["LIGHTBOX_URI"] == str(tmp_path / "not-this-one")
    refused = run_cli("no-such-command")  # argparse's own exit
    assert refused.returncode == 2 and "invalid choice" in refused.stderr
