"""Decoding a stored image no larger than a render needs, and knowing its cost before decoding.

A small file can hold a huge image (zlib and LZW compress flat pixels a thousandfold), so what a
decode will hold is read from the header first, in bytes (a 16-bit pixel costs two, an RGB pixel
four in Pillow), and reserved from the server's ``MemoryBudget``. Where the format allows, a render
decodes less than the whole image:

- JPEG: Pillow's ``draft`` has the decoder scale by 1/2, 1/4 or 1/8 as it decodes;
- JPEG 2000: ``reduce`` decodes a lower resolution level;
- TIFF: the smallest pyramid level that is still large enough, else every n-th row and column,
  decoded strip by strip (or tile by tile) so only one strip is ever held beside the result.

Everything else (PNG, GIF, WebP, BMP) is decoded whole, and counted whole.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image

from app.errors import Unprocessable
from ingest.probe import PIL_BYTES

MARGIN = 4  # a reduced decode keeps at least this many source pixels per output pixel (then LANCZOS)


class Undecodable(Unprocessable):
    code = "undecodable_image"


def pil_bytes(size: tuple[int, int], mode: str) -> int:
    """Bytes Pillow holds for one frame of this size and mode."""
    return size[0] * size[1] * PIL_BYTES.get(mode, 4)


def fit(size: tuple[int, int], box: tuple[int | None, int | None]) -> tuple[int, int]:
    """``size`` scaled down (never up, aspect ratio kept) to fit ``box``; either side of the box may be open."""
    w, h = size
    scale = min(1.0, (box[0] or w) / w, (box[1] or h) / h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def step_for(size: tuple[int, int], target: tuple[int, int]) -> int:
    """Keep every n-th row and column: the largest n that still leaves ``MARGIN`` x the target size."""
    return max(1, min(size[0] // (MARGIN * target[0]), size[1] // (MARGIN * target[1])))


# -- Pillow formats ----------------------------------------------------------------------------
def open_first_frame(data: bytes, box: tuple[int | None, int | None]) -> Image.Image:
    """The first frame, opened (not decoded) and set to decode reduced when the format can and the
    render needs less than the full size."""
    img = Image.open(io.BytesIO(data))
    img.seek(0)
    target = fit(img.size, box)
    if target == img.size:
        return img
    if img.format in ("JPEG", "MPO"):
        img.draft(img.mode, target)  # scales by 1/2, 1/4 or 1/8, never below the target
    elif img.format == "JPEG2000":
        levels = int(math.log2(max(1, min(img.size[0] // target[0], img.size[1] // target[1]))))
        if levels:
            img.reduce = min(levels, 5)  # type: ignore[method-assign]  # the plugin's setter: decode a lower level
    return img


def pillow_cost(img: Image.Image) -> int:
    """What rendering the (opened, maybe reduced) frame holds at most: the decoded frame and one
    converted copy of it (palette to RGBA, CMYK to RGB, a deep image to an array)."""
    return pil_bytes(img.size, img.mode) + img.size[0] * img.size[1] * 4


# -- TIFF --------------------------------------------------------------------------------------
def tiff_source(tif: Any, box: tuple[int | None, int | None]) -> tuple[Any, int]:
    """The page a render of the first image reads, and the decimation step: the smallest pyramid
    level at least the target size when the file has levels, else the first page."""
    page = tif.pages.first
    target = fit((int(page.imagewidth), int(page.imagelength)), box)
    series = tif.series[0] if tif.series else None
    if series is not None and getattr(series, "is_pyramidal", False) and series.keyframe is page:
        for level in reversed(series.levels):
            key = level.keyframe
            if int(key.imagewidth) >= target[0] and int(key.imagelength) >= target[1]:
                page = key
                break
    return page, step_for((int(page.imagewidth), int(page.imagelength)), target)


def tiff_cost(page: Any, step: int) -> int:
    """The decimated result plus the largest strip or tile held while decoding (the whole page when
    it is one strip), plus a copy of the result for the conversion to 8 bits."""
    itemsize = np.dtype(page.dtype).itemsize if page.dtype is not None else 8
    shaped = page.shaped  # (separate samples, depth, length, width, contiguous samples)
    out = shaped[0] * shaped[1] * -(-shaped[2] // step) * -(-shaped[3] // step) * shaped[4] * itemsize
    if step == 1:
        return 2 * out
    chunk = page.chunks if page.chunks else page.shape
    segment = int(np.prod(chunk)) * itemsize * (shaped[0] if page.planarconfig == 2 else 1)
    return 2 * out + 2 * segment


def tiff_read(page: Any, step: int) -> np.ndarray:
    """The page's pixels, every ``step``-th row and column; decoded one strip or tile at a time."""
    if step == 1:
        return np.asarray(page.asarray(maxworkers=1))
    separate, depth, length, width, contig = page.shaped
    out = np.zeros((separate, depth, -(-length // step), -(-width // step), contig), dtype=page.dtype)
    for segment, index, _ in page.segments(maxworkers=1):
        if segment is None:
            continue
        plane, z, y, x = index[0], index[1], index[2], index[3]
        rows = segment.shape[-3]
        cols = segment.shape[-2]
        first_row, first_col = (-y) % step, (-x) % step
        kept = segment[..., first_row:min(rows, length - y):step, first_col:min(cols, width - x):step, :]
        r0, c0 = (y + first_row) // step, (x + first_col) // step
        out[plane, z:z + kept.shape[-4], r0:r0 + kept.shape[-3], c0:c0 + kept.shape[-2], :] = kept
    squeeze = tuple(axis for axis, n in ((0, separate), (1, depth), (4, contig)) if n == 1)
    return out.squeeze(axis=squeeze) if squeeze else out
