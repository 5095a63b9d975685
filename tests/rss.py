"""Peak resident memory of this process over a block: how much a request made the server hold.

Exact where Linux lets a process reset its high-water mark (``/proc/self/clear_refs``, then
``VmHWM``); elsewhere psutil samples RSS every millisecond on a thread (a peak shorter than that can
be missed, so bounds stay generous). Memory an earlier test freed is handed back to the system first
(glibc's ``malloc_trim``): left in the heap, it would be reused without raising RSS and hide a peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

MIB = 1024**2
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


class Peak:
    """``growth``: the highest RSS seen in the block, minus RSS at its start (bytes)."""

    growth: int = 0

    @property
    def mib(self) -> float:
        return self.growth / MIB


def _trim() -> None:
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass


def _hwm() -> int | None:
    try:
        CLEAR_REFS.write_text("5")  # reset the high-water mark to the current RSS
        found = re.search(r"VmHWM:\s+(\d+) kB", STATUS.read_text())
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


@contextmanager
def peak_rss() -> Iterator[Peak]:
    peak = Peak()
    _trim()
    process = psutil.Process()
    start = process.memory_info().rss
    if _hwm() is not None:
        yield peak
        found = re.search(r"VmHWM:\s+(\d+) kB", STATUS.read_text())
        peak.growth = max(0, int(found.group(1)) * 1024 - start) if found else 0
        return
    highest = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.001):
            highest[0] = max(highest[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak.growth = max(0, max(highest[0], process.memory_info().rss) - start)
