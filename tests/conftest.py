"""Shared fixtures: a real Lance store on tmp_path, real images, the service's app in this process, and a
real server on loopback for the tests whose point is a socket or a process."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tifffile
import uvicorn
from PIL import Image

from app.main import create_app
from app.serving import server_config
from app.settings import Settings
from app.store import Store
from lightbox import AsyncClient, Client
from lightbox._inprocess import AppThread, InProcessTransport
from lightbox.demo import sample_files
from tests.serve_procs import REPO_ROOT, free_port

os.environ.setdefault("LANCE_LOG", "error")


@pytest.fixture
def data_uri(tmp_path: Path) -> str:
    return str(tmp_path / "data")


@pytest.fixture
def store(data_uri: str) -> Store:
    return Store(data_uri, refresh_seconds=0.0)


def _copy_samples(dest: Path) -> Path:
    """Real images as shipped by scikit-image/scikit-learn, plus a 16-bit TIFF made from one."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sample_files():
        if path.name in {"astronaut.png", "camera.png", "horse.png", "multipage.tif", "multipage_rgb.tif",
                         "no_time_for_that_tiny.gif", "rocket.jpg", "china.jpg", "chessboard_GRAY.png"}:
            shutil.copyfile(path, dest / path.name)
    camera = np.asarray(Image.open(dest / "camera.png"))
    tifffile.imwrite(dest / "camera16.tif", camera.astype(np.uint16) * 257)
    Image.open(dest / "camera.png").convert("RGB").save(dest / "camera.webp", quality=80)
    Image.open(dest / "camera.png").save(dest / "camera.bmp")
    return dest


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real sample images in several formats (read-only for tests)."""
    return _copy_samples(tmp_path_factory.mktemp("samples") / "images")


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's digits as PNGs in ``<label>/`` folders (200 of them) plus ``digits.csv``."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    images = root / "images"
    digits = load_digits()
    lines = ["file,split,ink"]
    for i in range(200):
        label = int(digits.target[i])
        (images / str(label)).mkdir(parents=True, exist_ok=True)
        name = f"{i:05d}.png"
        Image.fromarray((digits.images[i] * 15).astype("uint8"), mode="L").save(images / str(label) / name)
        lines.append(f"{name},{'train' if i % 5 else 'test'},{digits.images[i].mean():.3f}")
    (root / "digits.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path) -> Path:
    """A data root holding ``digits``: the 200 digits (ids like ``3/00012.png``, labels from the folders,
    ``digits.csv`` metadata, builtin vectors) as one version tagged ``v1``. Built once for the session and
    read-only: a module that writes copies it (``shutil.copytree``) first."""
    from ingest.pipeline import IngestOptions, run_ingest

    root = tmp_path_factory.mktemp("digits-root") / "data"
    run_ingest(Store(str(root)), IngestOptions(
        table="digits", sources=[str(digits_dir / "images")], labels_from_dirs=True,
        metadata=str(digits_dir / "digits.csv"), key="file", tag="v1", embed="builtin", progress=False, workers=1))
    return root


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path) -> Path:
    """A data root holding ``mnist``: the 200 digits with labels from the folders and builtin vectors, as
    the official LanceDB clients' tests read it. Built once, read-only: copy it (``shutil.copytree``)."""
    from ingest.pipeline import IngestOptions, run_ingest

    root = tmp_path_factory.mktemp("mnist-root") / "data"
    run_ingest(Store(str(root), refresh_seconds=0.0), IngestOptions(
        table="mnist", sources=[str(digits_dir / "images")], labels_from_dirs=True, embed="builtin",
        progress=False, workers=1))
    return root


class InProcess:
    """The service's app over a data root in this process, lifespan run, no socket: ``.http()`` is a
    raw httpx client (headers, status codes, bodies) and ``.sdk()`` the SDK, both as over HTTP.

    Settings are those of ``LiveServer`` (the defaults, latest refreshed on every read) plus the
    overrides, e.g. ``InProcess(uri, max_upload_bytes=1000)``. Every client shares the one app, which
    ``close()`` shuts down (the store and the index keeper close).
    """

    url = "http://lightbox.local"

    def __init__(self, uri: str, **overrides: object) -> None:
        self.settings = Settings(**{"uri": uri, "latest_refresh_seconds": 0.0, **overrides})  # type: ignore[arg-type]
        self.app = create_app(self.settings)
        self.thread = AppThread(self.app)

    def transport(self) -> httpx.BaseTransport:
        return _SharedTransport(self.thread)

    def http(self, **options: Any) -> httpx.Client:
        return httpx.Client(transport=self.transport(), **{"base_url": self.url, "timeout": 60, **options})

    def sdk(self, api_key: str | None = None, **options: Any) -> Client:
        return Client(self.url, api_key, transport=self.transport(), **options)

    def async_sdk(self, api_key: str | None = None, **options: Any) -> AsyncClient:
        return AsyncClient(self.url, api_key, transport=_AsyncTransport(self.transport()), **options)

    def close(self) -> None:
        self.thread.close()


