"""Building a vector index within a memory budget.

A plain ``create_index`` on Lance 14 holds about 2.5x the column's vectors at its peak (measured
+720 MB for 200k x 384 float32, 293 MB of vectors), so one build over a large column can take the
process down. The build here splits the same work so that its peak follows the budget, not the
table:

1. the IVF centroids are trained on a sample whose size the budget caps (Lance's default is 256
   vectors per partition; fewer per partition only when the budget demands it), then brought nearer
   convergence by a few Lloyd steps over a sample of the same size (``app/store/centroids.py``);
2. the rows are indexed in segments over groups of fragments whose vectors fit the budget, every
   segment assigned with the same centroids (``create_index_uncommitted``), so that
3. the segments merge into one index, partition by partition (``merge_existing_index_segments``),
   which is committed as one version (``commit_existing_index_segments``), replacing the old one.

Measured on 200k x 384: +380 MB at the peak (segments of 20k rows) against +720 MB for one call,
and the same index: one segment, the same partitions, the same search results.

The index type follows the column's size (``index_type_for``): IVF_FLAT while its copy of the raw
vectors stays under a limit (exact distances in the probed lists, so recall is set by the probe count
alone and a filtered search over them is exact), IVF_RQ past it (RaBitQ codes, about 5 bits a
dimension: a sixth of the bytes read per probe and on disk; the refine step reads the few candidates'
raw vectors again, and the tuning picks it with the probe count). Measured at 1M x 384 (4,000 lists,
held-out recall@10): IVF_FLAT's whole index is a second 1.5 GB copy of the vectors and a probe reads
1.5 KB a row; IVF_RQ's is 257 MB, and 64 probes with a refine of 2 gave 0.961 at 3.4 ms a query in
process. An RQ segment rotates the vectors with a random rotation, so the segments of one build share
one (``build_rq_model``), or they could not be merged.

Folding new rows in later (``optimize_indices``) merges by size (``deltas_to_merge``).
"""

from __future__ import annotations

from typing import Any

import lance

from app.store.centroids import refine

MIN_SAMPLE_RATE = 16  # vectors per partition below which k-means centroids are no longer worth having
MAX_SAMPLE_RATE = 256  # Lance's own default
BUILD_OVERHEAD = 3  # bytes of build memory per byte of vectors in a segment (measured 2.5x for one build)
# Folds merge by size: every fold merges the new rows with the deltas earlier folds left into one small
# delta beside the trained base, and once the small one holds this share of the base's rows everything
# merges into one. Each delta is searched on its own (measured at 200k x 384: +0.6-0.7 CPU-ms a query
# per delta, 2.0 ms with one, 3.3 with four), so a delta per fold made every search slower until a merge.
MERGE_SHARE = 0.125
FLAT = "IVF_FLAT"
QUANTIZED = "IVF_RQ"


def vector_bytes(field_type: Any) -> int:
    """Bytes of one vector of a ``fixed_size_list<float*>`` column."""
    return int(field_type.list_size) * int(field_type.value_type.bit_width // 8)


def sample_rate(partitions: int, one_vector: int, budget: int) -> int:
    """Vectors per partition the training sample may hold: a quarter of the budget at most."""
    fits = budget // 4 // max(1, partitions * one_vector)
    return int(max(MIN_SAMPLE_RATE, min(MAX_SAMPLE_RATE, fits)))


def fragment_groups(ds: lance.LanceDataset, one_vector: int, budget: int) -> list[list[int]]:
    """Fragment ids in groups whose vectors, built at once, fit half the budget (one fragment at least)."""
    limit = max(1, budget // 2 // (BUILD_OVERHEAD * one_vector))  # rows per group
    groups: list[list[int]] = []
    current: list[int] = []
    rows = 0
    for fragment in ds.get_fragments():
        count = fragment.count_rows()
        if current and rows + count > limit:
            groups.append(current)
            current, rows = [], 0
        current.append(fragment.fragment_id)
        rows += count
    if current:
        groups.append(current)
    return groups


def index_type_for(rows: int, one_vector: int, flat_limit: int) -> str:
    """The index type the keeper builds for a column of ``rows`` vectors of ``one_vector`` bytes."""
    return FLAT if rows * one_vector <= flat_limit else QUANTIZED


def build_ivf(ds: lance.LanceDataset, column: str, *, name: str, metric: str, partitions: int, budget: int,
              index_type: str = FLAT) -> lance.LanceDataset:
    """Build (or replace) ``name``, an IVF_FLAT or IVF_RQ index on ``column``, within ``budget`` bytes; one
    new version.

    Returns the handle at the version the index was committed in. Rows appended while the build ran
    are not in the index; Lance searches them exactly until the next fold.
    """
    from lance.indices import IndicesBuilder

    field_type = ds.schema.field(column).type
    one_vector = vector_bytes(field_type)
    # Lance trains on at most every row: a small table samples all of them
    rate = max(1, min(sample_rate(partitions, one_vector, budget), ds.count_rows() // partitions))
    ivf = IndicesBuilder(ds, column).train_ivf(partitions, distance_type=metric.lower(), sample_rate=rate)
    centroids = refine(ds, column, ivf.centroids, metric, rate * partitions)  # Lance's k-means stops early
    shared: dict[str, Any] = {}
    if index_type == QUANTIZED:
        shared["rabitq_model"] = _rq_model(field_type)
    segments = [
        ds.create_index_uncommitted(column, index_type, name=name, metric=metric, num_partitions=partitions,
                                    ivf_centroids=centroids, fragment_ids=group, replace=True, **shared)
        for group in fragment_groups(ds, one_vector, budget)
    ]
    if len(segments) > 1:
        segments = [ds.merge_existing_index_segments(segments)]
    return ds.commit_existing_index_segments(name, column, segments)


def deltas_to_merge(deltas: list[int], unindexed: int, merge: bool = False) -> int:
    """How many of the newest deltas (rows each, oldest first) a fold merges with the unindexed rows:
    all of them when asked or when the rows past the first delta reach ``MERGE_SHARE`` of it, else
    all but the first, so an index has at most two deltas."""
    if merge or sum(deltas[1:]) + unindexed >= MERGE_SHARE * max(1, deltas[0]):
        return len(deltas) + 1  # Lance merges what there is
    return len(deltas) - 1


def _rq_model(field_type: Any) -> str:
    """One RaBitQ rotation for every segment of a build (Lance's default bits a dimension)."""
    from lance.lance import indices

    dtype = {16: "float16", 32: "float32", 64: "float64"}[int(field_type.value_type.bit_width)]
    return str(indices.build_rq_model(int(field_type.list_size), dtype=dtype))
