"""Keeping the process heap from growing on freed memory (glibc only; elsewhere this does nothing).

The service reads and writes through Lance and Arrow from many threads: FastAPI's threadpool (40)
and Lance's own runtime. glibc gives each contending thread its own malloc arena (up to 8 per core)
and returns freed memory to the system only from the top of a heap. A server under a steady mix
of image reads, searches and uploads keeps growing on memory it has already freed. Measured with
``bench/soak.py``: the RSS slope over the second half of a 3-minute soak with Lance's caches
bounded was +18 MB/min; with 2 arenas and a trim every 10 s it fell to +11; with compaction as well
it went from +9 (allocator untouched) to +2.8. The rest of that growth is per fragment, and
``optimize`` compacts it away.

So the service caps the arenas (``mallopt(M_ARENA_MAX)``) when it starts and returns free pages
to the system every ``heap_trim_seconds`` (``malloc_trim(0)``, a few ms).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger("lightbox")
M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


class HeapKeeper:
    """Caps glibc's malloc arenas and trims the heap on a timer, on a daemon thread until ``close``."""

    def __init__(self, arenas: int, trim_seconds: float) -> None:
        self.libc = _libc()
        self.arenas = arenas
        self.trim_seconds = trim_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> HeapKeeper:
        if self.libc is None:
            return self  # not glibc: its allocator is its own business
        if self.arenas > 0:
            self.libc.mallopt(M_ARENA_MAX, self.arenas)
        if self.trim_seconds > 0:
            self._thread = threading.Thread(target=self._run, daemon=True, name="lightbox-heap")
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.trim_seconds):
            self.trim()

    def trim(self) -> None:
        if self.libc is not None:
            self.libc.malloc_trim(0)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
