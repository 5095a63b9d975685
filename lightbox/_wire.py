"""The SDK's wire layer, shared by ``Client`` and ``AsyncClient`` so the two cannot drift.

Nothing here does I/O. Each SDK call is described once, as a ``Call`` (one HTTP request and how to
read its answer) or a ``Plan`` (a generator that yields ``Call``s and receives their results, for
calls that take several requests, like paging). ``Client`` runs them with ``httpx.Client``,
``AsyncClient`` with ``httpx.AsyncClient``; both share the retry policy, the error mapping and the
incremental Arrow stream decoder defined here.
"""

from __future__ import annotations

import email.utils
import random
import struct
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeAlias, TypeVar

import httpx
import pyarrow as pa

from lightbox.errors import LightboxError, ServerError, Unreachable, error_for

ARROW_STREAM = "application/vnd.apache.arrow.stream"
RETRY_STATUS = frozenset({429, 502, 503})
T = TypeVar("T")
RefValue: TypeAlias = "int | str | datetime"


@dataclass(frozen=True)
class TableInfo:
    """One entry of ``Client.tables()``."""

    name: str
    version: int
    num_rows: int


@dataclass
class Call(Generic[T]):
    """One HTTP request and the function that turns its answer into the SDK's result."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    data: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = False
    timeout: float | None = None  # seconds to wait for the answer, when longer than the client's (a big batch)
    extensions: dict[str, Any] | None = None  # for the transport (``lightbox._inprocess``), never sent

    def build(self, http: httpx.Client | httpx.AsyncClient, request_id: str) -> httpx.Request:
        params = {k: _param(v) for k, v in self.params.items() if v is not None}
        extra: dict[str, Any] = {"extensions": self.extensions} if self.extensions else {}
        if self.timeout is not None:
            extra["timeout"] = httpx.Timeout(max(self.timeout, http.timeout.read or 0), connect=http.timeout.connect)
        return http.build_request(self.method, self.path, params=params, json=self.json, content=self.content,
                                  files=self.files, data=self.data,
                                  headers={**self.headers, "x-request-id": request_id}, **extra)


Plan: TypeAlias = Generator[Call[Any], Any, T]


def _param(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return str(value).lower()
    return value


# -- connection options, retries and errors ----------------------------------------------------
@dataclass(frozen=True)
class Options:
    """How a client connects; a ``TableDataset`` carries them into DataLoader workers."""

    url: str
    api_key: str | None = None
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 10.0

    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key} if self.api_key else {}

    def timeouts(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))

    def attempts(self, call: Call[Any]) -> int:
        """Idempotent calls (GET, PUT, DELETE and the POST reads) get ``retries`` more tries."""
        return self.retries + 1 if call.idempotent else 1

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Exponential backoff with jitter; a ``Retry-After`` header is honoured up to ``max_backoff``."""
        wait = float(min(self.max_backoff, self.backoff * 2**attempt)) * (0.5 + random.random() / 2)
        after = retry_after(response)
        return max(wait, min(after, self.max_backoff)) if after is not None else wait


def retry_after(response: httpx.Response | None) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def new_request_id() -> str:
    return uuid.uuid4().hex


