"""``curate``: label issues, duplicates and uniqueness of every row, written as ordinary columns in one version.

The columns (``method.py`` says how each is computed):

- ``label_issue`` (float32, 0-1; null without a label column or for a row without a label),
- ``suggested_label`` (the label column's type),
- ``duplicate_of`` (string: the original's id, or null),
- ``uniqueness`` (float32, 0-1).

They are written through the store's column path (a ``Merge`` of new columns the first time, a keyed
update of every row after that, as ``annotate`` does), as one version logged as ``curate`` with its
message and author, so they can be filtered, sorted, diffed and time-travelled like any column.

The scores are computed from one version without holding the table's write turn (about 4 minutes at
1M rows here, see ``bench.curate``: other writes go on meanwhile), then committed under the turn only if no
version since changed rows (index folds, tunings, compactions and saved views do not); else a 409
saying to run it again, as ``embed`` does, never columns describing another version's rows.

**Near-duplicate threshold.** A pair is a near copy when its distance (the API's: 1 - cosine for a
cosine column, squared L2 for an L2 one) is at most the threshold: ``threshold`` when the request
gives one; else the constant measured for the column's model (``NEAR_THRESHOLDS``, from
``python -m bench.curate --calibrate``: for ``builtin`` 0.01, above 99% of the distances between a
digit and its brightness-shifted, re-encoded copy and below all but ~0.2% of the distances between a
digit and its nearest distinct digit); else, for a model never measured (a CLIP or
sentence-transformers column), ``NEAR_FRACTION`` of the median nearest-neighbour distance of the
table's rows: copies sit far closer to each other than distinct images to their nearest neighbours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.errors import BadRequest, Conflict
from app.services.curate.method import Neighbours, duplicate_groups, label_scores, originals, uniqueness
from app.services.curate.neighbours import FLAT_LIMIT, check_searchable, has_index, nearest_rows
from app.services.search import vector_column
from app.store import Snapshot, Store
from app.store.commits import write_turn
from app.store.schema import STANDARD_NAMES, is_blob, is_vector, vector_meta
from app.store.upserts import keyed_write
from app.store.vectors import IndexKeeper
from app.store.writes import merge_columns

__all__ = ["MAX_K", "NEAR_FRACTION", "NEAR_THRESHOLDS", "RESULT_COLUMNS", "CurateSpec", "InvalidCurate", "curate",
           "label_candidates"]

MAX_K = 100
# (model, metric) -> the largest API distance between an image and its near copy (bench.curate --calibrate)
NEAR_THRESHOLDS: dict[tuple[str, str], float] = {("builtin", "cosine"): 0.01}
NEAR_FRACTION = 0.2  # of the median nearest-neighbour distance, for a model with no measured threshold
RESULT_COLUMNS = ("label_issue", "suggested_label", "duplicate_of", "uniqueness")
SKIP_LABELS = {*STANDARD_NAMES, *RESULT_COLUMNS}
KEEPS_ROWS = {"index", "tune_index", "config", "compact"}  # operations after which the scores still hold


class InvalidCurate(BadRequest):
    code = "invalid_curate"


@dataclass
class CurateSpec:
    label: str | None = None
    column: str | None = None
    k: int = 10
    threshold: float | None = None
    message: str | None = None
    author: str | None = None


def curate(store: Store, keeper: IndexKeeper, name: str, spec: CurateSpec) -> dict[str, Any]:
    """Compute and write the curate columns of every row of main's latest version; what was found."""
    started = time.perf_counter()
    if not isinstance(spec.k, int) or not 1 <= spec.k <= MAX_K:
        raise InvalidCurate(f"k must be between 1 and {MAX_K}, got {spec.k!r}", k=spec.k, max=MAX_K)
    if spec.threshold is not None and not (np.isfinite(spec.threshold) and spec.threshold >= 0):
        raise InvalidCurate("threshold must be a finite distance >= 0", threshold=spec.threshold)
    snap = store.head(name, fresh=True)
    field = _check(snap.schema, spec)
    if snap.count() > FLAT_LIMIT and not has_index(snap, field.name):
        keeper.fold(name)  # the index the keeper would build in the background, built now
    snap = store.head(name, fresh=True)
    field = _check(snap.schema, spec)
    check_searchable(snap, field.name)
    private = store.private_snapshot(snap, index_cache_bytes=_cache_for(snap, field, keeper.budget))
    table, found = _compute(private, keeper, field, spec)
    with write_turn(store, name):
        _check_unmoved(store, name, snap.version)
        version, counts = _write(store, name, snap.schema, table, spec)
    return {"version": version or snap.version, "operation": "curate", "rows": table.num_rows,
            "rows_updated": counts.get("updated", 0), "column": field.name, "label": spec.label, "k": spec.k,
            "columns": [c for c in RESULT_COLUMNS if c in table.column_names], **found,
            "seconds": round(time.perf_counter() - started, 3)}


