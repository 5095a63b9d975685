"""Hit and miss counts a cache keeps about itself, read by ``/metrics`` (plain ints: a lost increment
under a race costs a count, never a lock on the hot path)."""

from __future__ import annotations

from dataclasses import dataclass


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
