"""``lightbox demo``: real sample images that ship inside installed packages, as two tables.

- ``samples``: scikit-image's bundled photos and scans (PNG, JPEG, GIF, multi-page TIFF) and
  scikit-learn's two sample JPEGs, byte for byte as shipped, plus a 16-bit TIFF made from one.
- ``digits``: scikit-learn's 1,797 handwritten digits written as 8x8 PNGs in label folders, with a
  metadata CSV (split, pixel mean) joined by file name; tagged ``v1``.

Building (``build_demo``) and serving (``lightbox serve``) are separate steps, so the demo can run again
on the same root: it builds only what is missing and serves what it finds.
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


DEMO_TABLES = ("samples", "digits")


def build_demo(store: Store, workdir: Path | None = None) -> dict[str, IngestReport | None]:
    """Build the demo tables the root does not have yet; each one found is kept as it is.

    A table found may have moved on since it was built (rows edited, tags moved, a restore), so it is
    neither topped up nor re-tagged: running the demo again never fails and never overwrites anyone's
    work. Returns each table's ingest report, or ``None`` for a table that was found.
    """
    base = workdir or (Path(store.uri) / "_demo_sources" if store.is_local else Path(".demo_sources"))
    out: dict[str, IngestReport | None] = {}
    for name in DEMO_TABLES:
        out[name] = None if store.exists(name) else _BUILDERS[name](store, base)
    return out


def _build_samples(store: Store, base: Path) -> IngestReport:
    samples = write_samples(base / "samples")
    return run_ingest(store, IngestOptions(table="samples", sources=[str(samples)], tag="v1",
                                           message="bundled sample images"))


def _build_digits(store: Store, base: Path) -> IngestReport:
    digits, meta = write_digits(base / "digits")
    return run_ingest(store, IngestOptions(table="digits", sources=[str(digits)], labels_from_dirs=True,
                                           metadata=str(meta), key="file", tag="v1",
                                           message="scikit-learn digits 0-9"))


_BUILDERS = {"samples": _build_samples, "digits": _build_digits}
