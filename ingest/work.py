"""The per-file work of an ingest (read, probe, hash) and the pool that runs it.

Small images are CPU-bound in Python (a few tens of microseconds a file), so threads gain little
under the GIL; a large run hands chunks of files to worker *processes* instead, which return only
the bytes and a few facts per file. Workers import nothing heavy (no Lance, no torch) and cap
BLAS/OpenMP threads to one, so workers x threads never exceeds the cores. Chunks adapt to file
size so the bytes in flight stay bounded: a few hundred small PNGs, or a handful of large TIFFs.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ingest.probe import ImageInfo, ProbeError, Verify, probe
from ingest.sources import Item, read_bytes

PROCESS_MIN_ITEMS = 4096  # below this, starting processes costs more than it saves
CHUNK_BYTES = 8 * 1024**2
CHUNK_ITEMS = (4, 512)
THREAD_CAPS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(slots=True)
class Probed:
    item: Item
    data: bytes | None = None
    info: ImageInfo | None = None
    digest: str | None = None
    reason: str | None = None
    message: str | None = None
    vectors: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_pixels: int
    verify: Verify


def probe_items(items: list[Item], limits: Limits) -> list[Probed]:
    """Read, probe and hash each item; a failure becomes a reasoned skip, never an exception."""
    out = []
    for item in items:
        try:
            data = read_bytes(item, limits.max_file_bytes)
        except ValueError as exc:
            out.append(Probed(item, reason="too_large", message=str(exc)))
            continue
        except OSError as exc:
            out.append(Probed(item, reason="unreadable", message=exc.strerror or str(exc)))
            continue
        try:
            info = probe(data, max_pixels=limits.max_pixels, verify=limits.verify)
        except ProbeError as exc:
            out.append(Probed(item, reason=exc.reason, message=exc.message))
            continue
        except Exception as exc:  # a decoder bug must cost one file, not the run
            out.append(Probed(item, reason="corrupt", message=f"{type(exc).__name__}: {exc}"))
            continue
        out.append(Probed(item, data, info, hashlib.sha256(data).hexdigest()))
    return out


def _cap_threads() -> None:
    for name in THREAD_CAPS:
        os.environ[name] = "1"


def make_executor(workers: int, total: int | None, processes_allowed: bool) -> Executor | None:
    """Processes for large runs, threads otherwise, nothing (inline) for one worker."""
    if workers <= 1:
        return None
    if processes_allowed and (total or 0) >= PROCESS_MIN_ITEMS:
        context = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                              else "spawn")
        return ProcessPoolExecutor(workers, mp_context=context, initializer=_cap_threads)
    return ThreadPoolExecutor(workers)


def run_chunks(executor: Executor | None, fn: Callable[[list[Item]], list[Probed]], items: Iterator[Item],
               workers: int) -> Iterator[list[Probed]]:
    """Results in input order, with at most ``2 * workers`` chunks in flight."""
    sizer = _ChunkSizer()
    if executor is None:
        while chunk := sizer.take(items):
            result = fn(chunk)
            sizer.learn(result)
            yield result
        return
    pending: deque[Future[list[Probed]]] = deque()
    while chunk := sizer.take(items):
        pending.append(executor.submit(fn, chunk))
        if len(pending) >= 2 * workers:
            result = pending.popleft().result()
            sizer.learn(result)
            yield result
    while pending:
        yield pending.popleft().result()


class _ChunkSizer:
    """Chunks of about ``CHUNK_BYTES``, learned from the files seen so far."""

    def __init__(self) -> None:
        self.size = 128

    def take(self, items: Iterator[Item]) -> list[Item]:
        chunk = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= self.size:
                break
        return chunk

    def learn(self, result: list[Probed]) -> None:
        sizes = [len(p.data) for p in result if p.data is not None]
        if sizes:
            average = max(1, sum(sizes) // len(sizes))
            self.size = max(CHUNK_ITEMS[0], min(CHUNK_ITEMS[1], CHUNK_BYTES // average))
