"""Thumbnails of stored images, one (``GET .../rows/{id}/thumbnail``) or a page at a time
(``POST .../thumbnails``), and the ones made when rows are written (``prerender``).

Each comes from the thumbnail cache in memory (content-addressed: any version, branch or table with
the same bytes shares it), else from the thumbnails kept beside the table (``app.store.thumbnails``),
else it is rendered, kept there and cached. An upload renders the gallery's two sizes (its tile and
the tile's double for high-DPI screens) of each image it writes, on the session's threads, so a
server that starts cold answers a first screen of photos by reading bytes, not decoding JPEGs
(about 2.3 ms of CPU for each 1024x768 photo, even decoded at 1/8 scale). The batch exists for a page's first screen: a
browser opens at most six HTTP/1.1 connections to a host, so 100 thumbnails by URL cost about 17
round trips of requests queued behind each other, while one request carrying all of them costs one
(``bench.gallery --photos``); its renders run on a few threads at once (Pillow lets go of the GIL
while it decodes and resizes), where 100 URL requests would wait on the server's threadpool one
connection at a time.
"""

from __future__ import annotations

import base64
import os
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from app.errors import BadRequest, LightboxError
from app.services import pixels
from app.services.budget import MemoryBudget
from app.store import ImageRef, RowReader, Snapshot
from app.store.ids import check_id
from app.store.thumbnails import ThumbnailFiles

__all__ = ["MAX_BATCH", "PRERENDERED", "Thumbnails", "batch", "prerender"]

MAX_BATCH = 200  # ids in one batch: two grid pages
THREADS = max(1, min(4, os.cpu_count() or 1))  # renders of one batch at once
PRERENDERED = (128, 256)  # the gallery's tile (app/ui/js/table.js THUMB) and its double, made at write time
# an original no larger than this the gallery shows as it is (table.js isSmall): no thumbnail is made
SMALL_SIDE, SMALL_BYTES = 128, 8 * 1024
BROWSER_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif"})
PRERENDER_BUDGET = 1024**3  # decode memory the renders of one upload batch may hold at once


@dataclass(frozen=True)
class Thumbnails:
    """What answering a thumbnail takes: the cache in memory, the kept ones, the rows, the decode budget."""

    cache: pixels.ThumbnailCache
    files: ThumbnailFiles
    reader: RowReader
    budget: MemoryBudget

    def get(self, snap: Snapshot, image: ImageRef, size: int, fmt: pixels.ThumbFormat | None) -> tuple[bytes, str]:
        """One thumbnail's bytes and media type: from memory, else kept, else rendered (then kept and
        cached); a render is counted in the cache's ``builds``."""
        key = (image.sha256, size, fmt)
        found = self.cache.get(key)
        if found is not None:
            return found
        found = self.files.read(snap.name, image.sha256, size, fmt)
        if found is None:
            started = time.perf_counter()
            found = pixels.render_thumbnail(self.reader.image_bytes(snap, image), image.mime, size, fmt, self.budget)
            self.cache.stats.built(time.perf_counter() - started)
            self.files.write(snap.name, image.sha256, size, fmt, found[0])
        self.cache.put(key, found)
        return found


def batch(thumbs: Thumbnails, snap: Snapshot, ids: list[str], size: int,
          fmt: pixels.ThumbFormat | None) -> dict[str, Any]:
    """The thumbnails of ``ids`` (base64) in their order; an id without one (no such row, no image, bytes
    that do not decode) is listed under ``missing`` with the error its own thumbnail request would get."""
    pixels.check_size(size)
    if not ids:
        raise BadRequest("give the ids of the rows whose thumbnails you want", field="ids")
    if len(ids) > MAX_BATCH:
        raise BadRequest(f"at most {MAX_BATCH} ids a request, got {len(ids)}", max=MAX_BATCH, given=len(ids))
    for row_id in ids:
        check_id(row_id)
    thumbs.reader.index(snap)  # built once here, not by each thread

    def one(row_id: str) -> dict[str, Any]:
        try:
            data, mime = thumbs.get(snap, thumbs.reader.image_ref(snap, row_id), size, fmt)
        except LightboxError as exc:
            return {"id": row_id, "error": {"code": exc.code, "message": str(exc)}}
        return {"id": row_id, "mime": mime, "data": base64.b64encode(data).decode("ascii")}

    distinct = list(dict.fromkeys(ids))
    if len(distinct) == 1:
        answers = [one(distinct[0])]
    else:
        with ThreadPoolExecutor(min(THREADS, len(distinct)), thread_name_prefix="lightbox-thumbs") as pool:
            answers = list(pool.map(one, distinct))
    return {"version": snap.version, "size": size,
            "thumbnails": [a for a in answers if "data" in a], "missing": [a for a in answers if "error" in a]}


def wanted(facts: pa.RecordBatch) -> list[int]:
    """The rows of a batch being written whose thumbnails are made at once: images in a format browsers
    show (photos, screenshots, scans), larger than the gallery shows as they are. Other formats (a
    16-bit TIFF, a stack) cost far more to render and are rendered when first asked for, then kept.
    Arrow compute, not a loop: a batch of 100k small PNGs costs microseconds here."""
    def at_most(column: str, limit: int) -> pa.Array:
        return pc.fill_null(pc.less_equal(facts.column(column), limit), True)

    small = pc.and_(pc.and_(at_most("width", SMALL_SIDE), at_most("height", SMALL_SIDE)),
                    at_most("size_bytes", SMALL_BYTES))
    browser = pc.fill_null(pc.is_in(facts.column("mime"), pa.array(sorted(BROWSER_IMAGES))), False)
    keep = pc.and_(pc.and_(browser, pc.invert(small)), pc.is_valid(facts.column("sha256")))
    return pc.indices_nonzero(keep).to_pylist()


def prerender(files: ThumbnailFiles, table: str, sources: list[tuple[int, bytes]], facts: pa.RecordBatch,
              pool: Executor | None) -> int:
    """Render and keep the ``PRERENDERED`` thumbnails of rows being written (``sources``: a row of
    ``facts``, which holds its sha256 and mime, and its image bytes). An image that does not render is
    left to its first request, which answers the error. Returns the thumbnails kept."""
    digests, mimes = facts.column("sha256").to_pylist(), facts.column("mime").to_pylist()
    budget = MemoryBudget(PRERENDER_BUDGET, wait_seconds=60.0)

    def one(source: tuple[int, bytes]) -> int:
        row, data = source
        kept = 0
        for size in PRERENDERED:
            try:
                rendered, _ = pixels.render_thumbnail(data, mimes[row], size, None, budget)
            except Exception:  # a thumbnail never fails a write; its own request answers the error
                return kept
            files.write(table, digests[row], size, None, rendered)
            kept += 1
        return kept

    return sum(pool.map(one, sources) if pool is not None and len(sources) > 1 else map(one, sources))
