"""Request bodies: the base every JSON body model extends, and how a rejected body is reported.

A body field the model does not know is refused, never ignored: ``{"name": "b1", "from": "v1"}``
to create a branch would otherwise make ``b1`` from latest, because the ref field is spelled
differently. The refusal is a 422 that names each unknown field and suggests the close match among
the model's fields (and their aliases), so a typo costs one round trip, not a wrong write.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from app.errors import BadRequest, LightboxError, Unprocessable

MAX_ECHO = 200  # characters of a rejected value quoted back


class UnknownField(Unprocessable):
    code = "unknown_field"


class InvalidRequest(BadRequest):
    code = "invalid_request"


class RequestBody(BaseModel):
    """A JSON body: unknown fields are a 422 naming them (with a suggestion), not silently dropped."""

    model_config = ConfigDict(extra="forbid")
    # words a client may reach for that no difflib match finds: {"from": "version"}
    field_hints: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict) or cls.model_config.get("extra") != "forbid":
            return data
        known = accepted_names(cls)
        unknown = [key for key in data if key not in known]
        if unknown:
            raise unknown_fields_error(unknown, known, cls.field_hints)
        return data


def accepted_names(model: type[BaseModel]) -> list[str]:
    """The keys a body of ``model`` may carry: each field's alias, or its name."""
    names = []
    for name, info in model.model_fields.items():
        names.append(info.alias or name)
        if info.alias and model.model_config.get("populate_by_name"):
            names.append(name)
    return names


def unknown_fields_error(unknown: list[str], known: list[str],
                         hints: dict[str, str] | None = None) -> PydanticCustomError:
    message, ctx = describe_unknown(unknown, known, hints)
    return PydanticCustomError("unknown_field", message, ctx)


def check_fields(body: dict[str, Any], known: list[str], hints: dict[str, str] | None = None) -> None:
    """A 422 when a body parsed by hand (the LanceDB routes) carries a field the route does not read."""
    unknown = [key for key in body if key not in known]
    if unknown:
        message, ctx = describe_unknown(unknown, known, hints)
        raise UnknownField(message, **ctx)


def describe_unknown(unknown: list[str], known: list[str],
                     hints: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """The message and detail for unknown fields: each named, with the close match when there is one."""
    suggestions = {}
    for key in unknown:
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = (hints or {}).get(str(key).lower())
        if hint or close:
            suggestions[str(key)] = hint or close[0]
    parts = [f"{key!r}" + (f" (did you mean {suggestions[str(key)]!r}?)" if str(key) in suggestions else "")
             for key in unknown]
    message = f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(parts)}; accepted: {', '.join(known)}"
    return message, {"unknown": [str(k) for k in unknown], "suggestions": suggestions, "accepted": list(known)}


def request_error(errors: list[dict[str, Any]]) -> LightboxError:
    """One error for a body or parameters that failed validation: a 422 for unknown fields, else a 400.

    Each problem is reported with where it is (``loc``), what is wrong (``msg``) and, for a scalar,
    the value that was given (shortened), so the client sees what it sent.
    """
    problems = [_problem(e) for e in errors]
    unknown = [e for e in errors if e.get("type") == "unknown_field"]
    if unknown:
        ctx = unknown[0].get("ctx") or {}
        return UnknownField(str(unknown[0].get("msg")), unknown=ctx.get("unknown", []),
                            suggestions=ctx.get("suggestions", {}), accepted=ctx.get("accepted", []),
                            errors=problems)
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    return InvalidRequest(f"{'.'.join(map(str, first['loc']))}: {first['msg']}", errors=problems)


def _problem(error: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"loc": [str(p) if not isinstance(p, int) else p for p in error.get("loc", ())],
                           "msg": error.get("msg")}
    value = error.get("input")
    if isinstance(value, bool | int | float) or value is None:
        out["input"] = value
    elif isinstance(value, str):
        out["input"] = value[:MAX_ECHO]
    return out
