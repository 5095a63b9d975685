"""Hit and miss counts a cache keeps about itself, read by ``/metrics`` (plain ints: a lost increment
under a race costs a count, never a lock on the hot path)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    builds: int = 0  # for caches that build what they hold (ANN indexes)
    build_seconds: float = 0.0

    def hit(self) -> None:
        self.hits += 1

    def miss(self) -> None:
        self.misses += 1

    def built(self, seconds: float) -> None:
        self.builds += 1
        self.build_seconds += seconds

    def lookup(self, cache: OrderedDict[K, V], key: K, lock: threading.Lock) -> V | None:
        """What a least-recently-used ``cache`` holds under ``key``, made its newest and counted as a
        hit; None when it holds nothing there (not counted: the caller knows whether that is a miss)."""
        with lock:
            found = cache.get(key)
            if found is not None:
                cache.move_to_end(key)
                self.hit()
        return found
