"""What an ingest run did, summarised for a person: the counts, the version, and the skipped files by
reason with a few examples each.

A re-run skips every file it already stored (``duplicate_id``); listing those one by one would bury the
files that are really wrong. So real problems come first, each reason shows a few examples, and the
full list is pointed to in the report file (or the ``--report`` option that writes one). The summary
reads the run's report as a dict (``IngestReport.to_dict()``), wherever the run happened.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from lightbox.cli.output import human_bytes

__all__ = ["ingest_summary", "skip_lines"]

# Skips that are a write's own rules (ids kept unique, content deduplicated, files unchanged), not bad input.
ROUTINE = ("duplicate_id", "duplicate_content", "unchanged")


def skip_lines(skipped: Sequence[Mapping[str, Any]], report_path: str | None = None, examples: int = 3) -> list[str]:
    """``skipped N: reason n, ...``, then per reason (problems before routine skips) up to ``examples``
    files with their messages, then where the whole list is (or how to get it)."""
    if not skipped:
        return []
    counts = Counter(str(s["reason"]) for s in skipped)
    order = sorted(counts, key=lambda r: (r in ROUTINE, -counts[r], r))
    lines = [f"skipped    {len(skipped)}: " + ", ".join(f"{r} {counts[r]}" for r in order)]
    hidden = 0
    for reason in order:
        shown = [s for s in skipped if s["reason"] == reason][:examples]
        lines.append(f"  {reason} ({counts[reason]}):")
        lines.extend(f"    - {s['file']}: {s['message']}" for s in shown)
        if counts[reason] > len(shown):
            lines.append(f"    ... and {counts[reason] - len(shown)} more")
            hidden += counts[reason] - len(shown)
    if hidden:
        lines.append(f"  every skipped file is listed in {report_path}" if report_path else
                     "  to list every skipped file, run again with --report FILE")
    return lines


def ingest_summary(report: Mapping[str, Any], limit: int = 10, *, report_path: str | None = None) -> str:
    """The summary printed at the end of a run (``report_path``: where ``--report`` wrote the whole
    report, which the skip summary points to)."""
    lines = [
        f"table      {report['table']}",
        *([f"root       {report['root']}"] if report.get("root") else []),
        *([f"server     {report['server']}"] if report.get("server") and not report.get("root") else []),
        f"added      {report['added']} images, {human_bytes(report['bytes'])} in {report['seconds']:.1f} s"
        f" ({report['images_per_second']:,.0f} images/s)",
    ]
    previous = report.get("previous_version")
    if report.get("version") is None:
        where = f"unchanged at version {previous}" if previous else "not created"
        lines.append(f"version    {where} (nothing new to add)")
    else:
        span = report["versions"] if len(report.get("versions") or []) > 1 else [report["version"]]
        lines.append(f"version    {', '.join(map(str, span))} (was {previous or 'none'})")
    if report.get("updated"):
        lines.append(f"updated    {report['updated']} of them replaced rows with the same id (new content)")
    if report.get("unchanged"):
        lines.append(f"unchanged  {report['unchanged']} of them equal to the stored rows (not rewritten)")
    if report.get("tag"):
        lines.append(f"tag        {report['tag']}")
    lines.extend(f"note       {w}" for w in report.get("warnings") or [])
    lines.extend(skip_lines(report.get("skipped") or [], report_path))
    for title, key in (("files with no metadata row", "missing_metadata"),
                       ("metadata rows matching no file", "unmatched_metadata"),
                       ("repeated metadata keys (first kept)", "duplicate_metadata_keys")):
        keys = report.get(key) or []
        if keys:
            shown = ", ".join(keys[:limit]) + (" ..." if len(keys) > limit else "")
            lines.append(f"{title}: {len(keys)}: {shown}")
    return "\n".join(lines)
