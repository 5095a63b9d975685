"""``lightbox demo``: real sample images that ship inside installed packages, as two tables.

- ``samples``: scikit-image's bundled photos and scans (PNG, JPEG, GIF, multi-page TIFF) and
  scikit-learn's two sample JPEGs, byte for byte as shipped, plus a 16-bit TIFF made from one.
- ``digits``: scikit-learn's 1,797 handwritten digits written as 8x8 PNGs in label folders, with a
  metadata CSV (split, pixel mean) joined by file name; tagged ``v1``.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from ingest.report import IngestReport

SAMPLE_SUFFIXES = (".png", ".jpg", ".gif", ".tif")


def sample_files() -> list[Path]:
    """Image files bundled with scikit-image and scikit-learn."""
    from lightbox.extras import need

    skimage_data = need("skimage.data", "samples", "lightbox demo")
    sklearn_datasets = need("sklearn.datasets", "samples", "lightbox demo")

    found = [p for p in sorted(Path(skimage_data.__file__).parent.iterdir()) if p.suffix in SAMPLE_SUFFIXES]
    found += sorted((Path(sklearn_datasets.__file__).parent / "images").glob("*.jpg"))
    return found


def write_samples(folder: Path) -> Path:
    """Copy the bundled images (unchanged) into ``folder``, plus one 16-bit TIFF."""
    import numpy as np
    import tifffile
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for path in sample_files():
        sub = folder / ("skimage" if "skimage" in str(path) else "sklearn")
        sub.mkdir(exist_ok=True)
        shutil.copyfile(path, sub / path.name)
    camera = np.asarray(Image.open(folder / "skimage" / "camera.png"))
    tifffile.imwrite(folder / "skimage" / "camera_uint16.tif", camera.astype(np.uint16) * 257)
    return folder


def write_digits(folder: Path) -> tuple[Path, Path]:
    """scikit-learn's digits as PNGs in ``<label>/`` folders, and a metadata CSV by file name."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder.parent / "digits.csv"
    with meta.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "split", "ink"])
        for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            name = f"{i:05d}.png"
            (folder / str(label)).mkdir(exist_ok=True)
            Image.fromarray((pixels * 15).astype("uint8"), mode="L").save(folder / str(label) / name)
            writer.writerow([name, "train" if i % 5 else "test", round(float(pixels.mean()), 3)])
    return folder, meta


def build_demo(store: Store, workdir: Path | None = None) -> list[IngestReport]:
    """Build (or top up) the two demo tables; re-running adds nothing."""
    base = workdir or (Path(store.uri) / "_demo_sources" if store.is_local else Path(".demo_sources"))
    samples = write_samples(base / "samples")
    digits, meta = write_digits(base / "digits")
    return [
        run_ingest(store, IngestOptions(table="samples", sources=[str(samples)], tag="v1",
                                        message="bundled sample images")),
        run_ingest(store, IngestOptions(table="digits", sources=[str(digits)], labels_from_dirs=True,
                                        metadata=str(meta), key="file", tag="v1",
                                        message="scikit-learn digits 0-9")),
    ]
