"""Access logs: a line per request, written in batches.

uvicorn's access log went through the whole of ``logging`` for each request (a caller lookup that walks
the stack, its formatter's colour and status lookups) and wrote and flushed the stream each time.
Measured on the search fast path at 8 connections it cost 0.09-0.11 CPU-ms a request of the 0.81-0.92
the server spent on it. So the service writes its own lines (``Observe`` in app/metrics.py), in one of
two shapes:

- ``text`` (the default): uvicorn's own line, ``INFO:     127.0.0.1:51234 - "GET /path?q HTTP/1.1" 200 OK``,
  on standard output as uvicorn wrote it (``lightbox serve`` turns uvicorn's off);
- ``json`` (``LIGHTBOX_ACCESS_LOG=json``): one JSON object a line on standard error, logger
  ``lightbox.access``.

Lines go through ``logging`` (a test or an operator can attach a handler) but are handed over as made,
and ``Batched`` writes what has come every 0.1 s or every 64 KiB, whichever is first, and at exit.
"""

from __future__ import annotations

import atexit
import http
import logging
import sys
import threading
import time
from typing import IO

__all__ = ["LOGGERS", "Batched", "access_logger", "status_line"]

LOGGERS = {"text": "lightbox.access.text", "json": "lightbox.access"}
FLUSH_SECONDS = 0.1
FLUSH_BYTES = 64 * 1024
_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}


class Batched(logging.Handler):
    """Writes records' messages to a stream, a line each, in batches (see the module's docstring)."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream
        self._pending: list[str] = []
        self._size = 0
        self._thread: threading.Thread | None = None
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)
            self._size += len(line) + 1
            full = self._size >= FLUSH_BYTES
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="lightbox-access-log")
                self._thread.start()
        if full:
            self.flush()

    def handle(self, record: logging.LogRecord) -> bool:
        # no handler-level lock around emit: ``emit`` takes it only to append
        if self.filter(record):
            self.emit(record)
            return True
        return False

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._pending, self._size = self._pending, [], 0
        if lines:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # a closed or broken stream: the lines are lost, not the service
                pass

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()


def access_logger(kind: str) -> logging.Logger:
    """The logger of one shape of access line, with its batched handler (made once a process)."""
    log = logging.getLogger(LOGGERS[kind])
    log.setLevel(logging.INFO)
    log.propagate = False
    if not any(isinstance(h, Batched) for h in log.handlers):
        log.addHandler(Batched(sys.stdout if kind == "text" else sys.stderr))
    return log


def status_line(client: tuple[str, int] | None, method: str, path: str, query: bytes, http_version: str,
                status: int) -> str:
    """uvicorn's access line for a request (its level prefix included, as it printed it)."""
    where = f"{client[0]}:{client[1]}" if client else "-"
    target = f"{path}?{query.decode('latin-1')}" if query else path
    return f'INFO:     {where} - "{method} {target} HTTP/{http_version}" {status} {_PHRASES.get(status, "")}'.rstrip()
