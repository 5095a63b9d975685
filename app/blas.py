"""The service's BLAS threads: one by default.

numpy's OpenBLAS starts a thread per core and keeps them spinning for a while after each product.
The products in the service's request path are small (a search from memory multiplies a few queries
by the index's centroids: ``app/store/resident.py``), so a second thread only spins: measured through
the whole ASGI stack at 200k x 384, the same searches took 0.60 CPU-ms a request with OpenBLAS's
default and 0.33 with one thread, at the same wall time. Limited when the service starts (numpy may
be imported long before) and restored when it stops, so a process hosting the app is left as it was.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BlasThreads"]


class BlasThreads:
    """Limits BLAS to ``threads`` for the life of the service (0: leaves it alone)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._limits: Any = None

    def start(self) -> BlasThreads:
        if self.threads > 0:
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=self.threads, user_api="blas")
        return self

    def close(self) -> None:
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None
