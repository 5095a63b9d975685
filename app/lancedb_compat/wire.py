"""Arrow IPC on the wire: stream bodies in (``insert``, ``create``, ``merge_insert``), file bodies out (``query``).

The clients send IPC *streams* whose buffers are LZ4_FRAME-compressed; pyarrow decompresses them
as it reads. They parse a query answer as an IPC *file* unless its content type says stream. The
file is written batch by batch, so a large answer is never held whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
from fastapi.responses import StreamingResponse

from app.errors import BadRequest
from app.responses import arrow_response

ARROW_FILE = "application/vnd.apache.arrow.file"
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def read_stream(body: bytes) -> pa.Table:
    """An Arrow IPC stream (or file) body as a table; a 400 for anything else."""
    if not body:
        raise BadRequest("the body is empty; send an Arrow IPC stream")
    try:
        if body[:6] == b"ARROW1":
            return pa.ipc.open_file(pa.BufferReader(body)).read_all()
        return pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise BadRequest(f"the body is not an Arrow IPC stream: {exc}") from exc


def file_response(schema: pa.Schema, batches: Iterable[pa.RecordBatch],
                  headers: dict[str, str] | None = None) -> StreamingResponse:
    """An Arrow IPC file (what the clients parse from ``query``), written as the batches come."""
    return arrow_response(schema, batches, headers, file=True)
