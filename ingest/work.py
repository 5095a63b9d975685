"""The per-file work of an upload on the service's side: probe and hash each image's bytes.

Runs in chunks through ``ingest.pool.run_chunks``: inline while the files are small, on a thread
pool once they are large (hashing and TIFF parsing release the GIL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from ingest.pool import run_chunks
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
    """Every image checked, in order (large files on ``workers`` threads)."""
    for chunk in run_chunks(lambda part: check_chunk(part, limits), iter(enumerate(images)), workers,
                            lambda c: c.size):
        yield from chunk
