"""The per-file work of an upload on the service's side: probe and hash each image's bytes.

A batch arrives as an Arrow column of bytes (``check_images``): plain PNGs are probed all at once from
it and hashed in place (``ingest.png_headers``); every other row goes through ``probe``, inline while
the files are small, in chunks on a thread pool once they are large (hashing and TIFF parsing release
the GIL), as ``ingest.pool`` sizes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ingest.png_headers import png_headers
from ingest.pool import CHUNK_BYTES, THREADS_FROM_BYTES
from ingest.probe import ImageInfo, ProbeError, Verify, probe


@dataclass(slots=True)
class Checked:
    """What the probe found for one row of a batch: its image's facts and digest, or why it is skipped."""

    index: int
    size: int
    info: ImageInfo | None = None
    digest: str | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_pixels: int
    verify: Verify


def check_chunk(chunk: list[tuple[int, bytes | None]], limits: Limits) -> list[Checked]:
    """Probe and hash each ``(row, bytes)``; a failure becomes a reasoned skip, never an exception."""
    out = []
    for index, data in chunk:
        data = data or b""
        size = len(data)
        if size > limits.max_file_bytes:
            out.append(Checked(index, size, reason="too_large",
                               message=f"{size} bytes exceeds the limit of {limits.max_file_bytes}"))
            continue
        try:
            info = probe(data, max_pixels=limits.max_pixels, verify=limits.verify)
        except ProbeError as exc:
            out.append(Checked(index, size, reason=exc.reason, message=exc.message))
            continue
        except Exception as exc:  # a decoder bug must cost one file, not the run
            out.append(Checked(index, size, reason="corrupt", message=f"{type(exc).__name__}: {exc}"))
            continue
        out.append(Checked(index, size, info, hashlib.sha256(data).hexdigest()))
    return out


def _check_rows(column: pa.LargeBinaryArray, rows: list[int], sizes: list[int], limits: Limits,
                pool: Executor | None) -> Iterator[Checked]:
    """``rows`` of ``column`` through ``probe``: inline while they are small, else in chunks of about
    ``CHUNK_BYTES`` on ``pool``, each chunk's bytes taken out of the column by the thread that checks them."""
    def check(chunk: list[int]) -> list[Checked]:
        return check_chunk([(i, column[i].as_py()) for i in chunk], limits)

    total = sum(sizes[i] for i in rows)
    if pool is None or total < 2 * CHUNK_BYTES or total < THREADS_FROM_BYTES * max(1, len(rows)):
        yield from check(rows)
        return
    chunks: list[list[int]] = [[]]
    held = 0
    for i in rows:
        if held >= CHUNK_BYTES:
            chunks.append([])
            held = 0
        chunks[-1].append(i)
        held += sizes[i]
    for part in pool.map(check, chunks):
        yield from part


@dataclass
class Checks:
    """What the probe found for every row of a batch, by column: ``skips`` holds each refused row's
    (reason, message); the arrays hold a value for every row (meaningless for a refused one), the mime
    types and modes as codes into ``mimes`` and ``modes``."""

    size: np.ndarray
    digest: list[str | None]
    width: np.ndarray
    height: np.ndarray
    frames: np.ndarray
    mime: np.ndarray
    mode: np.ndarray
    mimes: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    skips: dict[int, tuple[str, str]] = field(default_factory=dict)
    hex: pa.Array | None = None  # every row's sha256 as text, when the whole batch was hashed at once (``digest``
    # then holds None for every row until ``digests`` fills it)

    @classmethod
    def empty(cls, sizes: np.ndarray) -> Checks:
        n = len(sizes)
        return cls(sizes, [None] * n, *(np.zeros(n, np.int64) for _ in range(3)),
                   *(np.full(n, -1, np.int32) for _ in range(2)))

    def set(self, c: Checked) -> None:
        if c.reason is not None or c.info is None:
            self.skips[c.index] = (c.reason or "corrupt", c.message or "")
            return
        i, info = c.index, c.info
        self.digest[i], self.width[i], self.height[i], self.frames[i] = c.digest, info.width, info.height, info.frames
        self.mime[i], self.mode[i] = _code(self.mimes, info.mime), _code(self.modes, info.mode)

    def digests(self) -> list[str | None]:
        """Every row's sha256 as text (None for a refused row)."""
        if self.hex is not None:
            self.digest, self.hex = self.hex.to_pylist(), None
        return self.digest

    def facts(self, keep: list[int]) -> dict[str, pa.Array]:
        """The computed columns of the rows at ``keep``."""
        at = np.asarray(keep, np.int64)
        whole = len(keep) == len(self.size)
        if self.hex is not None:
            digests: pa.Array | list[str | None] = self.hex if whole else self.hex.take(pa.array(at))
        else:
            digests = self.digest if whole else [self.digest[i] for i in keep]
        return {"mime": pa.array(self.mimes, pa.string()).take(pa.array(self.mime[at])),
                "width": pa.array(self.width[at], pa.int32()), "height": pa.array(self.height[at], pa.int32()),
                "mode": pa.array(self.modes, pa.string()).take(pa.array(self.mode[at])),
                "frames": pa.array(self.frames[at], pa.int32()), "size_bytes": pa.array(self.size[at], pa.int64()),
                "sha256": pa.array(digests, pa.string())}


