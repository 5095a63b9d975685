"""How many bytes a table keeps in its storage, by part: what ``describe`` reports as its size on disk.

Read from a listing of the table's folder (a local folder or an object-store prefix alike), so every
version, branch, index and deletion file counts, whether or not the latest version still reads it.
A clone's own folder holds only its manifests: the data files it shares are counted with its source.
"""

from __future__ import annotations

from typing import Any

from app.store.files import filesystem

# the first folder of a file's path inside a table names what it holds (Lance's layout)
PARTS = {"data": "data", "_indices": "indexes", "_versions": "versions", "_deletions": "deletions",
         "_transactions": "transactions", "_refs": "refs", "tree": "branches",
         "_lightbox": "notes"}


def disk_usage(table_uri: str, storage_options: dict[str, str] | None = None) -> dict[str, Any]:
    """``{"bytes": total, "files": count, "parts": {"data": bytes, "indexes": ..., ...}}`` of one table."""
    from pyarrow import fs as pafs

    store_fs, path = filesystem(table_uri, storage_options)
    parts: dict[str, int] = {}
    files = 0
    for info in store_fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File:
            continue
        files += 1
        top = info.path[len(path):].lstrip("/").split("/", 1)[0]
        part = PARTS.get(top, "other")
        parts[part] = parts.get(part, 0) + int(info.size or 0)
    return {"bytes": sum(parts.values()), "files": files, "parts": dict(sorted(parts.items()))}
