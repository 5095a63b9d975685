"""Recall tuning of a vector index: the smallest probe count whose measured recall reaches a target.

The measurement runs on the version the index covers whole: a sampled vector is a query, its exact
neighbours come from a streamed brute-force pass, and each probe count's recall is Lance's answer
against them. Its memory follows a budget, not the table: the exact pass reads the column in
batches sized by it, and the queries go to Lance in chunks sized by it. A batch of queries over a
version with unindexed rows costs a copy of those rows' vectors per query (measured: 200 queries
over 140k unindexed 384-d rows took a server from 1 GB to 24 GB), so ``measure`` also refuses
versions whose unindexed rows would not fit.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from app.store.index_build import FLAT, vector_bytes

PROBE_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# The sampled vectors are the table's own rows (their own hit left out). On the benchmark's mixture they
# are a little harder than new queries at few probes and about as hard past them (200k x 384, sample
# mean against 200 held-out queries: 1,024 lists, 16 probes 0.958 / 0.957; 2,048 lists, 3 probes
# 0.970 / 0.979); on MiniLM sentences (2,800 rows, 43 lists) they are easier (16 probes: 0.963 / 0.953,
# 0.9675 / 0.966). The tuning keeps the fewest probes whose sample mean, less one standard error, reaches
# the target plus this margin: MiniLM then lands at 0.98 (24 probes; half a point of margin let it fall
# to 0.949), and the mixture's 2,048 lists at 4 probes (0.980), where two standard errors and two points
# chose 12 (0.988: three times the rows read for recall nobody asked).
HELD_OUT_MARGIN = 0.015
# Index types whose probed lists hold the raw vectors: their recall is set by the probe count alone.
EXACT_TYPES = (FLAT, "IVF_HNSW_FLAT")
# Refine factors tried with a quantized index (RaBitQ at 5 bits needs 2 on the benchmark's mixture at
# 1M; IVF_PQ with 48 sub-vectors needed 20 for 0.95 there).
REFINE_STEPS = (2, 5, 10, 20, 50)
LANCE_METRICS = {"l2": "L2", "cosine": "cosine", "dot": "dot"}
QUERY_OVERHEAD = 1024**2  # bytes a query of a batch holds besides the unindexed rows' vectors


@dataclass(frozen=True)
class Tuning:
    """The probe count chosen for one index state, and the recall measured with it."""

    index: str
    uuids: frozenset[str]
    nprobes: int
    refine_factor: int | None
    recall: float
    target: float
    sample: int
    rows: int
    num_partitions: int
    seconds: float
    index_type: str = ""  # empty in tunings recorded before the type followed the size

    def fits(self, found: dict[str, Any], partitions: int) -> bool:
        """Whether this tuning was measured on the index ``found`` is now: the same name, type and
        partitions (folds keep them; a rebuild trains new ones, and its old probe count means nothing)."""
        return (self.index == found["name"] and self.num_partitions == partitions
                and self.index_type in ("", found["type"]))

    def report(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("uuids")
        out.pop("index")
        out.pop("index_type")
        out["recall"] = round(self.recall, 4)
        out["seconds"] = round(self.seconds, 3)
        return out

    def dumps(self) -> str:
        return json.dumps({**asdict(self), "uuids": sorted(self.uuids)})

    @staticmethod
    def loads(text: str) -> Tuning:
        raw = json.loads(text)
        return Tuning(**{**raw, "uuids": frozenset(raw["uuids"])})


@dataclass(frozen=True)
class Measure:
    """What a measurement asks for: the recall target, the sample size, k and the memory budget."""

    target: float
    sample: int
    k: int
    budget: int


def measure(ds: Any, column: str, found: dict[str, Any], metric: str, parts: int, spec: Measure) -> Tuning | None:
    """Recall@k of increasing probe counts on a sample of the column's own vectors; None when this
    version cannot be measured within the budget (its unindexed rows are folded first)."""
    started = time.perf_counter()
    rows = ds.count_rows()
    if rows <= spec.k + 1:
        return None
    one_vector = vector_bytes(ds.schema.field(column).type)
    unindexed = int(ds.stats.index_stats(found["name"]).get("num_unindexed_rows", 0))
    per_query = unindexed * one_vector + QUERY_OVERHEAD  # Lance copies the unindexed vectors for each query
    if unindexed * one_vector > spec.budget // 2:
        return None
    rng = np.random.default_rng(rows)
    picks = np.sort(rng.choice(rows, size=min(spec.sample, rows), replace=False))
    table = ds.take(picks.tolist(), columns=[column, "_rowid"])
    cells = table.column(column)
    keep = np.asarray(cells.is_valid())
    queries = _matrix(cells.filter(pa.array(keep)), cells.type.list_size)
    query_ids = table.column("_rowid").to_numpy()[keep]
    if not len(queries):
        return None
    truth = exact_neighbours(ds, column, queries, query_ids, spec.k, metric, spec.budget)
    # a quantized index's refine step is tuned with the probes: the largest refine bounds what the probed
    # lists can give, then the smallest refine keeping the target at that probe count is kept
    refines: tuple[int | None, ...] = (None,) if found["type"] in EXACT_TYPES else REFINE_STEPS
    chunk = max(1, spec.budget // 2 // max(1, per_query))

    def reached(recalls: np.ndarray) -> bool:
        # the sample's mean less a standard error must reach the target plus the held-out margin: a
        # small sample's luck must not pick too few probes
        return bool(recalls.mean() - recalls.std() / math.sqrt(len(recalls)) >= spec.target + HELD_OUT_MARGIN)

    best: tuple[int, int | None, float] | None = None
    for nprobes in [p for p in PROBE_STEPS if p < parts] + [parts]:
        recalls = _recall(ds, column, queries, query_ids, truth, spec.k, metric, nprobes, refines[-1], chunk)
        best = (nprobes, refines[-1], float(recalls.mean()))
        if reached(recalls):
            for refine in refines[:-1]:
                fewer = _recall(ds, column, queries, query_ids, truth, spec.k, metric, nprobes, refine, chunk)
                if reached(fewer):
                    best = (nprobes, refine, float(fewer.mean()))
                    break
            break
    assert best is not None
    return Tuning(index=found["name"], uuids=found["uuids"], nprobes=best[0], refine_factor=best[1],
                  recall=best[2], target=spec.target, sample=len(queries), rows=rows,
                  num_partitions=parts, seconds=time.perf_counter() - started, index_type=found["type"])


def exact_neighbours(ds: Any, column: str, queries: np.ndarray, query_ids: np.ndarray, k: int,
                     metric: str, budget: int = 256 * 1024**2) -> list[set[int]]:
    """Exact top-k row ids of each query (its own row excluded), streamed in batches the budget sizes."""
    q = _normalise(queries) if metric == "cosine" else queries
    one_vector = vector_bytes(ds.schema.field(column).type)
    # a batch holds its vectors, a float32 copy of them and a distance per query for each row
    batch_size = int(max(1024, min(65_536, budget // 4 // (2 * one_vector + 8 * len(q)))))
    best_d = np.full((len(q), k + 1), np.inf, np.float32)
    best_i = np.full((len(q), k + 1), -1, np.int64)
    for batch in ds.to_batches(columns=[column], with_row_id=True, batch_size=batch_size):
        cells = batch.column(0)
        valid = np.asarray(cells.is_valid())
        if not valid.any():
            continue
        x = _matrix(cells.filter(pa.array(valid)), cells.type.list_size)
        ids = batch.column(batch.schema.get_field_index("_rowid")).to_numpy()[valid].astype(np.int64)
        d = _distances(q, x, metric)
        d_all = np.concatenate([best_d, d], axis=1)
        i_all = np.concatenate([best_i, np.broadcast_to(ids, d.shape)], axis=1)
        top = np.argpartition(d_all, k, axis=1)[:, : k + 1]
        best_d = np.take_along_axis(d_all, top, 1)
        best_i = np.take_along_axis(i_all, top, 1)
    out = []
    for n in range(len(q)):
        order = np.argsort(best_d[n])
        ids = [int(i) for i in best_i[n][order] if i >= 0 and i != int(query_ids[n])]
        out.append(set(ids[:k]))
    return out


def _recall(ds: Any, column: str, queries: np.ndarray, query_ids: np.ndarray, truth: list[set[int]], k: int,
            metric: str, nprobes: int, refine: int | None, chunk: int) -> np.ndarray:
    """Per-query recall@k at one probe count; queries go to Lance in batches of ``chunk`` (a batch is
    15x faster than one at a time)."""
    out = []
    for start in range(0, len(queries), chunk):
        spec: dict[str, Any] = {"column": column, "q": queries[start:start + chunk], "k": k + 1,
                                "nprobes": nprobes, "metric": LANCE_METRICS.get(metric, "L2")}
        if refine:
            spec["refine_factor"] = refine
        got = ds.to_table(columns=["_distance"], nearest=spec, with_row_id=True)
        which = got.column("query_index").to_numpy() if "query_index" in got.column_names \
            else np.zeros(got.num_rows, int)
        found = got.column("_rowid").to_numpy()
        for n in range(min(chunk, len(queries) - start)):
            own, want = query_ids[start + n], truth[start + n]
            ids = [int(i) for i in found[which == n] if int(i) != int(own)][:k]
            out.append(len(want.intersection(ids)) / max(1, len(want)))
    return np.asarray(out)


def _distances(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return 1.0 - q @ _normalise(x).T
    if metric == "dot":
        return 1.0 - q @ x.T
    return (q * q).sum(1)[:, None] - 2.0 * (q @ x.T) + (x * x).sum(1)[None, :]


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def _matrix(vectors: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    if isinstance(vectors, pa.ChunkedArray):
        vectors = vectors.combine_chunks()
    flat = vectors.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat.reshape(-1, dim), dtype=np.float32)
