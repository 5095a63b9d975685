"""Facets: value counts of a table's low-cardinality columns and histograms of its numeric ones,
at one ref and under one filter (the gallery's side panel).

The counts are the rows the engine returns for the filter, the same rows ``count`` counts, so a
value's count equals ``count`` under ``filter AND column = value`` and the counts of a facet add
up to the filtered total. Columns that tell rows apart (ids, digests, paths, captions) have too
many values to count and are left out when no columns are named; named ones are counted whatever
their cardinality, up to ``max_values`` values each, the rest summed in ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.errors import BadRequest
from app.filters import check_filter, filter_errors
from app.store import Ref, Snapshot, Store
from app.store.schema import STANDARD_NAMES, is_blob, is_vector

__all__ = ["FacetSpec", "facets"]

AUTO_COLUMNS = 8  # columns faceted when none are named
SKIPPED = frozenset({"id", "sha256", "path", "source", "uri", "image_url", "ingested_at"})


@dataclass
class FacetSpec:
    filter: str | None = None
    columns: list[str] | None = None
    max_values: int = 20  # values listed per column (the most frequent); more than this, unnamed: not faceted
    bins: int = 10  # histogram bins of a numeric column with more distinct values than max_values


def facets(store: Store, name: str, ref: Ref, spec: FacetSpec) -> tuple[Snapshot, dict[str, Any]]:
    """``{"count", "facets": [...]}`` for the rows ``spec.filter`` keeps at ``ref``."""
    if not 1 <= spec.max_values <= 1000 or not 1 <= spec.bins <= 100:
        raise BadRequest("max_values must be 1..1000 and bins 1..100")
    snap = store.snapshot(name, ref)
    named = spec.columns is not None
    columns = _chosen(snap.schema, spec.columns)
    predicate = check_filter(snap, spec.filter)
    with filter_errors(predicate):
        rows = snap.read(columns, filter=predicate) if columns else None
        total = rows.num_rows if rows is not None else snap.count(predicate)
    out = []
    for column in columns:
        facet = _facet(rows.column(column), spec, named)
        if facet is not None:
            out.append({"column": column, "type": str(snap.schema.field(column).type), **facet})
    return snap, {"count": total, "facets": out}


def _chosen(schema: pa.Schema, named: list[str] | None) -> list[str]:
    """The columns to facet: those named (checked), or the first ``AUTO_COLUMNS`` countable ones."""
    if named is not None:
        unknown = [c for c in named if c not in schema.names]
        if unknown:
            raise BadRequest(f"unknown column(s) {unknown}", columns=unknown)
        bad = [c for c in named if not _countable(schema.field(c))]
        if bad:
            raise BadRequest(f"column(s) {bad} hold lists, vectors or bytes; facets count scalar columns",
                             columns=bad)
        return list(dict.fromkeys(named))
    countable = [f.name for f in schema if _countable(f) and f.name not in SKIPPED]
    # the table's own columns (label, split) before the ones ingest adds to every table (mime, width)
    return sorted(countable, key=lambda c: c in STANDARD_NAMES)[:AUTO_COLUMNS]


def _countable(field: pa.Field) -> bool:
    t = field.type
    if is_blob(field) or is_vector(field):
        return False
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)
            or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_dictionary(t))


def _facet(values: pa.ChunkedArray, spec: FacetSpec, named: bool) -> dict[str, Any] | None:
    nulls = values.null_count
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    counts = pc.value_counts(values.drop_null()) if len(values) > nulls else None
    distinct = len(counts) if counts is not None else 0
    numeric = pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
    if numeric and (pa.types.is_floating(values.type) or distinct > spec.max_values):
        return {"kind": "histogram", "nulls": nulls, **_histogram(values, spec.bins)}
    if distinct > spec.max_values and not named:
        return None  # an id-like column: its counts would say nothing
    pairs = sorted(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True),
                   key=lambda p: (-p[1], str(p[0]))) if counts is not None else []
    listed = pairs[:spec.max_values]
    return {"kind": "values", "nulls": nulls, "distinct": distinct,
            "values": [{"value": v, "count": c} for v, c in listed],
            "other": sum(c for _, c in pairs[spec.max_values:])}


def _histogram(values: pa.ChunkedArray, bins: int) -> dict[str, Any]:
    """Equal-width bins over [min, max]; each holds lo <= v < hi (``closed``: lo <= v <= hi, the
    last bin of a float column). Integer columns get whole-number edges. NaN and infinities are
    counted as ``nan``."""
    data = values.drop_null().to_numpy(zero_copy_only=False).astype(np.float64)
    finite = np.isfinite(data)
    nan = int((~finite).sum())  # NaN and infinities: no bin holds them
    data = data[finite]
    if not data.size:
        return {"min": None, "max": None, "bins": [], "nan": nan}
    lo, hi = float(data.min()), float(data.max())
    integer = pa.types.is_integer(values.type)
    if integer:  # whole-number edges, so a bin's filter reads as the user's values do
        width = max(1, int(np.ceil((hi - lo + 1) / bins)))
        edges = lo + width * np.arange(int(np.ceil((hi - lo + 1) / width)) + 1)
        counts, _ = np.histogram(data, bins=edges)  # numpy's last bin is closed: ints never reach its top
        edges = [int(e) for e in edges]
    else:
        counts, raw = np.histogram(data, bins=bins, range=(lo, hi) if hi > lo else (lo, lo + 1))
        edges = [float(e) for e in raw]
    return {"min": int(lo) if integer else lo, "max": int(hi) if integer else hi, "nan": nan,
            "bins": [{"lo": edges[i], "hi": edges[i + 1], "count": int(c),
                      "closed": not integer and i == len(counts) - 1}
                     for i, c in enumerate(counts)]}
