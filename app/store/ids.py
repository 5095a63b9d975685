"""The one rule for row ids, checked on every write path and on every row route.

An id is the last part of a URL (``/api/v1/tables/{t}/rows/{id}``) and may contain ``/``
(``train/3/00012.png``). HTTP clients, proxies and browsers normalise paths: they collapse ``.``
and ``..`` segments and may merge ``//`` or read ``\\`` as ``/``, so an id shaped like a path
could address something other than its row (``victim/rows/../../bystander`` is
``DELETE /api/v1/tables/bystander``). Ids are therefore refused when they cannot be addressed
unambiguously:

- not a string, or not valid UTF-8 (a lone surrogate);
- empty, or longer than ``MAX_ID_BYTES`` bytes of UTF-8;
- an empty segment: a leading or trailing ``/``, or ``//``;
- a ``.`` or ``..`` segment (``..``, ``./a``, ``a/../b``);
- a control character (U+0000-U+001F, U+007F-U+009F: NUL, tab, newline, DEL, ...) or a backslash.

Anything else is allowed, ``%`` included: clients percent-encode the whole id as one path segment
(``/`` as ``%2F``, ``%`` as ``%25``) and the server decodes a path exactly once, so ``%2e%2e``
is an id of six characters, never ``..``. The SDK keeps a copy of this rule (``lightbox/_ids.py``,
which must not import the server); a test holds the two to the same table of cases.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from app.errors import Unprocessable

MAX_ID_BYTES = 1024
SHOWN = 5  # bad ids named in one error
RULE = ("ids are non-empty UTF-8 strings of at most 1024 bytes, without control characters or '\\', "
        "and whose '/'-separated segments are neither empty nor '.' or '..'")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The same rule for Arrow's RE2, run over a whole column at once (lengths and UTF-8 are checked apart).
_BAD_RE2 = r"^$|^/|/$|//|(^|/)\.\.?(/|$)|[\x{00}-\x{1f}\x{7f}-\x{9f}\\]"


class InvalidId(Unprocessable):
    code = "invalid_id"


def id_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a row id, or None when it can."""
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


def shown(value: Any) -> str:
    """An id as an error message can always carry it (escaped, and cut when long)."""
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_id(value: Any) -> str:
    """``value`` when it is a valid id; else a 422 ``invalid_id`` saying why."""
    problem = id_problem(value)
    if problem is not None:
        raise InvalidId(f"invalid id {shown(value)}: it {problem}; {RULE}", id=shown(value), reason=problem)
    return value


def check_ids(values: Iterable[Any]) -> None:
    """Every id valid, or one 422 naming the first few bad ones and why."""
    bad = []
    for i, value in enumerate(values):
        problem = id_problem(value)
        if problem is not None:
            bad.append({"row": i, "id": shown(value), "reason": problem})
    _raise_for(bad)


def check_id_column(column: pa.Array | pa.ChunkedArray) -> None:
    """An Arrow ``id`` column must be non-null strings that follow the rule; nothing is coerced.

    Vectorised: a type check, the null count, a full UTF-8 validation, byte lengths and one RE2
    match over the column; only the rows that fail are looked at one by one.
    """
    kind = column.type
    if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    if not _is_text(kind):
        raise InvalidId(f"the 'id' column must be strings (utf8 or large_utf8), not {kind}; "
                        "ids are never converted", type=str(kind))
    if column.null_count:
        rows = pc.indices_nonzero(pc.is_null(column)).to_pylist()[:SHOWN]
        raise InvalidId(f"the 'id' column has {column.null_count} null(s) (rows {rows}); every row needs an id",
                        nulls=column.null_count, rows=rows)
    try:
        column.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise InvalidId(f"the 'id' column is not valid UTF-8: {exc}") from exc
    bad = pc.or_(pc.greater(pc.binary_length(column), MAX_ID_BYTES), pc.match_substring_regex(column, _BAD_RE2))
    if pc.any(bad).as_py():
        rows = pc.indices_nonzero(bad).to_pylist()
        values = pc.take(column, pa.array(rows[:SHOWN])).to_pylist()
        _raise_for([{"row": r, "id": shown(v), "reason": id_problem(v) or "breaks the id rule"}
                    for r, v in zip(rows, values, strict=False)], total=len(rows))


def invalid_rows(column: pa.Array | pa.ChunkedArray) -> list[int]:
    """Rows of a text column whose value breaks the rule (nulls included), found over the whole column
    at once: an upload session skips those rows, where ``check_id_column`` refuses the request."""
    bad = pc.or_kleene(pc.is_null(column), pc.or_(pc.greater(pc.binary_length(column), MAX_ID_BYTES),
                                                    pc.match_substring_regex(column, _BAD_RE2)))
    return pc.indices_nonzero(pc.fill_null(bad, True)).to_pylist() if pc.any(bad).as_py() else []


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _raise_for(bad: list[dict[str, Any]], total: int | None = None) -> None:
    if not bad:
        return
    count = total if total is not None else len(bad)
    first = bad[0]
    raise InvalidId(f"{count} invalid id(s); the first, {first['id']} (row {first['row']}), {first['reason']}; "
                    f"{RULE}", invalid=bad[:SHOWN], count=count)
