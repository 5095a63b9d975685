"""Vector search on Lance's own indexes: built, folded forward and tuned to a recall target.

Search runs on the pinned dataset handle of the version asked for, so it sees exactly that
version's rows with the index that version's manifest records (an old tag searches with the index
it had; a version from before any index is searched exactly). Rows appended after the index was
last folded are searched exactly by Lance and merged with the indexed results. Nothing is built in
the request path: a restart, a new replica or a table larger than RAM answers at once from the
index files, whose partitions Lance loads lazily into its bounded index cache.

The ``IndexKeeper`` owns the one background thread that creates an index once a vector column
reaches ``min_rows``, folds new rows into it with ``optimize_indices`` after writes (a delta per
fold, merged every few folds and at ``optimize``), rebuilds it when the table has doubled since it
was trained, and measures the recall each probe count gives on a held-out sample of the column's
own vectors against exact results, keeping the smallest ``nprobes`` that reaches the target. The
choice is written to the table's config (``lightbox.recall.<column>``), so it is versioned with the
index: a restart, another replica or an old tag reads it without measuring again.

Why IVF_FLAT: the probed partitions are scanned with exact distances, so the recall is set by the
probe count alone (no quantization error to tune with a refine step), a filtered search over the
probed rows is as exact as the flat search over unindexed rows (the two distance sources merge
consistently), training takes seconds (IVF_PQ took 45 s at 100k x 384 here), and folding appends
the new rows' vectors to their partitions. Its cost is disk: a second copy of the vectors.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from app.store.catalog import Store
from app.store.commits import retry_commit
from app.store.schema import is_vector, vector_meta
from app.store.stats import CacheStats

log = logging.getLogger("lightbox.vectors")

INDEX_TYPE = "IVF_FLAT"
VECTOR_TYPES = {"IVF_FLAT", "IVF_SQ", "IVF_PQ", "IVF_RQ", "IVF_HNSW_SQ", "IVF_HNSW_PQ", "IVF_HNSW_FLAT"}
LANCE_METRICS = {"l2": "L2", "cosine": "cosine", "dot": "dot"}
MAX_DELTAS = 8  # folds add a delta each; past this many they are merged into one
CONFIG_PREFIX = "lightbox.recall."  # + column: the table config key holding its index's tuning
# The sampled vectors trained the partitions, so they find their neighbours a little more easily than
# new queries do (measured 0.96 vs 0.944, and 0.948 on a fold whose tuning aimed one point above): the
# tuning aims this far above the target so that held-out queries still reach it.
HELD_OUT_MARGIN = 0.02
# A filter keeping at most this share of the rows is searched exactly: every partition, under its mask.
# Twice the proportional share of partitions was not enough when the filter follows the clusters: at
# 1M rows a cluster-correlated 10% filter got recall 0.86-0.89 from 480 of 1,000 partitions, and
# 1.00 from all of them (64 ms a query).
EXACT_FILTER_SHARE = 0.25
PROBE_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


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

    def report(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("uuids")
        out.pop("index")
        out["recall"] = round(self.recall, 4)
        out["seconds"] = round(self.seconds, 3)
        return out

    def dumps(self) -> str:
        return json.dumps({**asdict(self), "uuids": sorted(self.uuids)})

    @staticmethod
    def loads(text: str) -> Tuning:
        raw = json.loads(text)
        return Tuning(**{**raw, "uuids": frozenset(raw["uuids"])})


def partitions_for(rows: int) -> int:
    """IVF lists: about sqrt(rows) (a few hundred rows a list), so a probe reads little."""
    return int(min(4096, max(16, round(math.sqrt(rows)))))


def vector_indexes(ds: Any) -> dict[str, dict[str, Any]]:
    """The vector index on each column: ``{column: {"name", "type", "uuids"}}`` (deltas merged)."""
    out: dict[str, dict[str, Any]] = {}
    for index in ds.list_indices():
        if index["type"] not in VECTOR_TYPES or len(index["fields"]) != 1:
            continue
        entry = out.setdefault(index["fields"][0], {"name": index["name"], "type": index["type"], "uuids": set()})
        if entry["name"] == index["name"]:
            entry["uuids"].add(index["uuid"])
    return {k: {**v, "uuids": frozenset(v["uuids"])} for k, v in out.items()}


class IndexKeeper:
    """Keeps every large vector column of a store indexed and tuned, on one background thread.

    Writes call ``notify`` (through the store's change listener): the table is queued once however
    many writes arrive while it waits (coalesced), so the queue is bounded by the number of tables
    and a write never waits for an index.
    """

    def __init__(self, store: Store, *, min_rows: int = 10_000, recall_target: float = 0.95,
                 sample: int = 200, k: int = 10, delay: float = 1.0) -> None:
        self.store = store
        self.min_rows = min_rows
        self.recall_target = recall_target
        self.sample = sample
        self.k = k
        self.delay = delay  # a fold waits this long after the write that queued it: searches go first
        self._parsed: OrderedDict[str, Tuning] = OrderedDict()
        self._queue: OrderedDict[str, float] = OrderedDict()  # table -> when its fold is due
        self._busy: str | None = None
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self.stats = CacheStats()  # builds and folds with the seconds they took, for /metrics
        self._fold_lock = threading.Lock()
        self._parts: dict[tuple[str, frozenset[str]], int] = {}  # partitions per index state

    # -- the worker -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="lightbox-index")
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def notify(self, name: str) -> None:
        """Queue a table for a fold (a no-op when it is already queued, or from the worker itself)."""
        if self._thread is not None and threading.current_thread() is self._thread:
            return  # the keeper's own commits need no fold
        with self._cond:
            self._queue.setdefault(name, time.monotonic() + self.delay)
            self._cond.notify_all()

    def notice(self, key: tuple[Any, ...], name: str) -> None:
        """A search saw this snapshot: queue its table once, so writes made by another process and
        tunings lost to a restart are caught up in the background."""
        with self._cond:
            if key in self._seen:
                return
            self._seen[key] = None
            while len(self._seen) > 1024:
                self._seen.popitem(last=False)
        self.notify(name)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    due = min(self._queue.values(), default=None)
                    if due is not None and due <= now:
                        break
                    self._cond.wait(None if due is None else due - now)
                if self._stopped:
                    return
                name = min(self._queue, key=self._queue.__getitem__)
                del self._queue[name]
                self._busy = name
            try:
                self.fold(name)
            except Exception:  # a table that cannot be folded now is retried at its next write
                log.warning("could not fold the vector indexes of table %s", name, exc_info=True)
            finally:
                with self._cond:
                    self._busy = None
                    self._cond.notify_all()

    # -- building and folding ----------------------------------------------------------------
    def fold(self, name: str, *, merge: bool = False) -> list[dict[str, Any]]:
        """Bring every vector column of a table's latest version up to date; what was done per column."""
        with self._fold_lock:
            if not self.store.exists(name):
                return []
            fields = [f for f in self.store.fresh(name).schema if is_vector(f)]
            steps = (retry_commit(lambda f=f: self._fold_column(name, f, merge), table=name, what="index upkeep")
                     for f in fields)  # a fold preempted by a concurrent write plans again on the new latest
            return [step for step in steps if step]

    def _fold_column(self, name: str, field: pa.Field, merge: bool) -> dict[str, Any] | None:
        ds = self.store.fresh(name)
        column = field.name
        found = vector_indexes(ds).get(column)
        rows = ds.count_rows()  # from the manifest: counting non-null vectors would read them all
        metric = LANCE_METRICS.get(vector_meta(field).get("metric", "l2"), "L2")
        action = None
        started = time.perf_counter()
        if rows < self.min_rows:
            return None  # small tables (and indexes made on them by hand) are left as they are
        if found is None:
            ds.create_index(column, INDEX_TYPE, name=f"{column}_idx", metric=metric,
                            num_partitions=partitions_for(rows), replace=True)
            action = "built"
        else:
            stats = ds.stats.index_stats(found["name"])
            deltas = stats.get("num_indexed_rows_per_delta") or [0]
            unindexed = int(stats.get("num_unindexed_rows", 0))
            own = found["name"] == f"{column}_idx" and found["type"] == INDEX_TYPE
            if own and partitions_for(rows) >= math.sqrt(2) * self._partitions(ds, found):
                # the table has doubled since the partitions were trained: train them again
                ds.create_index(column, INDEX_TYPE, name=found["name"], metric=metric,
                                num_partitions=partitions_for(rows), replace=True)
                action = "rebuilt"
            elif unindexed or (merge and len(deltas) > 1):
                many = merge or len(deltas) >= MAX_DELTAS
                ds.optimize.optimize_indices(index_names=[found["name"]],
                                             num_indices_to_merge=len(deltas) + 1 if many else 0)
                action = "merged" if many else "folded"
        if action is not None:
            self.store.invalidate(name)
            self.stats.built(time.perf_counter() - started)
        ds = self.store.fresh(name)
        found = vector_indexes(ds).get(column)
        if found is None:
            return None
        tuning = self._tune_if_needed(ds, name, column, found, field)
        out = {"column": column, "action": action, "seconds": round(time.perf_counter() - started, 3)}
        if tuning is not None:
            out["recall"] = tuning.recall
            out["nprobes"] = tuning.nprobes
        return out if action or tuning else None

    # -- recall tuning -----------------------------------------------------------------------
    def tuning(self, ds: Any, column: str, found: dict[str, Any] | None = None) -> Tuning | None:
        """The tuning a version records for its index on ``column`` (in the table's config, so it is
        versioned with the index: a restart, a replica or an old tag reads it at once). One measured
        before later folds still applies: folds keep the trained partitions."""
        found = found if found is not None else vector_indexes(ds).get(column)
        text = ds.config().get(CONFIG_PREFIX + column) if found is not None else None
        if not text:
            return None
        with self._cond:
            tuning = self._parsed.get(text)
        if tuning is None:
            try:
                tuning = Tuning.loads(text)
            except (ValueError, TypeError, KeyError):
                return None
            with self._cond:
                self._parsed[text] = tuning
                while len(self._parsed) > 256:
                    self._parsed.popitem(last=False)
        return tuning if tuning.index == found["name"] else None

    def _tune_if_needed(self, ds: Any, name: str, column: str, found: dict[str, Any],
                        field: pa.Field) -> Tuning | None:
        """Measure again when there is no tuning, the index was rebuilt, or the table grew by a fifth."""
        last = self.tuning(ds, column, found)
        rows = ds.count_rows()
        if (last is not None and last.num_partitions == self._partitions(ds, found) and rows < 1.2 * last.rows
                and last.target == self.recall_target):
            return None
        tuning = self.measure(ds, column, found, vector_meta(field).get("metric", "l2"))
        if tuning is not None:
            ds.update_config({CONFIG_PREFIX + column: tuning.dumps()})  # one small commit, versioned
            self.store.invalidate(name)
            log.info("table %s column %s: nprobes %d for recall %.3f (target %.2f)", name, column,
                     tuning.nprobes, tuning.recall, self.recall_target)
        return tuning

    def measure(self, ds: Any, column: str, found: dict[str, Any], metric: str) -> Tuning | None:
        """Recall@k of increasing probe counts on a held-out sample of the column's own vectors.

        Each sampled vector is a query; its exact neighbours (itself excluded) come from a streamed
        brute-force pass over the column, so memory stays at one batch whatever the table size.
        """
        started = time.perf_counter()
        rows = ds.count_rows()
        if rows <= self.k + 1:
            return None
        rng = np.random.default_rng(rows)
        picks = np.sort(rng.choice(rows, size=min(self.sample, rows), replace=False))
        table = ds.take(picks.tolist(), columns=[column, "_rowid"])
        cells = table.column(column)
        keep = np.asarray(cells.is_valid())
        queries = _matrix(cells.filter(pa.array(keep)), cells.type.list_size)
        query_ids = table.column("_rowid").to_numpy()[keep]
        if not len(queries):
            return None
        truth = exact_neighbours(ds, column, queries, query_ids, self.k, metric)
        parts = _num_partitions(ds, found["name"])
        refine = None if found["type"] in ("IVF_FLAT", "IVF_HNSW_FLAT") else 5
        best: tuple[int, float] | None = None
        for nprobes in [p for p in PROBE_STEPS if p < parts] + [parts]:
            per_query = _recall(ds, column, queries, query_ids, truth, self.k, metric, nprobes, refine)
            recall = float(per_query.mean())
            best = (nprobes, recall)
            # the sample's mean less two standard errors must reach the target plus the held-out
            # margin: a small sample's luck must not pick too few probes
            if recall - 2 * per_query.std() / math.sqrt(len(per_query)) >= self.recall_target + HELD_OUT_MARGIN:
                break
        assert best is not None
        return Tuning(index=found["name"], uuids=found["uuids"], nprobes=best[0], refine_factor=refine,
                      recall=best[1], target=self.recall_target, sample=len(queries), rows=rows,
                      num_partitions=parts, seconds=time.perf_counter() - started)

    # -- search --------------------------------------------------------------------------------
    def nearest(self, ds: Any, column: str, query: np.ndarray, k: int, *, metric: str,
                predicate: str | None = None, matching: int | None = None, nprobes: int | None = None,
                refine_factor: int | None = None, columns: list[str] | None = None) -> pa.Table:
        """The k nearest rows of one pinned version: ``columns`` plus ``_rowid`` and ``_distance``.

        ``predicate`` is applied before the search (prefilter), so a filter never starves the top k.
        A filter keeping few rows (``matching``: fewer than get an index, or at most
        ``EXACT_FILTER_SHARE`` of the table) is searched exactly over them (every partition: IVF_FLAT's
        scan under the filter's mask beat Lance's flat scan 3x here), since the rows it keeps may lie in
        partitions far from the query (a label that correlates with the vectors); a broader one probes
        proportionally more partitions, twice over.
        """
        found = vector_indexes(ds).get(column)
        spec: dict[str, Any] = {"column": column, "q": np.asarray(query, np.float32), "k": k,
                                "metric": LANCE_METRICS.get(metric, "L2")}
        if found is not None:
            tuning = self.tuning(ds, column, found)
            parts = self._partitions(ds, found)
            base = nprobes or (tuning.nprobes if tuning else max(8, parts // 8))  # untuned (a restart): generous
            if matching is not None and nprobes is None:
                total = max(1, ds.count_rows())
                if matching < self.min_rows or matching <= EXACT_FILTER_SHARE * total:
                    base = parts  # all of the rows it keeps, exactly
                else:  # twice the proportional share (the proportional share gave 0.93 on a broad
                    # cluster-correlated filter)
                    base = math.ceil(2 * base * total / max(1, matching))
            exhaustive = base >= parts and nprobes is None
            if exhaustive and found["type"] not in ("IVF_FLAT", "IVF_HNSW_FLAT"):
                spec["use_index"] = False  # quantized distances are not exact: read the vectors
            else:
                spec["nprobes"] = int(min(base, parts))
                refine = refine_factor or (tuning.refine_factor if tuning else None)
                if refine:
                    spec["refine_factor"] = int(refine)
        return ds.to_table(columns=[*(columns or []), "_distance"], nearest=spec, filter=predicate,
                           prefilter=predicate is not None, with_row_id=True)

    def _partitions(self, ds: Any, found: dict[str, Any]) -> int:
        key = (ds.uri, found["uuids"])
        parts = self._parts.get(key)
        if parts is None:
            parts = self._parts[key] = _num_partitions(ds, found["name"])
            while len(self._parts) > 1024:
                self._parts.pop(next(iter(self._parts)))
        return parts

    def describe(self, ds: Any) -> dict[str, dict[str, Any]]:
        """Per vector index name: its tuning (recall estimate, probes) and the target."""
        out = {}
        for column, found in vector_indexes(ds).items():
            tuning = self.tuning(ds, column, found)
            entry: dict[str, Any] = {"recall_target": self.recall_target, "tuned": tuning is not None,
                                     "segments": len(found["uuids"])}
            if tuning is not None:
                entry.update(tuning.report())
                entry["tuned_for_these_files"] = tuning.uuids == found["uuids"]
            out[found["name"]] = entry
        return out


def exact_neighbours(ds: Any, column: str, queries: np.ndarray, query_ids: np.ndarray, k: int,
                     metric: str) -> list[set[int]]:
    """Exact top-k row ids of each query (its own row excluded), streamed batch by batch."""
    q = _normalise(queries) if metric == "cosine" else queries
    best_d = np.full((len(q), k + 1), np.inf, np.float32)
    best_i = np.full((len(q), k + 1), -1, np.int64)
    for batch in ds.to_batches(columns=[column], with_row_id=True, batch_size=32_768):
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
            metric: str, nprobes: int, refine: int | None) -> np.ndarray:
    """Per-query recall@k at one probe count; the sample goes to Lance as one batch (15x faster)."""
    spec: dict[str, Any] = {"column": column, "q": queries, "k": k + 1, "nprobes": nprobes,
                            "metric": LANCE_METRICS.get(metric, "L2")}
    if refine:
        spec["refine_factor"] = refine
    got = ds.to_table(columns=["_distance"], nearest=spec, with_row_id=True)
    which = got.column("query_index").to_numpy() if "query_index" in got.column_names else np.zeros(got.num_rows, int)
    found = got.column("_rowid").to_numpy()
    out = []
    for n, (own, want) in enumerate(zip(query_ids, truth, strict=True)):
        ids = [int(i) for i in found[which == n] if int(i) != int(own)][:k]
        out.append(len(want.intersection(ids)) / max(1, len(want)))
    return np.asarray(out)


def _num_partitions(ds: Any, index: str) -> int:
    stats = ds.stats.index_stats(index)
    parts = [int(i.get("num_partitions", 0)) for i in stats.get("indices") or []]
    return max(parts) if parts else 1


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
