"""Ingest progress in two phases, probe (read, check, hash) and embed (vectors from images).

On a terminal each phase is a tqdm bar. Anywhere else (a pipe, a log file, CI) a bar's carriage
returns make a mess, so a plain line is written instead, at most every ``LIGHTBOX_PROGRESS_SECONDS``
(10 by default): ``ingest: probed 1200 of 5000 files, embedded 800``. Runs shorter than that
print nothing. ``progress=False`` silences both.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any


class Progress:
    def __init__(self, total: int | None, embedding: bool, enabled: bool | None) -> None:
        self.total, self.embedding = total, embedding
        self.counts = {"probe": 0, "embed": 0}
        self._lock = threading.Lock()  # embedding ticks come from worker threads
        self._bars: dict[str, Any] = {}
        self._lines = False
        if enabled is False:
            return
        tqdm = _tqdm() if enabled or sys.stderr.isatty() else None
        if tqdm is not None:
            self._bars["probe"] = tqdm(total=total, unit="img", desc="probe", file=sys.stderr, dynamic_ncols=True)
            if embedding:
                self._bars["embed"] = tqdm(total=total, unit="img", desc="embed", file=sys.stderr,
                                           dynamic_ncols=True, position=1)
            return
        self._lines = True
        self.interval = float(os.environ.get("LIGHTBOX_PROGRESS_SECONDS", "10"))
        self._last = time.monotonic()
        self._printed = False

    def probed(self, n: int) -> None:
        self._tick("probe", n)

    def embedded(self, n: int) -> None:
        self._tick("embed", n)

    def _tick(self, phase: str, n: int) -> None:
        with self._lock:
            self.counts[phase] += n
            bar = self._bars.get(phase)
            if bar is not None:
                bar.update(n)
            elif self._lines and time.monotonic() - self._last >= self.interval:
                self._line()

    def _line(self) -> None:
        of = f" of {self.total}" if self.total else ""
        text = f"ingest: probed {self.counts['probe']}{of} files"
        if self.embedding:
            text += f", embedded {self.counts['embed']}"
        print(text, file=sys.stderr, flush=True)
        self._last = time.monotonic()
        self._printed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self._bars.values():
            bar.close()
        if self._lines and self._printed and exc[0] is None:
            self._line()  # where it ended


def _tqdm() -> Any:
    """tqdm's bar, or None where it is not installed (a client-only install): plain lines then."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm
