"""The error tree: each class carries its HTTP status and a stable code.

Routes and services raise these; one handler in ``app.main`` renders every one of them as
``{"error": {"code", "message", "detail"}}``. The store translates Lance's bare exceptions into
these at its boundary, so nothing below the routes decides an HTTP status.
"""

from __future__ import annotations

from typing import Any


class LightboxError(Exception):
    """Base of every error the service reports to a client."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers the error needs (e.g. Content-Range on a 416)."""
        return {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "detail": self.detail}}


class BadRequest(LightboxError):
    status = 400
    code = "bad_request"


class InvalidName(BadRequest):
    code = "invalid_name"


class InvalidRef(BadRequest):
    code = "invalid_ref"


class InvalidRange(LightboxError):
    status = 416
    code = "range_not_satisfiable"

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Range": f"bytes */{self.detail.get('size', '*')}"}


class NotFound(LightboxError):
    status = 404
    code = "not_found"


class TableNotFound(NotFound):
    code = "table_not_found"


class RowNotFound(NotFound):
    code = "row_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class TagNotFound(NotFound):
    code = "tag_not_found"


class BranchNotFound(NotFound):
    code = "branch_not_found"


class IndexNotFound(NotFound):
    code = "index_not_found"


class NoImage(NotFound):
    code = "no_image"


class Conflict(LightboxError):
    status = 409
    code = "conflict"


class TableExists(Conflict):
    code = "table_exists"


class PayloadTooLarge(LightboxError):
    status = 413
    code = "payload_too_large"


class RequestTimeout(LightboxError):
    status = 408
    code = "request_timeout"


class UnsupportedMediaType(LightboxError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(LightboxError):
    status = 422
    code = "unprocessable"


class CommitConflict(Conflict):
    """A write lost a commit race with a concurrent writer (Lance commits optimistically); trying again
    normally succeeds, so the answer says when."""

    code = "commit_conflict"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class StoreUnreachable(LightboxError):
    """The data root's object store did not answer (connection refused, DNS, timeouts): not the client's
    mistake, and not a bug here; the request may succeed once the store is back."""

    status = 503
    code = "store_unreachable"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class WriterTimeout(LightboxError):
    """A read replica's writer did not answer a forwarded write in time: the write may still apply."""

    status = 504
    code = "writer_timeout"


async def send_error(send: Any, error: LightboxError) -> None:
    """Answer ``error`` in the one body shape from plain ASGI middleware (no handler runs there)."""
    import orjson

    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class StorageFailed(LightboxError):
    """The data root's object store refused a request: no such bucket, refused credentials, another error."""

    status = 502
    code = "storage_error"