class _SharedTransport(InProcessTransport):
    """A client's transport to an ``InProcess`` app: closing the client leaves the app running."""

    def close(self) -> None:
        pass


class _AsyncTransport(httpx.AsyncBaseTransport):
    """The async SDK's transport to an ``InProcess`` app: the sync one, run in a worker thread."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self.transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response = await asyncio.to_thread(self.transport.handle_request, request)
        body = await asyncio.to_thread(lambda: b"".join(response.iter_raw()))  # as the app encoded it
        return httpx.Response(response.status_code, headers=response.headers, stream=httpx.ByteStream(body),
                              request=request)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` run first: a worker that starts a 40 s soak last would run alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: the rest keep their order


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, digits_root: Path, request: pytest.FixtureRequest) -> str:
    """The module's writable data root: a copy of ``digits_root`` (200 real digits, labels, CSV metadata,
    builtin vectors, tagged v1), unless the module defines a ``root`` of its own."""
    uri = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]) / "data"
    shutil.copytree(digits_root, uri)
    return str(uri)


@pytest.fixture(scope="module")
def app(root: str) -> Iterator[InProcess]:
    """The service over the module's own ``root`` fixture, in this process, shared by the module's tests."""
    served = InProcess(root)
    yield served
    served.close()


@pytest.fixture
def in_process() -> Iterator[Callable[..., InProcess]]:
    """Serve data roots in this process: ``in_process(uri, **settings)``; all are shut down after the test."""
    started: list[InProcess] = []

    def start(uri: str, **overrides: object) -> InProcess:
        started.append(InProcess(uri, **overrides))
        return started[-1]

    yield start
    for app in started:
        app.close()


class LiveServer:
    """A real uvicorn server on 127.0.0.1 in a background thread (for what needs a socket)."""

    def __init__(self, uri: str, **overrides: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = Settings(**{"uri": uri, "latest_refresh_seconds": 0.0, **overrides})  # type: ignore[arg-type]
        config = server_config(create_app(settings), settings, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server() -> Iterator[Callable[[str], LiveServer]]:
    """Start servers over given data roots; all are stopped after the test."""
    started: list[LiveServer] = []

    def start(uri: str) -> LiveServer:
        server = LiveServer(uri).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# -- the real `lightbox` command in a child process (ingest tests) ------------------------------


def cli_env() -> dict[str, str]:
    """The environment a `lightbox` child process runs with: this checkout importable, Lance quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["LANCE_LOG"] = "error"
    env.pop("LIGHTBOX_URI", None)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lightbox.cli", *args]


@pytest.fixture
def cli() -> Callable[..., Any]:
    """Run `lightbox ARGS...` to completion with stdout and stderr captured: ``lightbox.cli.main`` in this
    process (``tests.helpers.run_cli``). Tests of what only a process shows (a terminal, a closed pipe,
    signals, the imports a use pulls in) run ``cli_command`` in a child instead."""
    from tests.helpers import run_cli

    def run(*args: str | Path, timeout: float = 120) -> Any:
        return run_cli(*args)

    return run


# -- a live server with Settings overrides (e.g. a small upload limit) --------------------------
@pytest.fixture
def tuned_server() -> Iterator[Callable[..., LiveServer]]:
    """Like ``live_server``, with Settings overrides: ``tuned_server(uri, max_upload_bytes=1000)``."""
    started: list[LiveServer] = []

    def start(uri: str, **overrides: object) -> LiveServer:
        server = LiveServer(uri, **overrides).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# -- the JSON access log, as the service writes it ---------------------------------------------------
class Lines(logging.Handler):
    """The messages of the records a logger handled."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_lines() -> Iterator[Lines]:
    """The lines of ``lightbox.access`` (the JSON access log) written during the test."""
    handler = Lines()
    log = logging.getLogger("lightbox.access")
    log.addHandler(handler)
    yield handler
    log.removeHandler(handler)


# -- an S3-compatible server on loopback (moto), for the object-storage tests ---------------------
@pytest.fixture(scope="session")
def moto_s3() -> Iterator[object]:
    pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    from tests.s3 import MotoS3

    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def s3_root(moto_s3: object) -> object:
    """A fresh, empty data root on the loopback S3 server: ``.uri``, ``.options``, ``.flags()``, ``.env()``."""
    return moto_s3.root()  # type: ignore[attr-defined]


# -- the gallery's browser tests: one Chromium a module, a watched page a test over the module's ``server``
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from tests.browser import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: object, server: Any, request: pytest.FixtureRequest) -> Iterator[object]:
    from tests.browser import watched_page

    with watched_page(browser, server.url, request.node.name) as pg:
        yield pg
