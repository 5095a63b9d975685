"""Names and refs: the one rule for table and branch names, and a point in a table's history named by
version, tag, branch or timestamp."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from app.errors import InvalidName, InvalidRef

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str, kind: str = "table") -> None:
    """A table's (or a branch's: ``kind``) name follows the one name rule; the error names which it is."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # fullmatch: `$` passes a final newline
        raise InvalidName(
            f"invalid {kind} name {name!r}: use letters, digits, '.', '_' or '-', starting with a letter or digit",
            name=name,
        )


@dataclass(frozen=True)
class Ref:
    """At most one of version, tag, as_of; ``branch`` alone means the branch's latest.

    ``version`` together with ``branch`` pins a version on that branch (version numbers are per
    branch); every other pair names two points, and ``Ref.parse`` refuses it.
    """

    version: int | None = None
    tag: str | None = None
    branch: str | None = None
    as_of: datetime | None = None

    @classmethod
    def parse(
        cls,
        version: int | str | None = None,
        tag: str | None = None,
        branch: str | None = None,
        as_of: str | datetime | None = None,
    ) -> Ref:
        given = [n for n, v in (("version", version), ("tag", tag), ("branch", branch), ("as_of", as_of)) if v]
        if version == 0:
            given.append("version")
        if len(given) > 1 and sorted(given) != ["branch", "version"]:
            raise InvalidRef(f"give at most one of version, tag, branch, as_of (or a version with its branch); "
                             f"got {', '.join(given)}")
        return cls(
            version=_parse_version(version) if version is not None else None,
            tag=tag or None,
            branch=branch or None,
            as_of=_parse_time(as_of) if as_of else None,
        )

    @property
    def pinned(self) -> bool:
        """True when the ref can never move (a version, or a tag, which names one version)."""
        return self.version is not None or self.tag is not None

    def describe(self) -> str:
        if self.version is not None:
            return f"version {self.version}" + (f" on branch {self.branch}" if self.branch else "")
        if self.tag:
            return f"tag {self.tag!r}"
        if self.as_of:
            return f"as_of {self.as_of.isoformat()}"
        if self.branch:
            return f"branch {self.branch!r}"
        return "latest"


LATEST = Ref()


def _parse_version(value: int | str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidRef(f"version must be a positive integer, got {value!r}") from None
    if not 1 <= number < 2**63:  # Lance's versions are 64-bit; a larger number cannot reach it
        raise InvalidRef(f"version must be a positive 64-bit integer, got {value!r}")
    return number


def _parse_time(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRef(f"as_of must be an RFC 3339 timestamp, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
