"""``AsyncClient``/``AsyncTable``: the same calls as the sync SDK (checked by signature), awaited."""

from __future__ import annotations

import asyncio
import inspect
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import lightbox
from tests.conftest import LiveServer
from tests.test_sdk import StubServer

NO_IO = {"table", "at", "branch"}  # build handles only: plain methods in both


def public(cls: type) -> dict[str, Any]:
    return {n: m for n, m in vars(cls).items() if callable(m) and not n.startswith("_")}


def params(fn: Any) -> list[tuple[str, Any, Any, Any]]:
    return [(p.name, p.kind, p.default, p.annotation) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize(("sync", "async_"), [(lightbox.Client, lightbox.AsyncClient),
                                              (lightbox.Table, lightbox.AsyncTable)])
def test_async_mirrors_sync_names_and_signatures(sync: type, async_: type) -> None:
    ours, theirs = public(sync), public(async_)
    assert sorted(ours) == sorted(theirs)
    assert [p[:3] for p in params(sync.__init__)] == [p[:3] for p in params(async_.__init__)]
    for name, fn in ours.items():
        twin = theirs[name]
        assert params(fn) == params(twin), name
        assert not inspect.iscoroutinefunction(fn) and not inspect.isasyncgenfunction(fn), name
        if name in NO_IO:
            assert not inspect.iscoroutinefunction(twin), name
        elif name == "iter_batches":
            assert inspect.isgeneratorfunction(fn) and inspect.isasyncgenfunction(twin)
        else:
            assert inspect.iscoroutinefunction(twin), name
        assert twin.__doc__ and fn.__doc__ and inspect.cleandoc(fn.__doc__) in twin.__doc__, name


def test_sorted_public_surface() -> None:
    # classes first, then the rest, each in order (ruff's isort-style order for __all__, RUF022)
    assert lightbox.__all__ == sorted(lightbox.__all__, key=lambda n: (not n[:1].isupper(), n))
    assert all(hasattr(lightbox, n) for n in lightbox.__all__)
    # importing the SDK must not import torch (an optional extra); checked in a fresh interpreter
    probe = subprocess.run([sys.executable, "-c", "import sys, lightbox; print('torch' in sys.modules)"],
                           capture_output=True, text=True, timeout=60, check=True)
    assert probe.stdout.strip() == "False"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, digits_root: Path) -> Iterator[LiveServer]:
    """A real server (the torch dataset the scenario ends with opens its own client by URL) over a copy
    of ``digits_root``."""
    root = tmp_path_factory.mktemp("sdk-async") / "data"
    shutil.copytree(digits_root, root)
    live = LiveServer(str(root)).start()
    yield live
    live.stop()


def test_async_scenario_matches_sync(server: LiveServer, digits_dir: Path) -> None:
    sync = lightbox.Client(server.url)
    st = sync.table("digits")

    async def scenario() -> None:
        async with lightbox.AsyncClient(server.url) as client:
            assert await client.tables() == sync.tables()
            t = client.table("digits")
            assert await t.count("label = 3") == st.count("label = 3")
            assert await t.get("3/00003.png") == st.get("3/00003.png")
            assert await t.image_bytes("3/00003.png") == (digits_dir / "images" / "3/00003.png").read_bytes()
            threes = await t.query("label = 3", columns=["id", "ink"])
            assert threes.equals(st.query("label = 3", columns=["id", "ink"]))
            ids = [f"{i % 10}/{i:05d}.png" for i in range(40)]
            present = st.fetch(ids, ["id", "label"])
            # 20 concurrent fetches over one pooled connection set, each in the order asked
            many = await asyncio.gather(*(t.fetch(ids[i:] + ids[:i], ["id", "label"]) for i in range(20)))
            for i, table in enumerate(many):
                assert table.num_rows == present.num_rows and (i or table.equals(present))
            batches = [b async for b in t.iter_batches(columns=["id", "label"], batch_size=64)]
            assert [b.num_rows for b in batches] == [64, 64, 64, 8]
            assert pa.Table.from_batches(batches).equals(st.query(columns=["id", "label"], limit=None))
            assert (await t.to_pandas("split = 'test'")).shape[0] == st.count("split = 'test'")

            copy = await client.clone("digits", "async-copy", tag="v1")
            await copy.tag("base")
            pinned = copy.at(tag="base")
            await copy.update("3/00003.png", {"label": 8})
            await copy.add([digits_dir / "images" / "0/00000.png"], ids=["more/0.png"], metadata=[{"label": 0}])
            assert (await pinned.get("3/00003.png"))["label"] == 3 and await pinned.count() == 200
            assert (await copy.get("3/00003.png"))["label"] == 8 and await copy.count() == 201
            diff = await copy.diff("base")
            assert diff == sync.table("async-copy").diff("base") and diff["added"] == ["more/0.png"]
            assert await copy.versions() == sync.table("async-copy").versions()
            branch = await copy.create_branch("b")
            await branch.delete("label = 1")
            assert await copy.at(branch="b").count("label = 1") == 0 and await copy.count("label = 1") > 0
            assert (await copy.merge("b"))["merged"] and await copy.count("label = 1") == 0
            with pytest.raises(lightbox.ReadOnly):
                await pinned.delete("label = 2")
            with pytest.raises(lightbox.NotFound) as missing:
                await t.get("9/99999.png")
            assert missing.value.code == "row_not_found" and missing.value.request_id
            ds = await t.at(tag="v1").torch_dataset("label = 3", columns=["label"])
            assert len(ds) == st.count("label = 3") and ds[0]["label"] == 3
            await client.drop_table("async-copy")

    asyncio.run(scenario())
    sync.close()


def test_async_retries_idempotent_calls_only() -> None:
    async def run(url: str) -> None:
        async with lightbox.AsyncClient(url, retries=3, backoff=0.01) as client:
            t = client.table("t")
            assert await t.count() == 7
            assert (await t.query("a = 1")).column("id").to_pylist() == ["a", "b"]
            with pytest.raises(lightbox.ServiceUnavailable) as caught:
                await t.add([b"png"])
            assert caught.value.request_id == "stub-1"

    with StubServer(fails=2) as stub:
        asyncio.run(run(stub.url))
        assert stub.count("GET", "/count") == 3 and stub.count("POST", "/query") == 3
        assert stub.count("POST", "/rows") == 1
