"""SDK errors: every failure of a call is a ``LightboxError`` carrying status, code and request id."""

from __future__ import annotations

from typing import Any


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


class Unprocessable(LightboxError):
    """422: well-formed but unusable (an image that does not decode)."""


class ServerError(LightboxError):
    """5xx, or no answer at all."""


BY_STATUS: dict[int, type[LightboxError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: PayloadTooLarge,
    416: BadRequest, 422: Unprocessable,
}


def error_for(status: int) -> type[LightboxError]:
    return BY_STATUS.get(status) or (ServerError if status >= 500 else LightboxError)
