"""Read tabular side files (CSV, TSV, Parquet, JSONL) into Arrow with typed columns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa


class SideFileError(Exception):
    """A metadata or manifest file that cannot be used; the run stops before writing anything."""


def read_table(path: str | Path, text_columns: Sequence[str] = ()) -> pa.Table:
    """Load a side file; column types are inferred (ints, floats, bools, timestamps, strings).

    ``text_columns`` are read from CSV/TSV as strings as written: a key like ``00012`` must not
    become the integer 12, or it would never match the file ``00012.png``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".tab", ".txt"):
            import pyarrow.csv as pcsv

            delimiter = "\t" if suffix in (".tsv", ".tab") else ","
            return pcsv.read_csv(
                path,
                parse_options=pcsv.ParseOptions(delimiter=delimiter),
                convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in text_columns}),
            )
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            import pyarrow.json as pjson

            return pjson.read_json(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise SideFileError(f"cannot read {path}: {exc}") from exc
    raise SideFileError(f"unsupported file type {suffix or path.name!r}: use .csv, .tsv, .parquet or .jsonl")
