"""SDK errors: every failure of a call is a ``LightboxError`` carrying status, code and request id.

>>> try:
...     client.table("digits").get("9/99999.png")
... except lightbox.NotFound as exc:
...     print(exc.status, exc.code, exc.request_id)
404 row_not_found 5f0c3c0e2b5d4d3c9a0b1c2d3e4f5a6b

``status`` is the HTTP status (0 when nothing was sent or nothing came back), ``code`` the
service's error code (``table_not_found``, ``invalid_filter``, ``merge_conflict``, ...),
``request_id`` the ``X-Request-ID`` the service answered with (the one the SDK sent otherwise),
and ``detail`` the error's ``detail`` object.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BY_STATUS",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidId",
    "LightboxError",
    "NotFound",
    "PayloadTooLarge",
    "RangeNotSatisfiable",
    "ReadOnly",
    "ServerError",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "Unreachable",
    "UnsupportedMediaType",
    "error_for",
]


class LightboxError(Exception):
    """A call the service refused or could not answer."""

    def __init__(self, message: str, *, status: int = 0, code: str = "error", request_id: str | None = None,
                 detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.detail = detail or {}

    def __str__(self) -> str:
        rid = f", request {self.request_id}" if self.request_id else ""
        return f"{self.message} ({self.status} {self.code}{rid})"


class BadRequest(LightboxError):
    """400: the request itself is wrong (a bad filter, two refs, an unknown column)."""


class Unauthorized(LightboxError):
    """401: no or an unknown API key."""


class Forbidden(LightboxError):
    """403: the key may not do this (a read-only key writing)."""


class NotFound(LightboxError):
    """404: no such table, row, version, tag or branch."""


class Conflict(LightboxError):
    """409: the write clashes with the table's state (an existing tag, a merge conflict)."""


class PayloadTooLarge(LightboxError):
    """413: an upload over the service's size limit."""


class UnsupportedMediaType(LightboxError):
    """415: a body the route does not take."""


class RangeNotSatisfiable(BadRequest):
    """416: a byte range outside the image."""


class Unprocessable(LightboxError):
    """422: well-formed but unusable (an image that does not decode)."""


class TooManyRequests(LightboxError):
    """429: the service asks to slow down (idempotent calls were retried before this was raised)."""


class ServerError(LightboxError):
    """5xx, or no answer at all."""


class ServiceUnavailable(ServerError):
    """503: the service is overloaded or starting (idempotent calls were retried first)."""


class Unreachable(ServerError):
    """No HTTP answer: connection refused, reset or timed out (``status`` is 0)."""


class InvalidId(LightboxError, ValueError):
    """A row id the service would refuse (``..``, ``a//b``, a control character, ...); raised before
    anything is sent (``status`` is 0). Also a ``ValueError``."""


class ReadOnly(LightboxError):
    """A write through a handle pinned with ``at(...)``; raised before anything is sent (``status`` is 0)."""


BY_STATUS: dict[int, type[LightboxError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
    415: UnsupportedMediaType, 416: RangeNotSatisfiable, 422: Unprocessable, 429: TooManyRequests,
    503: ServiceUnavailable,
}


def error_for(status: int) -> type[LightboxError]:
    """The exception class for an HTTP status."""
    return BY_STATUS.get(status) or (ServerError if status >= 500 else LightboxError)
