"""Many PNGs probed at once, from an Arrow column of their bytes: the common case without a Python loop.

Small files are CPU-bound in Python (``probe`` costs a few microseconds a file, which is most of a
small-file ingest); the headers of a whole batch are read with numpy instead. A row takes this path
only when ``ingest.probe.probe`` would certainly answer the same for it: a complete PNG (it ends
with its IEND chunk) whose IHDR is followed directly by its first IDAT chunk, which fits in the
file (so no acTL: one frame), of a known bit depth and colour type, within the size limits. Every
other row (other formats, APNGs, ancillary chunks before the pixels, truncated or damaged files,
bombs) is left to ``probe``, which gives the reasoned skip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import PngImagePlugin

from ingest.probe import BYTES_PER_PIXEL_LIMIT, PNG_END, PNG_SIG, frame_bytes

__all__ = ["PngHeaders", "png_headers"]

# signature, then IHDR's length (13) and type: the first 16 bytes of every PNG
_HEAD = np.frombuffer(PNG_SIG + b"\x00\x00\x00\x0dIHDR", np.uint8)
_TAIL = np.frombuffer(PNG_END, np.uint8)
_IDAT = np.frombuffer(b"IDAT", np.uint8)
_SPAN = 41  # bytes read from the start: signature, IHDR (8 + 13 + 4), the next chunk's length and type
_SMALLEST = _SPAN + 4 + len(PNG_END)  # ... its CRC, and the IEND chunk
_HUGE = 1 << 30
_MODE_NAMES = sorted({mode for mode, _ in PngImagePlugin._MODES.values()})
_MODE_CODES = np.full(256 * 256, -1, np.int16)  # (bit depth << 8 | colour type) -> index in _MODE_NAMES
for (_depth, _color), (_mode, _) in PngImagePlugin._MODES.items():
    _MODE_CODES[_depth << 8 | _color] = _MODE_NAMES.index(_mode)
_MODE_BYTES = np.array([frame_bytes(1, 1, m) for m in _MODE_NAMES], np.int64)


@dataclass
class PngHeaders:
    """The rows read here (``rows``, ascending) and their facts, in the same order (``mode``: codes into
    ``modes``)."""

    rows: np.ndarray
    width: np.ndarray
    height: np.ndarray
    mode: np.ndarray
    modes: list[str]


def png_headers(data: np.ndarray, starts: np.ndarray, sizes: np.ndarray, *, max_pixels: int,
                max_bytes: int) -> PngHeaders:
    """The rows of ``data`` (every row's bytes, back to back; row i is ``sizes[i]`` bytes from ``starts[i]``)
    whose facts can be read here, and those facts; see the module's docstring for which rows qualify."""
    rows = np.flatnonzero((sizes >= _SMALLEST) & (sizes <= max_bytes))
    if not len(rows):
        return PngHeaders(rows, rows, rows, rows, list(_MODE_NAMES))
    first, size = starts[rows], sizes[rows]
    head = data[first[:, None] + np.arange(_SPAN)]
    tail = data[(first + size - len(PNG_END))[:, None] + np.arange(len(PNG_END))]
    ok = (head[:, :16] == _HEAD).all(axis=1) & (head[:, 37:41] == _IDAT).all(axis=1) & (tail == _TAIL).all(axis=1)
    be32 = head.astype(np.int64)
    width = be32[:, 16] << 24 | be32[:, 17] << 16 | be32[:, 18] << 8 | be32[:, 19]
    height = be32[:, 20] << 24 | be32[:, 21] << 16 | be32[:, 22] << 8 | be32[:, 23]
    idat = be32[:, 33] << 24 | be32[:, 34] << 16 | be32[:, 35] << 8 | be32[:, 36]
    code = _MODE_CODES[be32[:, 24] << 8 | be32[:, 25]]
    ok &= (_SPAN + 4 + idat <= size) & (code >= 0) & (width > 0) & (height > 0)
    ok &= (width < _HUGE) & (height < _HUGE)  # no overflow below; larger ones are ``probe``'s to refuse
    pixels = width * height
    ok &= pixels <= max_pixels
    ok &= pixels * _MODE_BYTES[np.maximum(code, 0)] <= max_pixels * BYTES_PER_PIXEL_LIMIT
    return PngHeaders(rows[ok], width[ok], height[ok], code[ok].astype(np.int32), list(_MODE_NAMES))
