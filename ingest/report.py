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

    def summary(self, limit: int = 10, *, report_path: str | None = None) -> str:
        """The human summary printed at the end of a run (``report_path``: where ``--report`` wrote the
        whole report, which the skip summary points to)."""
        from lightbox._skips import skip_lines

        lines = [
            f"table      {self.table}",
            *([f"root       {self.root}"] if self.root else []),
            *([f"server     {self.server}"] if self.server and not self.root else []),
            f"added      {self.added} images, {_human_bytes(self.bytes)} in {self.seconds:.1f} s"
            f" ({self.images_per_second:,.0f} images/s)",
        ]
        if self.version is None:
            where = f"unchanged at version {self.previous_version}" if self.previous_version else "not created"
            lines.append(f"version    {where} (nothing new to add)")
        else:
            span = self.versions if len(self.versions) > 1 else [self.version]
            lines.append(f"version    {', '.join(map(str, span))} (was {self.previous_version or 'none'})")
        if self.updated:
            lines.append(f"updated    {self.updated} of them replaced rows with the same id (new content)")
        if self.tag:
            lines.append(f"tag        {self.tag}")
        lines.extend(f"note       {w}" for w in self.warnings)
        lines.extend(skip_lines([asdict(s) for s in self.skipped], report_path))
        for title, keys in (
            ("files with no metadata row", self.missing_metadata),
            ("metadata rows matching no file", self.unmatched_metadata),
            ("repeated metadata keys (first kept)", self.duplicate_metadata_keys),
        ):
            if keys:
                shown = ", ".join(keys[:limit]) + (" ..." if len(keys) > limit else "")
                lines.append(f"{title}: {len(keys)}: {shown}")
        return "\n".join(lines)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TB"
