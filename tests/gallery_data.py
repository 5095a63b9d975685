"""Demo-like data for the gallery's browser tests and benchmark: the demo ``digits`` table in three writes.

The first write holds the digits 0-4 and is tagged ``v1``; a later write adds 5-9, and a last
one replaces one row's image (an upsert of inverted pixels), so the grid at ``v1`` shows fewer
(older) rows than latest and a diff has added rows and a changed image. Every write fills a
``vector`` column with the builtin embedder, so search works.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps

from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from lightbox.demo import write_digits

FIRST_LABELS = ("0", "1", "2", "3", "4")
CHANGED_ID = "3/00003.png"  # its image is replaced in the last version


def build_digits(root: Path) -> dict[str, object]:
    """Write the digits table under ``root / "data"``; returns what the tests check against."""
    sources = root / "sources"
    folder, meta = write_digits(sources / "digits")
    first, later = sources / "first", sources / "later"
    for label_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        dest = (first if label_dir.name in FIRST_LABELS else later) / label_dir.name
        shutil.copytree(label_dir, dest)
    uri = str(root / "data")
    store = Store(uri)
    common = {"table": "digits", "labels_from_dirs": True, "metadata": str(meta), "key": "file", "embed": "builtin",
              "progress": False}
    run_ingest(store, IngestOptions(sources=[str(first)], tag="v1", message="digits 0-4", author="demo", **common))
    run_ingest(store, IngestOptions(sources=[str(later)], message="digits 5-9", author="demo", **common))
    replaced = sources / "replaced" / CHANGED_ID
    replaced.parent.mkdir(parents=True)
    ImageOps.invert(Image.open(folder / CHANGED_ID)).save(replaced)
    run_ingest(store, IngestOptions(sources=[str(sources / "replaced")], message="invert one digit", author="demo",
                                    mode="upsert", **common))
    deep = sources / "deep"  # images a browser cannot show: the gallery renders them like thumbnails
    deep.mkdir()
    ramp = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    tifffile.imwrite(deep / "ramp_uint16.tif", (ramp * 4000).astype(np.uint16))
    tifffile.imwrite(deep / "ramp_float32.tif", ramp * 3.5 - 1)
    run_ingest(store, IngestOptions(table="deep", sources=[str(deep)], message="deep TIFFs", progress=False))
    v1_rows = sum(1 for d in first.iterdir() for _ in d.iterdir())
    return {"uri": uri, "v1_rows": v1_rows, "rows": store.latest("digits").count_rows(), "digits": folder}
