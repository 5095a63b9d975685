"""Rendered thumbnails kept beside a table, by the content digest of the image they show.

A thumbnail rendered when its rows are written (``app.services.thumbnails.prerender``) is kept as a
small object ``{table}/_lightbox/thumbnails/{RENDER}/{size}-{format}/{sha256[:2]}/{sha256}``, through the
storage's own filesystem (a local folder or an object store alike), so a server that has never seen
the table serves its first screen without decoding a photo. Keyed by content, an object is right for
every version, branch and row holding those bytes, so nothing is ever invalidated: a row whose image
changes has another digest. ``RENDER`` names the rendering; a change to how thumbnails are drawn bumps it
and the old objects are no longer read. Dropping the table removes them with it.

An object is written under a temporary name and moved into place, so a reader never sees half of one;
two writers of the same object write the same bytes. Reads and writes that fail (a read-only root, an
object store that is away) are not errors: the thumbnail is rendered instead.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any

from app.store.files import filesystem

__all__ = ["RENDER", "ThumbnailFiles"]

RENDER = "r1"
THUMBS_DIR = "_lightbox/thumbnails"
MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))


def _media(data: bytes) -> str | None:
    """The media type of a kept thumbnail, from its first bytes (JPEG, PNG or WebP, as rendered)."""
    for magic, mime in MAGIC:
        if data.startswith(magic):
            return mime
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


class ThumbnailFiles:
    """The kept thumbnails of a data root's tables (one filesystem handle per table, made once)."""

    def __init__(self, store: Any, writable: bool = True) -> None:
        self.store = store
        self.writable = writable  # a read replica reads the kept thumbnails but writes nothing to the root
        self._roots: dict[str, tuple[Any, str]] = {}
        self._lock = threading.Lock()
        self.reads = 0  # thumbnails answered from their objects (for tests and /metrics)
        self.writes = 0

    def _root(self, table: str) -> tuple[Any, str]:
        with self._lock:
            found = self._roots.get(table)
        if found is None:
            found = filesystem(f"{self.store.table_uri(table)}/{THUMBS_DIR}/{RENDER}", self.store.storage_options)
            with self._lock:
                self._roots[table] = found
        return found

    def _path(self, table: str, sha256: str, size: int, fmt: str | None) -> tuple[Any, str]:
        fs, root = self._root(table)
        return fs, f"{root}/{size}-{fmt or 'auto'}/{sha256[:2]}/{sha256}"

    def read(self, table: str, sha256: str, size: int, fmt: str | None) -> tuple[bytes, str] | None:
        """The kept thumbnail and its media type, or None (none kept, or it cannot be read now)."""
        fs, path = self._path(table, sha256, size, fmt)
        try:
            with fs.open_input_file(path) as handle:
                data = handle.read()
        except (OSError, ValueError):
            return None
        mime = _media(data)
        if mime is None:
            return None
        self.reads += 1
        return data, mime

    def write(self, table: str, sha256: str, size: int, fmt: str | None, data: bytes) -> None:
        """Keep one thumbnail (a failure is dropped: it is rendered again when asked for)."""
        if not self.writable:
            return
        fs, path = self._path(table, sha256, size, fmt)
        temporary = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            with fs.open_output_stream(temporary) as out:
                out.write(data)
            fs.move(temporary, path)
            self.writes += 1
        except (OSError, ValueError):
            with contextlib.suppress(OSError, ValueError):
                fs.delete_file(temporary)

    def forget(self, table: str) -> None:
        """A dropped or re-created table: its filesystem handle is made again when next asked for."""
        with self._lock:
            self._roots.pop(table, None)
