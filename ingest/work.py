"""The per-file work of an upload on the service's side: probe and hash each image's bytes.

Inline while the files are small; large files in chunks on a thread pool (hashing and TIFF parsing
release the GIL), as ``ingest.pool`` sizes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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


def check_all(images: list[bytes | None], limits: Limits, workers: int) -> Iterator[Checked]:
    """Every image checked, in order: inline while they are small, else in chunks of about ``CHUNK_BYTES`` on
    ``workers`` threads (the bytes are all here, so the chunks are cut by their sizes up front)."""
    sizes = [len(x) if x else 0 for x in images]
    total = sum(sizes)
    if workers < 2 or total < 2 * CHUNK_BYTES or total < THREADS_FROM_BYTES * len(images):
        yield from check_chunk(list(enumerate(images)), limits)
        return
    chunks: list[list[tuple[int, bytes | None]]] = [[]]
    held = 0
    for i, (data, size) in enumerate(zip(images, sizes, strict=True)):
        if held >= CHUNK_BYTES:
            chunks.append([])
            held = 0
        chunks[-1].append((i, data))
        held += size
    with ThreadPoolExecutor(workers, thread_name_prefix="lightbox-check") as pool:
        for part in pool.map(lambda chunk: check_chunk(chunk, limits), chunks):
            yield from part
