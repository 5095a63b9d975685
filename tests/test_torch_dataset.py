"""``Table.torch_dataset``: a map-style torch Dataset over a pinned version, real server, real images.

The DataLoader test runs two worker processes over a tag while another process keeps appending
rows through the SDK: every epoch must see exactly the tagged rows.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lightbox
from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import REPO_ROOT, LiveServer, cli_env

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

WRITER = """
import pathlib, sys
import lightbox
url, folder, stop = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
files = sorted(folder.rglob("*.png"))[:8]
table = lightbox.Client(url).table("digits")
n = 0
while not stop.exists() and n < 1000:
    out = table.add(files, ids=[f"more/{n}/{f.name}" for f in files],
                    metadata=[{"label": int(f.parent.name)} for f in files], message=f"append {n}")
    print(out["version"], flush=True)
    n += 1
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, digits_root: Path, samples_dir: Path) -> Iterator[LiveServer]:
    """A real server (the dataset and its forked workers open their own clients by URL) over a copy of
    ``digits_root`` and the samples."""
    root = tmp_path_factory.mktemp("torch") / "data"
    shutil.copytree(digits_root, root)
    store = Store(str(root), refresh_seconds=0.0)
    run_ingest(store, IngestOptions(table="samples", sources=[str(samples_dir)], progress=False, workers=1))
    live = LiveServer(store.uri).start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[lightbox.Client]:
    with lightbox.Client(server.url) as c:
        yield c


def test_dataset_reads_a_pinned_tag(client: lightbox.Client) -> None:
    t = client.table("digits")
    ds = t.at(tag="v1").torch_dataset(filter="split = 'train'", columns=["label"])
    assert len(ds) == t.count("split = 'train'") == 160 and ds.ref == {"tag": "v1"}
    sample = ds[0]
    assert set(sample) == {"id", "image", "label"}
    image = sample["image"]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (1, 8, 8)
    assert torch.equal(image[0], torch.from_numpy(t.array(sample["id"])))
    assert sample["label"] == t.get(sample["id"])["label"]
    assert ds[-1]["id"] == ds.ids[-1]
    batch = ds.__getitems__([5, 0, 5])
    assert [s["id"] for s in batch] == [ds.ids[5], ds.ids[0], ds.ids[5]]

    everything = t.at(tag="v1").torch_dataset()
    assert everything.columns == ["label", "split", "ink"] and len(everything) == 200
    raw = t.at(tag="v1").torch_dataset("label = 3", decode=False, transform=len)
    assert raw[0]["image"] == len(t.image_bytes(raw[0]["id"]))
    scaled = t.at(version=t.info()["version"]).torch_dataset("label = 3", transform=lambda x: x.float() / 255)
    assert scaled[0]["image"].dtype == torch.float32 and float(scaled[0]["image"].max()) <= 1.0

    again = pickle.loads(pickle.dumps(ds))  # picklable (spawn), with a fresh client in the new process
    assert again._client is None and again.ids == ds.ids and torch.equal(again[3]["image"], ds[3]["image"])


def test_dataset_pins_moving_refs_and_refuses_branches(client: lightbox.Client) -> None:
    t = client.clone("digits", "moving", tag="v1")
    latest = t.torch_dataset("label = 1")
    assert latest.ref == {"version": t.info()["version"]}
    t.delete("label = 1")
    assert t.count("label = 1") == 0 and len(latest) > 0 and latest[0]["label"] == 1
    b = t.create_branch("b")
    for handle in (b, t.at(branch="b")):
        with pytest.raises(ValueError, match="branch"):
            handle.torch_dataset()
    client.drop_table("moving")


def test_images_of_every_depth_decode_to_chw(client: lightbox.Client) -> None:
    """Each sample is the first frame of what ``/array`` decodes, channels first, in the documented dtype."""
    t = client.table("samples")
    ds = t.torch_dataset()
    rows = {r["id"]: r for r in t.query(columns=["id", "frames", "width", "height"], limit=None).to_pylist()}
    assert sorted(ds.ids) == sorted(rows) and len(rows) == 12
    dtypes = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.int32, np.dtype(np.float64): torch.float32}
    for i, row_id in enumerate(ds.ids):
        image, row = ds[i]["image"], rows[row_id]
        assert image.ndim == 3 and tuple(image.shape[1:]) == (row["height"], row["width"]), row_id
        pixels = t.array(row_id)
        first = pixels[0] if row["frames"] > 1 else pixels
        if first.ndim == 2:
            first = first[None]
        elif first.shape[-1] not in (3, 4):  # planar TIFF pages are CHW already
            assert first.shape[0] in (3, 4), row_id
        else:
            first = first.transpose(2, 0, 1)
        assert image.dtype == dtypes[pixels.dtype], row_id
        assert np.allclose(image.numpy(), first.astype(image.numpy().dtype)), row_id
    assert ds.ids and ds[ds.ids.index("camera16.tif")]["image"].max() > 255


def slow(image: Any) -> Any:
    time.sleep(0.01)  # long enough that the writer commits during every epoch
    return image


# the server under test runs in this process, so Lance is loaded here; the forked workers never use it
@pytest.mark.filterwarnings("ignore:lance is not fork-safe")
def test_dataloader_workers_see_only_the_tag_while_rows_are_appended(client: lightbox.Client, server: LiveServer,
                                                                    digits_dir: Path, tmp_path: Path) -> None:
    t = client.table("digits")
    tagged = {r["id"]: r["label"] for r in t.at(tag="v1").query(columns=["id", "label"], limit=None).to_pylist()}
    ds = t.at(tag="v1").torch_dataset(columns=["label"], transform=slow)
    assert ds[0]["id"] in tagged and ds._pid == os.getpid()  # the parent has a client; workers must make their own
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, server.url, str(digits_dir / "images"), str(stop)],
                              stdout=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO_ROOT)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip().isdigit()  # appending has begun
        loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)
        for _epoch in range(2):
            before = t.info()["version"]
            seen: dict[str, int] = {}
            for batch in loader:
                assert batch["image"].dtype == torch.uint8 and tuple(batch["image"].shape[1:]) == (1, 8, 8)
                for row_id, label in zip(batch["id"], batch["label"].tolist(), strict=True):
                    assert row_id not in seen
                    seen[row_id] = label
            assert seen == tagged
            assert t.info()["version"] > before  # the writer committed while this epoch ran
    finally:
        stop.touch()
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert t.count() > len(tagged) and t.at(tag="v1").count() == len(tagged)