def _code(names: list[str], name: str) -> int:
    if name not in names:
        names.append(name)
    return names.index(name)


def check_images(images: pa.Array | pa.ChunkedArray, limits: Limits, pool: Executor | None = None) -> Checks:
    """Every row of a binary column probed and hashed, without a Python ``bytes`` per small image: plain PNGs'
    headers are read for the whole batch at once (``ingest.png_headers``) and their bytes hashed where they
    lie; every other row goes through ``probe`` (large ones on the threads of ``pool``: the same few threads
    for a whole upload, so the allocator's per-thread arenas stay few)."""
    column = _large_binary(images)
    n = len(column)
    offsets = np.frombuffer(column.buffers()[1], np.int64, n + 1, column.offset * 8) if n else np.zeros(1, np.int64)
    starts = offsets[:-1]
    sizes = np.diff(offsets)
    if column.null_count:
        sizes[np.asarray(column.is_null())] = 0
    held = column.buffers()[2]
    data = np.frombuffer(held, np.uint8) if held is not None else np.zeros(0, np.uint8)
    out = Checks.empty(sizes)
    fast = np.zeros(0, np.int64)
    if limits.verify == "header" and len(data):
        found = png_headers(data, starts, sizes, max_pixels=limits.max_pixels, max_bytes=limits.max_file_bytes)
        fast = found.rows
        view, sha256 = memoryview(held), hashlib.sha256  # type: ignore[arg-type]
        spans = zip(starts[fast].tolist(), (starts[fast] + sizes[fast]).tolist(), strict=True)
        if len(fast) == n:  # as one column: the raw digests back to back, turned to text at once
            out.hex = hex_strings(b"".join([sha256(view[a:b]).digest() for a, b in spans]))
        else:
            for i, (a, b) in zip(fast.tolist(), spans, strict=True):
                out.digest[i] = sha256(view[a:b]).hexdigest()
        out.width[fast], out.height[fast], out.frames[fast] = found.width, found.height, 1
        out.mimes.append("image/png")
        out.mime[fast] = 0
        out.modes.extend(found.modes)
        out.mode[fast] = found.mode
    rest = np.setdiff1d(np.arange(n), fast, assume_unique=True).tolist() if len(fast) else list(range(n))
    for c in _check_rows(column, rest, sizes.tolist(), limits, pool):
        out.set(c)
    return out


def hex_strings(digests: bytes, size: int = 32) -> pa.Array:
    """Digests of ``size`` bytes each, back to back, as a column of lowercase hex text (what ``hexdigest`` gives
    each), without a Python string per row."""
    width = 2 * size
    count = len(digests) // size
    offsets = np.arange(0, width * (count + 1), width, dtype=np.int32)
    text = pa.py_buffer(digests.hex().encode())
    return pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(offsets), text])


def _large_binary(images: pa.Array | pa.ChunkedArray) -> pa.LargeBinaryArray:
    """One large-binary array of the rows' bytes ({bytes, path} structs as Hugging Face writes them: their bytes)."""
    column = single(images)
    if pa.types.is_struct(column.type):
        column = column.field("bytes")
    return column if pa.types.is_large_binary(column.type) else column.cast(pa.large_binary())


def single(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one array, without a copy when it is one chunk (``combine_chunks`` copies even then)."""
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
