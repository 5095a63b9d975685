"""Response helpers: fast JSON for Arrow-derived values, and the version headers."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import pyarrow as pa
from fastapi.responses import JSONResponse, StreamingResponse

from app.chunks import Chunks
from app.store import Ref, Snapshot


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class JSON(JSONResponse):
    """orjson rendering: datetimes, numpy scalars and non-string dict keys handled natively.

    A JSONResponse (not a bare Response) so the OpenAPI page documents its answers as JSON, not text."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return dumps(content)
        except orjson.JSONEncodeError:
            # orjson refuses integers beyond 64 bits (a client may send them and see them quoted back):
            # an answer must never fail because a value cannot be rendered
            return dumps(renderable(content))


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, default=_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def renderable(value: Any) -> Any:
    """``value`` with what orjson cannot write made writable: out-of-range integers become strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(renderable(k)): renderable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [renderable(v) for v in value]
    return value


def version_headers(snap: Snapshot) -> dict[str, str]:
    headers = {"X-Lightbox-Version": str(snap.version)}
    if snap.branch:
        headers["X-Lightbox-Branch"] = snap.branch
    return headers


def ref_query(ref: Ref) -> str:
    """The query string that pins a URL to the same ref as the request that built it."""
    for name in ("version", "tag", "branch", "as_of"):
        value = getattr(ref, name)
        if value is not None:
            text = value.isoformat() if isinstance(value, dt.datetime) else str(value)
            from urllib.parse import quote

            return f"?{name}={quote(text)}"
    return ""


ARROW_STREAM = "application/vnd.apache.arrow.stream"


def wants_arrow(accept: str | None) -> bool:
    return bool(accept) and ARROW_STREAM in accept  # type: ignore[operator]


def _plain(schema: pa.Schema) -> pa.Schema:
    """The schema without Lance's own field metadata (blob markers, primary-key flags would confuse
    other readers), keeping the rest: a vector column's ``lightbox:model/source/metric`` travel with it."""
    return pa.schema([_kept_metadata(f) for f in schema])


def _kept_metadata(f: pa.Field) -> pa.Field:
    kept = {k: v for k, v in (f.metadata or {}).items() if not k.startswith((b"lance", b"ARROW:extension"))}
    return f.with_metadata(kept) if kept else f.remove_metadata()


ARROW_FILE = "application/vnd.apache.arrow.file"


def arrow_response(
    schema: pa.Schema, batches: Iterable[pa.RecordBatch], headers: dict[str, str] | None, *, file: bool = False
) -> StreamingResponse:
    """An Arrow IPC stream (or, with ``file``, the IPC file format the LanceDB clients read), written
    batch by batch so large results never sit in memory."""
    plain = _plain(schema)
    open_writer = pa.ipc.new_file if file else pa.ipc.new_stream

    def body() -> Iterator[bytes]:
        sink = Chunks()
        with open_writer(pa.PythonFile(sink, mode="w"), plain) as writer:
            for batch in batches:
                writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=plain))
                yield sink.drain()
        yield sink.drain()

    return StreamingResponse(body(), media_type=ARROW_FILE if file else ARROW_STREAM, headers=headers)
