"""Which allocator Arrow's buffers come from while the service runs: glibc's by default.

pyarrow's wheels allocate from mimalloc 3, which commits its 1 GiB arena eagerly and advises the
kernel to back it with transparent huge pages. Every first touch of a 2 MiB stretch then has the
kernel zero a whole huge page, and again after each purge; in a virtual machine that hands free
pages back to its host, those faults are slow and vary from run to run. ``python -m bench.allocator``
(100,000 small PNGs ingested in process, six alternating runs of each, 2 cores) recorded 0.549 s median
wall with glibc's allocator against 0.704 s with mimalloc (1.28x), kernel time 0.33 against 0.49 s,
peak RSS 292 against 351 MB. In ad-hoc runs jemalloc was as fast as glibc, and the 900 TIFFs took the
same time either way.

glibc is also the allocator Lance's own buffers come from, so freed memory serves both and the
heap keeper (``app/heap.py``: capped arenas, a periodic trim) looks after all of it. Set when the
service starts and restored when it stops, so a process hosting the app is left as it was.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ArrowPool", "PoolName"]

PoolName = Literal["system", "jemalloc", "mimalloc", "default"]
log = logging.getLogger("lightbox")


class ArrowPool:
    """Makes ``name`` Arrow's default memory pool for the life of the service ("default": leaves it alone)."""

    def __init__(self, name: PoolName) -> None:
        self.name = name
        self._previous: pa.MemoryPool | None = None

    def start(self) -> ArrowPool:
        if self.name == "default":
            return self
        import pyarrow as pa  # here, not at the top: the settings import this module

        makers = {"system": pa.system_memory_pool, "jemalloc": pa.jemalloc_memory_pool,
                  "mimalloc": pa.mimalloc_memory_pool}
        try:
            pool = makers[self.name]()
        except NotImplementedError:  # this build of Arrow lacks that allocator: keep Arrow's default
            log.warning("Arrow was built without %s; its default memory pool stays", self.name)
            return self
        self._previous = pa.default_memory_pool()
        pa.set_memory_pool(pool)
        return self

    def close(self) -> None:
        if self._previous is not None:
            import pyarrow as pa

            pa.set_memory_pool(self._previous)
            self._previous = None
