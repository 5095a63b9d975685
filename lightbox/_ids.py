"""The service's rule for row ids, kept here so the SDK refuses a bad id before sending it.

The SDK imports nothing from the server, so this is a copy of ``app/store/ids.py``'s rule (a test
holds both to one table of cases). An id is refused when a URL could not address it
unambiguously: not a string or not valid UTF-8, empty, over 1024 bytes, an empty segment (a
leading or trailing ``/``, ``//``), a ``.`` or ``..`` segment, a control character or ``\\``.

An id travels in a path as ONE percent-encoded segment (``/`` as ``%2F``, ``%`` as ``%25``), so no
HTTP client or proxy can read its slashes or dots as path structure: a row route only ever
reaches a row.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from lightbox.errors import InvalidId

MAX_ID_BYTES = 1024
RULE = ("ids are non-empty UTF-8 strings of at most 1024 bytes, without control characters or '\\', "
        "and whose '/'-separated segments are neither empty nor '.' or '..'")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a row id, or None when it can (the service's rule)."""
    if not isinstance(value, str):
        return f"is not a string ({'null' if value is None else type(value).__name__})"
    if not value:
        return "is empty"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if size > MAX_ID_BYTES:
        return f"is {size} bytes long; the limit is {MAX_ID_BYTES}"
    found = _CONTROL.search(value)
    if found:
        return f"contains the control character U+{ord(found.group()):04X}"
    if "\\" in value:
        return "contains '\\' (URL parsers read it as '/')"
    if value.startswith("/") or value.endswith("/") or "//" in value:
        return "has an empty path segment (a leading or trailing '/', or '//')"
    if any(part in (".", "..") for part in value.split("/")):
        return "has a '.' or '..' path segment"
    return None


def check_id(value: Any) -> str:
    """``value`` when it is a valid id; else ``InvalidId`` (a ``ValueError``), before anything is sent."""
    problem = id_problem(value)
    if problem is not None:
        shown = ascii(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise InvalidId(f"invalid id {shown}: it {problem}; {RULE}", code="invalid_id",
                        detail={"id": shown, "reason": problem})
    return value


def segment(text: str) -> str:
    """Any name as one path segment: every reserved character encoded, ``/`` and ``%`` included.

    ``quote`` leaves ``.`` alone, and HTTP clients collapse a ``.`` or ``..`` segment
    (``tables/t/tags/..`` would become ``DELETE tables/t``), so a segment of dots is sent as
    ``%2E``s: the service then sees the name ``..`` and refuses it.
    """
    encoded = quote(text, safe="")
    return encoded.replace(".", "%2E") if not encoded.strip(".") else encoded


def id_segment(row_id: str) -> str:
    """A checked id as one path segment (``3/00001.png`` as ``3%2F00001.png``)."""
    return segment(check_id(row_id))
