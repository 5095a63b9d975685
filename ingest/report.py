"""What an ingest run did: rows added, files skipped with reasons, metadata mismatches, speed."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Skip:
    file: str
    reason: str
    message: str


@dataclass
class IngestReport:
    table: str
    previous_version: int | None = None
    version: int | None = None
    versions: list[int] = field(default_factory=list)
    tag: str | None = None
    added: int = 0
    updated: int = 0  # rows replaced by an upsert
    unchanged: int = 0  # rows an upsert found equal to the stored ones (skipped as "unchanged", not rewritten)
    deleted: int = 0  # rows a replacing write removed (``IngestOptions.delete_ids``)
    bytes: int = 0
    seconds: float = 0.0
    skipped: list[Skip] = field(default_factory=list)
    missing_metadata: list[str] = field(default_factory=list)  # files with no metadata row
    unmatched_metadata: list[str] = field(default_factory=list)  # metadata keys with no file
    duplicate_metadata_keys: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    root: str | None = None  # the data root written to, as the summary names it (set by the command line)
    server: str | None = None  # or the service written to

    def skip(self, file: str, reason: str, message: str) -> None:
        self.skipped.append(Skip(file, reason, message))

    @property
    def images_per_second(self) -> float:
        return self.added / self.seconds if self.seconds > 0 else 0.0

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped).most_common())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["images_per_second"] = round(self.images_per_second, 1)
        out["skipped_by_reason"] = self.skipped_by_reason()
        return out

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
