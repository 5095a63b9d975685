"""Checks and harnesses shared by the test modules: the error shape, the command line run in this
process or on a terminal, and small image and Arrow payloads."""

from __future__ import annotations

import contextlib
import io
import os
import select
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

__all__ = ["Ran", "arrow_stream", "assert_error", "on_terminal", "run_cli"]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The status, and exactly the one error shape ``{"error": {"code", "message", "detail"}}`` (with
    ``code`` if given); returns the error object."""
    request = response.request
    assert response.status_code == status, (request.method, str(request.url), response.status_code,
                                            response.text[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "detail"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["detail"], dict), error
    if code is not None:
        assert error["code"] == code, error
    return error


def arrow_stream(table: pa.Table) -> bytes:
    """``table`` as one Arrow IPC stream (the body of an Arrow upload)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# -- the command line in this process ----------------------------------------------------------------
@dataclass
class Ran:
    """What one ``lightbox`` command did: its exit status and what it printed (as ``CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Ran:
    """``lightbox ARGS...`` run to completion by ``lightbox.cli.main`` in this process, from ``cwd`` and
    with ``env`` added to the environment (both restored after), stdout and stderr captured.

    The same parser, handlers and exit statuses as the installed command, without a child interpreter
    (about two seconds of start-up and imports each). Tests of what only a process shows (a terminal,
    signals, a closed pipe, the imports an HTTP-only use pulls in) run the real command instead.
    """
    from lightbox.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _environment(env or {}), _directory(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse refused the arguments themselves
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return Ran(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*env, "LIGHTBOX_URI")}
    os.environ.pop("LIGHTBOX_URI", None)  # as the child processes run: only what the test sets
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _directory(cwd: Path | None) -> Iterator[None]:
    if cwd is None:
        yield
        return
    cwd.mkdir(parents=True, exist_ok=True)
    before = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


# -- a child process whose stderr is a terminal --------------------------------------------------------
def on_terminal(command: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float = 120,
                columns: int = 100) -> tuple[int, bytes, str]:
    """Run ``command`` with stderr on a pseudo-terminal of ``columns`` columns (stdout a pipe, stdin
    empty); returns (exit status, what the terminal showed, stdout)."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))  # a real terminal's size
    try:
        proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL,
                                env=dict(env), cwd=cwd)
        os.close(follower)
        terminal = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the child closed its end
                    break
                if not chunk:
                    break
                terminal += chunk
            elif proc.poll() is not None:
                break
        stdout = proc.communicate(timeout=60)[0].decode()
    finally:
        os.close(leader)
    return proc.returncode, terminal, stdout


def middleware(server: Any, cls: type) -> Any:
    """An in-process app's middleware of type ``cls`` (the middleware stack is built by the first request)."""
    node: Any = server.app.middleware_stack
    while not isinstance(node, cls):
        node = node.app
    return node


def without_middleware(server: Any, cls: type) -> Any:
    """The same in-process app without the middleware ``cls`` (set before its first request)."""
    server.app.user_middleware = [m for m in server.app.user_middleware if m.cls is not cls]
    return server