def _cache_for(snap: Snapshot, field: pa.Field, budget: int) -> int:
    """Index cache for a whole-table pass: the column's vectors (an IVF_FLAT index holds a copy) and a
    quarter more, within the index keeper's memory budget."""
    one = field.type.list_size * (field.type.value_type.bit_width // 8) + 16
    return int(max(64 * 1024**2, min(budget, 1.25 * snap.count() * one)))


def _check_unmoved(store: Store, name: str, read: int) -> None:
    """Under the write turn: a 409 when a version since ``read`` changed rows (the scores are stale)."""
    store.invalidate(name)
    head = store.head(name, fresh=True).version
    moved = [v for v in range(read + 1, head + 1)
             if store.version_entry(name, v).get("operation") not in KEEPS_ROWS]
    if moved:
        raise Conflict(f"table {name!r} changed while curate ran (version {moved[0]}); run it again",
                       table=name, version=moved[0])


def _check(schema: pa.Schema, spec: CurateSpec) -> pa.Field:
    """The vector column to use (4xx when there is none, or the one named is not one) and a usable label."""
    field = vector_column(schema, spec.column)
    if spec.label is not None:
        candidates = label_candidates(schema)
        if spec.label not in candidates:
            what = ("does not exist" if spec.label not in schema.names
                    else "is a vector column" if is_vector(schema.field(spec.label))
                    else "holds images" if is_blob(schema.field(spec.label)) else "cannot hold a class label")
            raise InvalidCurate(f"label column {spec.label!r} {what}; columns that can: {candidates}",
                                label=spec.label, candidates=candidates)
    for column in RESULT_COLUMNS:
        if column in schema.names and column != "suggested_label" and not _ours(schema.field(column)):
            raise Conflict(f"column {column!r} exists with another type; rename it before curating", column=column)
    return field


def label_candidates(schema: pa.Schema) -> list[str]:
    """Columns that can hold a class label: strings, integers, booleans (not ids, hashes or results)."""
    def fits(t: pa.DataType) -> bool:
        if pa.types.is_dictionary(t):
            t = t.value_type
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_boolean(t)

    return [f.name for f in schema if f.name not in SKIP_LABELS and fits(f.type) and not is_blob(f)]


def _ours(field: pa.Field) -> bool:
    kinds = {"label_issue": pa.float32(), "uniqueness": pa.float32(), "duplicate_of": pa.string()}
    return field.type == kinds[field.name]


def _compute(snap: Snapshot, keeper: IndexKeeper, field: pa.Field,
             spec: CurateSpec) -> tuple[pa.Table, dict[str, Any]]:
    wanted = [c for c in ("id", "sha256", "ingested_at", spec.label) if c and c in snap.schema.names]
    base = snap.read(list(dict.fromkeys(wanted)), with_row_id=True)
    rows = base.num_rows
    near = nearest_rows(snap, keeper, field, base.column("_rowid").to_numpy(), 2 * spec.k + 1)
    has_vector = near.positions[:, 0] >= 0 if rows else np.zeros(0, bool)
    threshold, source = _threshold(field, near, spec.threshold)
    hashes = _codes(base.column("sha256"))[0] if "sha256" in base.column_names else None
    groups = duplicate_groups(hashes, near, threshold)
    first = originals(groups, _ingest_order(base))
    ids = base.column("id")
    is_copy = first != np.arange(rows)
    duplicate_of = pc.if_else(pa.array(is_copy), ids.take(pa.array(first)), pa.scalar(None, pa.string()))
    exact = int(np.sum(is_copy & (hashes >= 0) & (hashes[first] == hashes))) if hashes is not None else 0
    unique = uniqueness(near)
    columns: dict[str, Any] = {"id": ids}
    found: dict[str, Any] = {"near_threshold": threshold, "threshold_source": source,
                             "neighbours": "index" if has_index(snap, field.name) else "exact",
                             "exact_duplicates": exact, "near_duplicates": int(is_copy.sum()) - exact}
    if spec.label is not None:
        codes, classes = _codes(base.column(spec.label))
        issue, suggested = label_scores(codes, len(classes), near, groups, spec.k)
        label_type = snap.schema.field(spec.label).type
        columns["label_issue"] = _floats(issue, has_vector)
        classes = classes.cast(label_type.value_type if pa.types.is_dictionary(label_type) else label_type)
        columns["suggested_label"] = pc.if_else(pa.array(has_vector), classes.take(pa.array(suggested))
                                                if len(classes) else pa.nulls(rows, classes.type),
                                                pa.scalar(None, classes.type))
        found["label_issues_over_half"] = int(np.sum(np.nan_to_num(issue) > 0.5))
    columns["duplicate_of"] = duplicate_of
    columns["uniqueness"] = _floats(unique, has_vector)
    return pa.table(columns), found


def _threshold(field: pa.Field, near: Neighbours, given: float | None) -> tuple[float, str]:
    if given is not None:
        return float(given), "given"
    meta = vector_meta(field)
    model, metric = meta.get("model", ""), meta.get("metric", "l2")
    measured = NEAR_THRESHOLDS.get((model, metric))
    if measured is not None:
        return measured, f"measured for model {model!r} on re-encoded copies"
    first = near.distances[:, 0][np.isfinite(near.distances[:, 0]) & (near.distances[:, 0] > 0)]
    median = float(np.median(first)) if len(first) else 0.0
    return NEAR_FRACTION * median, f"{NEAR_FRACTION} x the median nearest-neighbour distance ({median:.4g})"


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Integer codes per row (-1 for null) and the distinct values they index."""
    encoded = column.combine_chunks()
    if pa.types.is_dictionary(encoded.type):
        encoded = encoded.dictionary_decode()
    encoded = encoded.dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    codes = np.where(np.asarray(encoded.indices.is_valid()), np.nan_to_num(codes, nan=-1), -1).astype(np.int64)
    return codes, encoded.dictionary


def _ingest_order(base: pa.Table) -> np.ndarray:
    """Positions by ingestion time (missing last), then id: the first of a group is its original."""
    keys = [("ingested_at", "ascending"), ("id", "ascending")] if "ingested_at" in base.column_names else \
        [("id", "ascending")]
    return pc.sort_indices(base, sort_keys=keys).to_numpy()  # nulls last


def _floats(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    keep = valid & np.isfinite(values)
    return pa.array(np.where(keep, values, 0).astype(np.float32), pa.float32(), mask=~keep)


def _write(store: Store, name: str, schema: pa.Schema, table: pa.Table,
           spec: CurateSpec) -> tuple[int | None, dict[str, int]]:
    """One version: new columns by a Merge (the first curate), an update of every row after that."""
    extra = {"lightbox:op": "curate"}
    message = spec.message or ("curate" + (f" labels in {spec.label!r}" if spec.label else "") + " with "
                               f"k={spec.k}")
    present = [c for c in table.column_names if c != "id" and c in schema.names]
    if "suggested_label" in present and schema.field("suggested_label").type != table.schema.field(
            "suggested_label").type:
        raise Conflict("column 'suggested_label' holds another type than the label column; rename it first",
                       column="suggested_label")
    if not present:
        return merge_columns(store, name, table, message=message, author=spec.author, extra=extra)
    return keyed_write(store, name, table, mode="update", message=message, author=spec.author, extra=extra)
