"""Shared pieces of the service benchmarks (http, timetravel, service_memory).

Servers run as subprocesses (``lightbox serve``, the LMDB anchor, or a variant of Lightbox built
for an experiment), each stopped by its own pid. The served image table is built once with the
ingest pipeline from bench/common.py's synthetic PNGs and cached under bench/data/. Nothing here
does I/O at import time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import DATA_DIR, PROJECT_DIR, cap_threads, make_pngs, walk

TABLE = "images"
SERVE_FORMAT = "s1"  # bump when the served table's layout changes, so the cache is rebuilt


# -- served table ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServedTable:
    """A Lightbox data root holding ``TABLE``: ``n`` PNG rows committed over ``versions``."""

    root: Path
    folder: Path  # the PNG files; their relative paths are the row ids
    ids: list[str]
    versions: list[int]
    table: str = TABLE


def served_table(n: int, parts: int = 4) -> ServedTable:
    """``n`` 28x28 PNGs with label/split metadata, ingested as ``parts`` versions (cached).

    ``commit_every = n / parts`` gives the table a few versions, so ``?version=`` reads hit pinned
    handles; version 1 holds the first ``n / parts`` rows.
    """
    from app.store import Store
    from ingest.pipeline import IngestOptions, run_ingest

    data = make_pngs(n)
    root = DATA_DIR / f"serve-mnist-{n}"
    marker = DATA_DIR / f"serve-mnist-{n}.json"
    stamp = f"{SERVE_FORMAT}-{n}-{parts}"
    ids = walk(data.folder)
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("stamp") == stamp:
            return ServedTable(root, data.folder, ids, list(info["versions"]))
    shutil.rmtree(root, ignore_errors=True)
    marker.unlink(missing_ok=True)
    started = time.perf_counter()
    opts = IngestOptions(table=TABLE, sources=[str(data.folder)], metadata=str(data.labels_csv), key="file",
                         commit_every=-(-n // parts), progress=False, message="bench table")
    report = run_ingest(Store(str(root)), opts)
    if report.added != n or report.skipped:
        raise RuntimeError(f"ingest of the served table went wrong: {report.to_dict()}")
    marker.write_text(json.dumps({"stamp": stamp, "versions": report.versions}))
    print(f"  ingested {n} rows as versions {report.versions} in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)
    return ServedTable(root, data.folder, ids, list(report.versions))


def ids_at(root: Path, table: str, version: int) -> list[str]:
    """The ids of ``table`` at ``version`` (read with pylance directly)."""
    import lance

    ds = lance.dataset(str(root / f"{table}.lance"), version=version)
    return [str(x) for x in ds.to_table(columns=["id"]).column("id").to_pylist()]


# -- server processes ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One server subprocess and where its log goes."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str, timeout: float = 120.0) -> Server:
        cap_threads()
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv, cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait(ready_path, timeout)
        return self

    def _wait(self, path: str, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   f"{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.base + path, timeout=5.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready after {timeout:.0f} s; see {self.log_path}")

    def rss_mb(self) -> float:
        import psutil

        return float(psutil.Process(self.pid).memory_info().rss) / 1024**2

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # this pid only
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


def lightbox_server(root: Path, log_dir: Path, port: int | None = None, env: dict[str, str] | None = None) -> Server:
    """``lightbox serve`` exactly as a user runs it (``env``: ``LIGHTBOX_*`` settings, e.g. production's)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "lightbox.cli", "serve", "--uri", str(root), "--port", str(port)]
    return Server("lightbox", argv, port, log_dir / f"lightbox-{port}.log", env=dict(env or {}))


def variant_server(root: Path, variant: str, log_dir: Path, port: int | None = None) -> Server:
    """Lightbox with one experimental change applied from bench/_lightbox_variant.py (app/ untouched)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "bench._lightbox_variant", "--uri", str(root), "--port", str(port),
            "--variant", variant]
    return Server(f"lightbox[{variant}]", argv, port, log_dir / f"variant-{variant}-{port}.log")


def lmdb_server(path: Path, log_dir: Path, port: int | None = None) -> Server:
    port = port or free_port()
    argv = [sys.executable, "-m", "bench._lmdb_server", "--path", str(path), "--port", str(port)]
    return Server("lmdb", argv, port, log_dir / f"lmdb-{port}.log")


# -- wrk --------------------------------------------------------------------------------------
# wrk's end of run, shared by the load scripts (here and bench/_search_served.py): one JSON line of results
WRK_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "mean_us": %.1f, "max_us": %d, "err_status": %d, "err_connect": %d, ' ..
    '"err_read": %d, "err_write": %d, "err_timeout": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
"""
WRK_LUA = r"""
-- Generated by bench/_serving.py: GET PREFIX..id..SUFFIX with ids drawn at random (fixed seed, so
-- every server sees the same sequence); one JSON line of results at the end.
local prefix = %(prefix)s
local suffix = %(suffix)s
local headers = %(headers)s
local ids = {}
for line in io.lines(%(ids)s) do ids[#ids + 1] = line end
local n = #ids

function init(args)
  math.randomseed(%(seed)d)
end

function request()
  return wrk.format("GET", prefix .. ids[math.random(n)] .. suffix, headers)
end

%(done)s"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for these values


def write_wrk_script(path: Path, ids: Sequence[str], ids_path: Path, prefix: str, suffix: str = "",
                     seed: int = 42, headers: dict[str, str] | None = None) -> Path:
    """A wrk script requesting ``prefix + id + suffix`` with ``headers`` (e.g. an API key) on each request."""
    ids_path.write_text("\n".join(ids) + "\n")
    table = "{" + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in (headers or {}).items()) + "}"
    path.write_text(WRK_LUA % {"prefix": _lua_string(prefix), "suffix": _lua_string(suffix), "headers": table,
                               "ids": _lua_string(str(ids_path)), "seed": seed, "done": WRK_DONE})
    return path


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")


def run_wrk(base: str, script: Path, connections: int, seconds: float, threads: int = 1) -> WrkResult:
    """Closed-loop keep-alive load: ``connections`` connections on ``threads`` wrk threads."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script),
            base + "/"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    match = re.search(r"^WRKJSON (\{.*\})$", proc.stdout, re.M)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    raw: dict[str, Any] = json.loads(match.group(1))
    errors = sum(int(raw[k]) for k in ("err_status", "err_connect", "err_read", "err_write", "err_timeout"))
    return WrkResult(int(raw["requests"]), raw["duration_us"] / 1e6, raw["p50_us"] / 1e3, raw["p90_us"] / 1e3,
                     raw["p99_us"] / 1e3, raw["mean_us"] / 1e3, errors)


# -- server CPU ----------------------------------------------------------------------------------
def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) a process has used so far, by thread group.

    ``loop`` is the main thread (uvicorn's event loop), ``lance`` the live threads Lance names
    (``lance_*``), ``threads`` everything else (the anyio threadpool, tokio workers, and threads
    that have exited: the process total from /proc/PID/stat includes them).
    """
    tick = os.sysconf("SC_CLK_TCK")

    def seconds(stat: Path) -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    total = seconds(Path(f"/proc/{pid}/stat"))
    loop = lance = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            spent = seconds(task / "stat")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if task.name == str(pid):
            loop += spent
        elif comm.startswith("lance"):
            lance += spent
    return {"loop": loop, "lance": lance, "threads": max(0.0, total - loop - lance)}


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in after}
