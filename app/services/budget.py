"""A memory budget shared by the renders of one server: a semaphore weighted by bytes.

Decoding a stored image can cost far more memory than its file (a 368 KB zlib TIFF of 13000² 16-bit
pixels is 338 MB decoded), so each render first estimates what it will hold (``app.services.decode``)
and takes that many bytes of the budget for as long as it holds them. Renders that fit run side by
side; one that does not fit now waits a little for others to finish, then answers 503 with
``Retry-After``; one that could never fit (it needs more than the whole budget) answers 422 at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import LightboxError, Unprocessable

MIB = 1024**2


class OverBudget(Unprocessable):
    """The image needs more memory to decode than the server allows any one render."""

    code = "decode_budget_exceeded"


class RendersBusy(LightboxError):
    """Other renders hold the budget: try again shortly (the clients retry a 503)."""

    status = 503
    code = "renders_busy"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.detail.get("retry_after_seconds", 1))}


class MemoryBudget:
    """``hold(cost)`` reserves ``cost`` bytes of ``total`` for the block it guards.

    A request waits at most ``wait_seconds`` for room; waiters are served as room frees up (no
    ordering is promised: a small render may pass a large one that is still waiting). At most
    ``max_waiters`` wait at once (each holds a worker thread while it waits); past them a request is
    told to come back at once, so a burst of large renders cannot take every worker from other reads.
    """

    def __init__(self, total: int, wait_seconds: float = 10.0, max_waiters: int = 8) -> None:
        self.total = total
        self.wait_seconds = wait_seconds
        self.max_waiters = max_waiters
        self._used = 0
        self._waiting = 0
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    @property
    def waiting(self) -> int:
        return self._waiting

    def reserve(self, cost: int, what: str = "this image") -> Reservation:
        """Take ``cost`` bytes now (waiting up to ``wait_seconds``); release the reservation when done."""
        cost = max(0, int(cost))
        if cost > self.total:
            raise OverBudget(f"decoding {what} needs about {_mib(cost)} of memory, more than this server allows "
                             f"one render ({_mib(self.total)}, LIGHTBOX_DECODE_BUDGET_BYTES)",
                             needed_bytes=cost, budget_bytes=self.total)
        deadline = time.monotonic() + self.wait_seconds
        with self._cond:
            if self._used + cost > self.total and self._waiting >= self.max_waiters:
                raise self._busy(cost, what)
            self._waiting += 1
            try:
                while self._used + cost > self.total:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise self._busy(cost, what)
                    self._cond.wait(left)
            finally:
                self._waiting -= 1
            self._used += cost
        return Reservation(self, cost)

    def _busy(self, cost: int, what: str) -> RendersBusy:
        retry = max(1, math.ceil(self.wait_seconds))
        return RendersBusy(f"other images are being decoded and {what} needs about {_mib(cost)}; retry in {retry} s",
                           needed_bytes=cost, retry_after_seconds=retry)

    @contextmanager
    def hold(self, cost: int, what: str = "this image") -> Iterator[None]:
        reservation = self.reserve(cost, what)
        try:
            yield
        finally:
            reservation.release()

    def _give_back(self, cost: int) -> None:
        with self._cond:
            self._used -= cost
            self._cond.notify_all()


class Reservation:
    """Bytes taken from a budget; ``release`` is idempotent (a stream's end and its cleanup may both call it)."""

    def __init__(self, budget: MemoryBudget, cost: int) -> None:
        self._budget = budget
        self._cost = cost
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            cost, self._cost = self._cost, 0
        if cost:
            self._budget._give_back(cost)


def _mib(n: int) -> str:
    return f"{n / MIB:,.0f} MiB" if n >= MIB else f"{n:,} bytes"
