"""A write-only file object that hands back what was written since the last drain.

Writers that want a file (pyarrow's IPC and Parquet writers, ``tarfile``, ``zipfile``) write into it,
and a streaming response yields each drained chunk: the body is produced batch by batch, never whole.
"""

from __future__ import annotations


class Chunks:
    """What a writer wrote, handed back chunk by chunk with ``drain()``."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out
