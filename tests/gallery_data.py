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


# -- photos with COCO boxes ---------------------------------------------------------------------
PHOTO_SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                 "cat", "colorwheel", "camera", "moon", "coins", "brick", "grass", "gravel", "page", "text")
LONG_DIR = "categories/Adwaita_legacy_scalable/apps"  # a folder path as deep as real icon sets have
LOGO_ID = f"{LONG_DIR}/wide-logo.png"  # 560x120: the shape that shows squashing at once
RELABELLED = "photos/coffee.jpg"  # label 3 -> 8 in the table's last edit


def skimage_rgb(name: str) -> Image.Image:
    """A scikit-image sample as an RGB (or L) PIL image."""
    import skimage.data

    pixels = getattr(skimage.data, name)()
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    image = Image.fromarray(pixels)
    return image.convert("RGB") if image.mode not in ("RGB", "L") else image


def write_photos(folder: Path, count: int, size: tuple[int, int] = (1024, 768)) -> list[Path]:
    """``count`` distinct photo-sized JPEGs (crops of scikit-image's samples at shifting windows and
    scales, resized to ``size``): each has its own bytes, so no thumbnail is shared."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [skimage_rgb(n) for n in PHOTO_SOURCES]
    written = []
    for i in range(count):
        src = sources[i % len(sources)]
        w, h = src.size
        scale = 0.55 + 0.4 * ((i * 7) % 10) / 10
        cw, ch = max(16, int(w * scale)), max(16, int(h * scale))
        x, y = (i * 37) % max(1, w - cw), (i * 53) % max(1, h - ch)
        path = folder / f"{PHOTO_SOURCES[i % len(PHOTO_SOURCES)]}_{i:04d}.jpg"
        src.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BILINEAR).save(path, quality=88)
        written.append(path)
    return written


def build_photos(root: Path) -> dict[str, object]:
    """A ``photos`` table of real images of several shapes (a 560x120 logo, a tall strip, photos, a
    scan) under long folder names, with a label and split per image and builtin vectors; then COCO
    boxes (one with a polygon), a relabel (3 -> 8), a re-embedding into a second vector column, a
    branch with its own edit, and a clone (which tags its source version with a guard)."""
    import json

    from tests.conftest import InProcess

    src = root / "photo-sources"
    shapes = {
        "photos/astronaut.jpg": skimage_rgb("astronaut"),
        "photos/coffee.jpg": skimage_rgb("coffee"),
        "photos/chelsea.jpg": skimage_rgb("chelsea"),
        "scans/page.png": skimage_rgb("page"),
        LOGO_ID: skimage_rgb("coffee").crop((20, 140, 580, 260)),  # 560x120
        f"{LONG_DIR}/tall-strip.png": skimage_rgb("rocket").crop((300, 0, 380, 400)),  # 80x400
    }
    labels = {"photos/astronaut.jpg": (1, "train"), "photos/coffee.jpg": (3, "train"),
              "photos/chelsea.jpg": (2, "test"), "scans/page.png": (4, "train"), LOGO_ID: (5, "test"),
              f"{LONG_DIR}/tall-strip.png": (3, "test")}
    lines = ["file,label,split"]
    for rel, image in shapes.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90) if rel.endswith(".jpg") else image.save(path)
        lines.append(f"{rel},{labels[rel][0]},{labels[rel][1]}")
    meta = root / "photos.csv"
    meta.write_text("\n".join(lines) + "\n")
    uri = str(root / "photo-data")
    run_ingest(Store(uri), IngestOptions(table="photos", sources=[str(src)], metadata=str(meta), key="file",
                                         embed="builtin", message="photos", progress=False, workers=1))
    coco = {
        "images": [{"id": 1, "file_name": LOGO_ID}, {"id": 2, "file_name": "photos/astronaut.jpg"}],
        "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "person"}, {"id": 3, "name": "flag"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [40, 10, 120, 100]},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [400, 20, 150, 90]},
            {"id": 20, "image_id": 2, "category_id": 2, "bbox": [140, 20, 300, 492],
             "segmentation": [[160, 500, 200, 60, 320, 20, 420, 120, 440, 500]]},
            {"id": 21, "image_id": 2, "category_id": 3, "bbox": [10, 10, 80, 120]},
        ],
    }
    app = InProcess(uri)
    try:
        http = app.http()
        versions: dict[str, int] = {"ingest": http.get("/api/v1/tables/photos").json()["version"]}
        annotated = http.post("/api/v1/tables/photos/annotations", params={"format": "coco", "match": "id"},
                              content=json.dumps(coco), headers={"content-type": "application/json"})
        assert annotated.status_code == 200, annotated.text
        versions["annotate"] = annotated.json()["version"]
        relabel = http.patch(f"/api/v1/tables/photos/rows/{RELABELLED}", json={"label": 8})
        assert relabel.status_code == 200, relabel.text
        versions["relabel"] = relabel.json()["version"]
        embedded = http.post("/api/v1/tables/photos/embeddings", json={"model": "builtin", "column": "vec2"})
        assert embedded.status_code == 201, embedded.text
        versions["embed"] = embedded.json()["version"]
        assert http.post("/api/v1/tables/photos/branches", json={"name": "review"}).status_code == 201
        edit = http.patch("/api/v1/tables/photos/rows/scans/page.png", params={"branch": "review"},
                          json={"split": "test"})
        assert edit.status_code == 200, edit.text
        cloned = http.post("/api/v1/tables/photos/clone", json={"name": "photos_copy"})
        assert cloned.status_code == 201, cloned.text
    finally:
        app.close()
    return {"uri": uri, "versions": versions, "sizes": {k: v.size for k, v in shapes.items()}, "sources": src,
            "coco": coco}
