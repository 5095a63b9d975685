"""How rows print: an aligned table (for people), a JSON array, JSON Lines or CSV (for programs)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

__all__ = ["CELL_WIDTH", "cell", "human_bytes", "write_rows"]

CELL_WIDTH = 40  # a table cell longer than this is cut with "..."


def write_rows(rows: pa.Table, fmt: str, out: Any = None) -> None:
    """Print Arrow rows as an aligned table, a JSON array, JSON Lines or CSV."""
    out = out or sys.stdout
    records = rows.to_pylist()
    if fmt == "json":
        out.write(json.dumps([_jsonable(r) for r in records], default=str, indent=1) + "\n")
    elif fmt == "jsonl":
        for r in records:
            out.write(json.dumps(_jsonable(r), default=str) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(rows.column_names)
        for r in records:
            writer.writerow([cell(r[c], None) for c in rows.column_names])
    else:
        _write_table(rows.column_names, records, out)


def _write_table(names: Sequence[str], records: list[dict[str, Any]], out: Any) -> None:
    cells = [[cell(r[c], CELL_WIDTH) for c in names] for r in records]
    widths = [max([len(n), *(len(row[i]) for row in cells)]) for i, n in enumerate(names)]
    out.write("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(records)} row{'s' if len(records) != 1 else ''})\n")


def cell(value: Any, width: int | None) -> str:
    """One value as text: bytes and long vectors summarised, a cell wider than ``width`` cut."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value) and len(value) > 8:
        return f"<{len(value)}-d vector>"
    text = value.isoformat() if hasattr(value, "isoformat") else (
        json.dumps(value, default=str) if isinstance(value, list | dict) else str(value))
    text = text.replace("\n", " ").replace("\t", " ")
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (f"<{len(v)} bytes>" if isinstance(v, bytes) else v) for k, v in record.items()}


def human_bytes(n: int) -> str:
    """``1536`` -> ``1.5 KB``."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TB"
