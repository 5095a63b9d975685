"""Uploads as they arrive: an Arrow IPC stream of rows, or files with per-file metadata, as one Arrow table.

Either way a batch is rows of ``id``, ``image`` (the file's bytes, or Hugging Face's ``{bytes, path}``),
``source`` (optional: where the image came from) and metadata columns. Files sent as multipart are
named by their metadata's ``id`` (as given: an id that is not text is refused), else their file name,
and recorded with the source ``upload:{file name}``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from app.errors import BadRequest
from app.store.column_fit import ColumnTypeConflict
from app.store.ids import check_ids


def arrow_rows(body: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadRequest(f"the body is not an Arrow IPC stream: {exc}") from exc


def upload_id(name: str, meta: dict[str, Any]) -> Any:
    """The id a file is stored under: its metadata's ``id`` when given (as is), else its file name."""
    given = meta.get("id")
    return name if given is None else given


def files_table(files: list[tuple[str, bytes, dict[str, Any]]]) -> pa.Table:
    """Uploaded files and their metadata objects as rows; a metadata field whose values mix kinds is a 422."""
    ids = [upload_id(name, meta) for name, _, meta in files]
    check_ids(ids)  # one bad id refuses the upload: nothing is written
    columns: dict[str, pa.Array] = {
        "id": pa.array(ids, pa.string()),
        "image": pa.array([data for _, data, _ in files], pa.binary()),
        "source": pa.array([f"upload:{name}" for name, _, _ in files], pa.string()),
    }
    names = list(dict.fromkeys(k for _, _, meta in files for k in meta if k not in ("id", "image", "source")))
    for name in names:
        try:
            columns[name] = pa.array([meta.get(name) for _, _, meta in files])
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise ColumnTypeConflict(f"metadata field {name!r} mixes kinds of values ({exc}); nothing was written",
                                     column=name) from exc
    return pa.table(columns)


def meta_for(metadata: Any, index: int, name: str) -> dict[str, Any]:
    """Metadata of one file: a list in file order, or an object keyed by file name."""
    if metadata is None:
        return {}
    if isinstance(metadata, list):
        if index < len(metadata) and isinstance(metadata[index], dict):
            return metadata[index]
        return {}
    if isinstance(metadata, dict):
        found = metadata.get(name)
        return found if isinstance(found, dict) else {}
    raise BadRequest("metadata must be a JSON list (one object per file) or an object keyed by file name")
