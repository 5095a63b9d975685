"""Response helpers: fast JSON for Arrow-derived values, and the version headers."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from typing import Any

import orjson
from fastapi.responses import Response

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


class JSON(Response):
    """orjson rendering: datetimes, numpy scalars and non-string dict keys handled natively."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(
            content, default=_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        )


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