def retryable(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUS


def error_from(response: httpx.Response, request_id: str) -> LightboxError:
    """The ``LightboxError`` for an error answer (its body must have been read)."""
    rid = response.headers.get("x-request-id") or request_id
    try:
        err = response.json()["error"]
        message, code, detail = str(err["message"]), str(err["code"]), err.get("detail") or {}
    except (ValueError, KeyError, TypeError):
        message, code, detail = response.text[:500] or response.reason_phrase, "http_error", {}
    cls = error_for(response.status_code)
    error = cls(message, status=response.status_code, code=code, request_id=rid, detail=detail)
    error.__cause__ = response.extensions.get("lightbox.app_error")  # what an app in this process raised
    return error


def unreachable(exc: httpx.TransportError, url: str, request_id: str) -> LightboxError:
    return Unreachable(f"no answer from {url}: {type(exc).__name__}: {exc}", status=0, code="unreachable",
                       request_id=request_id, detail={"url": url, "reason": str(exc) or type(exc).__name__})


# -- answers -----------------------------------------------------------------------------------
def read_json(response: httpx.Response) -> Any:
    return response.json()


def read_none(response: httpx.Response) -> None:
    return None


def read_bytes(response: httpx.Response) -> bytes:
    return response.content


def read_arrow(response: httpx.Response) -> pa.Table:
    return pa.ipc.open_stream(response.content).read_all()


def with_headers(parse: Callable[[httpx.Response], T]) -> Callable[[httpx.Response], tuple[T, httpx.Headers]]:
    return lambda response: (parse(response), response.headers)


# -- Arrow IPC streams, decoded as they arrive --------------------------------------------------
class ArrowStreamDecoder:
    """Feed the bytes of an Arrow IPC stream in any chunking; get record batches out as they complete.

    pyarrow's stream reader needs a blocking file; this works on pushed chunks, so the sync and
    the async client stream the same way, with memory bounded by one message.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.schema: pa.Schema | None = None
        self.done = False

    def feed(self, chunk: bytes) -> list[pa.RecordBatch]:
        self._buf += chunk
        out: list[pa.RecordBatch] = []
        pos = 0
        while not self.done:
            found = _message_size(self._buf, pos)
            if found is None:
                break
            size, end = found
            if end:
                self.done = True
            else:
                message = pa.ipc.read_message(pa.py_buffer(bytes(self._buf[pos: pos + size])))
                if message.type == "schema":
                    self.schema = pa.ipc.read_schema(message)
                elif message.type == "record batch" and self.schema is not None:
                    out.append(pa.ipc.read_record_batch(message, self.schema))
                else:
                    raise ServerError(f"unexpected Arrow IPC message {message.type!r}", code="bad_stream")
            pos += size
        del self._buf[:pos]
        return out

    def finish(self) -> None:
        if not self.done:
            raise ServerError("the Arrow stream ended before its end marker", code="truncated_stream")


def _message_size(buf: bytearray, pos: int) -> tuple[int, bool] | None:
    """(bytes, is end-of-stream) of the IPC message at ``pos``, or None until all of it has arrived."""
    have = len(buf) - pos
    if have < 4:
        return None
    head, length = 4, struct.unpack_from("<i", buf, pos)[0]
    if length == -1:  # the continuation marker 0xFFFFFFFF, then the metadata length
        if have < 8:
            return None
        head, length = 8, struct.unpack_from("<i", buf, pos + 4)[0]
    if length == 0:
        return head, True
    if have < head + length:
        return None
    # the flatbuffer Message table: field 3 is bodyLength (int64)
    meta = pos + head
    table = meta + struct.unpack_from("<I", buf, meta)[0]
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vt_size = struct.unpack_from("<H", buf, vtable)[0]
    slot = 4 + 2 * 3
    offset = struct.unpack_from("<H", buf, vtable + slot)[0] if slot < vt_size else 0
    body = struct.unpack_from("<q", buf, table + offset)[0] if offset else 0
    total = head + length + body
    return (total, False) if have >= total else None


class Rebatcher:
    """Cut a sequence of record batches into batches of exactly ``size`` rows (the last may be short)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("batch_size must be at least 1")
        self.size = size
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0

    def push(self, batch: pa.RecordBatch) -> list[pa.RecordBatch]:
        if batch.num_rows:
            self._pending.append(batch)
            self._rows += batch.num_rows
        if self._rows < self.size:
            return []
        table = pa.Table.from_batches(self._pending).combine_chunks()
        cut = table.num_rows - table.num_rows % self.size
        out = [_one_batch(table.slice(i, self.size)) for i in range(0, cut, self.size)]
        rest = table.slice(cut)
        self._pending = [_one_batch(rest)] if rest.num_rows else []
        self._rows = rest.num_rows
        return out

    def flush(self) -> list[pa.RecordBatch]:
        if not self._rows:
            return []
        table = pa.Table.from_batches(self._pending).combine_chunks()
        self._pending, self._rows = [], 0
        return [_one_batch(table)]


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    return table.combine_chunks().to_batches()[0]


# -- small helpers the call builders share -----------------------------------------------------
def drop_none(pairs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pairs.items() if v is not None}


def listed(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def ref_text(ref: RefValue) -> str:
    """A ref as the text ``/diff`` takes: a version number, a tag or branch name, or a timestamp."""
    return ref.isoformat() if isinstance(ref, datetime) else str(ref)


def one_ref(**given: Any) -> dict[str, Any]:
    """At most one of version, tag, branch, as_of, or a version with its branch (datetimes as RFC 3339)."""
    ref = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in given.items() if v is not None}
    if len(ref) > 1 and sorted(ref) != ["branch", "version"]:
        raise ValueError(f"give at most one of {', '.join(given)} (or a version with its branch); "
                         f"got {', '.join(ref)}")
    return ref
