"""The skipped files of an ingest or an upload, summarised for a person: counts by reason, a few examples.

A re-run skips every file it already stored (``duplicate_id``); listing those one by one would bury the
files that are really wrong. So real problems come first, each reason shows a few examples, and the
full list is pointed to in the report file (or the ``--report`` option that writes one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

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
