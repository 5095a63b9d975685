"""Vector search on Lance's own indexes: built, folded forward and tuned to a recall target.

Search runs on the pinned dataset handle of the version asked for, so it sees exactly that
version's rows with the index that version's manifest records (an old tag searches with the index
it had; a version from before any index is searched exactly). Rows appended after the index was
last folded are searched exactly by Lance and merged with the indexed results. Nothing is built in
the request path: a restart, a new replica or a table larger than RAM answers at once from the
index files, whose partitions Lance loads lazily into its bounded index cache.

The ``IndexKeeper`` owns the one background thread that creates an index once a vector column
reaches ``min_rows``, folds new rows into it with ``optimize_indices`` after writes (merged by size:
at most one small delta beside the trained one, see ``index_build.MERGE_SHARE``), rebuilds it when the table has
doubled since it was trained, and measures the recall each probe count gives on a held-out sample of the column's
own vectors against exact results, keeping the smallest ``nprobes`` that reaches the target
(``app/store/tuning.py``). The choice is written to the table's config (``lightbox.recall.<column>``),
so it is versioned with the index: a restart, another replica or an old tag reads it without
measuring again. The same fold brings a table's full-text indexes up to date (``app/store/keywords.py``).

Its work is bounded three ways, because a burst of writes (a bulk load of ten 20k-row batches) once
took a server to 24 GB within a minute:
- a burst is one build: a table's fold waits until its writes have been quiet for ``delay`` seconds
  (at most ``max_wait`` after the first), so ten quick appends make one build, not a build and
  nine folds and retrains;
- one build at a time per process (``Store.build_turn``, shared with builds a client asks for), so
  two builds of one column never run at once;
- ``budget`` bytes: builds go by segments that fit it (``app/store/index_build.py``), and the recall
  measurement runs on the version the keeper's own commit produced, where the index covers every
  row, with its queries chunked to fit (a batch of queries over unindexed rows copies them once per
  query: that was the 24 GB).

Which index: IVF_FLAT while the column's vectors take at most ``flat_limit`` bytes (1 GiB), IVF_RQ
past it (``index_build.index_type_for``). IVF_FLAT's probed partitions are scanned with exact
distances, so the recall is set by the probe count alone, a filtered search over the probed rows is
as exact as the flat search over unindexed rows, and folding appends the new rows' vectors to their
partitions; its cost is a second copy of the vectors, on disk and read by every probe. Past the
limit that copy is what a query pays for, so the keeper builds RaBitQ codes (about a sixth of the
bytes) and tunes the refine factor with the probe count (``tuning.REFINE_STEPS``). A column that
grows past the limit is rebuilt as IVF_RQ at its next fold. (IVF_PQ took 45 s to train at 100k x 384
here and needed a refine of 20 on the benchmark's mixture; IVF_RQ trains as fast as IVF_FLAT.)
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa

from app.store.catalog import Store
from app.store.coalesce import Coalescer
from app.store.commits import retry_commit
from app.store.config import CONFIG_PREFIX, update_config
from app.store.index_build import FLAT, QUANTIZED, build_ivf, deltas_to_merge, index_type_for, vector_bytes
from app.store.keywords import fold_text_indexes
from app.store.resident import ResidentIndexes
from app.store.schema import is_vector, vector_meta
from app.store.snapshot import Snapshot
from app.store.stats import CacheStats
from app.store.tuning import EXACT_TYPES, LANCE_METRICS, PROBE_STEPS, Measure, Tuning, measure

__all__ = ["LANCE_METRICS", "PROBE_STEPS", "VECTOR_TYPES", "IndexKeeper", "Tuning",
           "deltas_to_merge", "partitions_for", "vector_indexes"]

log = logging.getLogger("lightbox.vectors")

OWN_TYPES = (FLAT, QUANTIZED)  # the types the keeper builds (and rebuilds as the table grows)
VECTOR_TYPES = {"IVF_FLAT", "IVF_SQ", "IVF_PQ", "IVF_RQ", "IVF_HNSW_SQ", "IVF_HNSW_PQ", "IVF_HNSW_FLAT"}
# A filter keeping at most this share of the rows is searched exactly: every partition, under its mask.
# Twice the proportional share of partitions was not enough when the filter follows the clusters: at
# 1M rows a cluster-correlated 10% filter got recall 0.86-0.89 from 480 of 1,000 partitions, and
# 1.00 from all of them (64 ms a query).
EXACT_FILTER_SHARE = 0.25
# Concurrent unfiltered searches of one snapshot go to Lance as one batch (``app/store/coalesce.py``)
# while the copies of unindexed vectors a batch makes stay within this many bytes.
BATCH_COPY_BYTES = 64 * 1024**2
# A quantized index not measured yet (just built, or rebuilt) refines its candidates this many times over
# the k asked for, as its probes are generous: RaBitQ needs 2, IVF_PQ with 48 sub-vectors 20 (at 1M x 384).
UNTUNED_REFINE = 10
# A quantized index's cache holds it and this much more: a fold's new delta is read in beside the old one.
CACHE_HEADROOM = 1.5


def partitions_for(rows: int) -> int:
    """IVF lists: about 4 sqrt(rows) (faiss's guidance is 4 to 16 sqrt(n)), but at least 64 rows a list
    (16 lists at the least, 4,096 at the most). Fewer, larger lists cost every query more rows read for
    the same recall: at 200k x 384 (an overlapping mixture) sqrt(n) = 447 lists needed 64 probes (14% of
    the rows) for 0.98, 1,024 lists 20 probes for 0.96, 2,048 lists 3 probes for 0.98 (held-out recall)."""
    return int(min(4096, max(16, min(round(4 * math.sqrt(rows)), rows // 64))))


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
    many writes arrive while it waits (coalesced, and its turn moves back while they keep coming), so
    the queue is bounded by the number of tables and a write never waits for an index.
    """

    def __init__(self, store: Store, *, min_rows: int = 10_000, recall_target: float = 0.95,
                 sample: int = 200, k: int = 10, delay: float = 2.0, max_wait: float = 30.0,
                 budget: int = 1024**3, flat_limit: int = 1024**3, cache_limit: int = 4 * 1024**3,
                 resident: int = 0) -> None:
        self.store = store
        self.min_rows = min_rows
        self.recall_target = recall_target
        self.sample = sample
        self.k = k
        self.delay = delay  # a fold waits until the table's writes have been quiet this long
        self.max_wait = max_wait  # ... but no longer than this after the first of them
        self.budget = budget  # bytes a build or a recall measurement may hold at once
        self.flat_limit = flat_limit  # bytes of vectors past which a column is indexed with IVF_RQ
        self.cache_limit = cache_limit  # bytes of index cache a table's quantized index may be given
        self._first: dict[str, float] = {}  # table -> when the first write of its pending burst came
        self._parsed: OrderedDict[str, Tuning] = OrderedDict()
        self._queue: OrderedDict[str, float] = OrderedDict()  # table -> when its fold is due
        self._busy: str | None = None
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._seen: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        self.stats = CacheStats()  # builds and folds with the seconds they took, for /metrics
        self._parts: dict[tuple[str, frozenset[str]], int] = {}  # partitions per index state
        self.batches = Coalescer()  # concurrent searches of one kind, one Lance call
        self.resident = ResidentIndexes(resident)  # small IVF_FLAT indexes searched from memory
        # per snapshot and search parameters, Lance's ``nearest`` parameters and the column's index: a
        # version's indexes and tuning never change, and reading them costs more than a resident search
        self._specs: OrderedDict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any] | None]] = OrderedDict()

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
        """Queue a table for a fold once its writes go quiet (a no-op from the worker itself)."""
        if self._thread is not None and threading.current_thread() is self._thread:
            return  # the keeper's own commits need no fold
        with self._cond:
            now = time.monotonic()
            first = self._first.setdefault(name, now)
            self._queue[name] = min(now + self.delay, first + self.max_wait)
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
        if self._thread is None:  # a replica, or indexing switched off: no folds, but the cache still matters
            ds = self.store.latest(name)
            for found in vector_indexes(ds).values():
                self._fit_cache(name, ds, found, prewarm=False)
            return
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
                self._first.pop(name, None)
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
        """Bring every vector column and full-text index of a table's latest version up to date; what
        was done per column or index."""
        with self.store.build_turn:
            if not self.store.exists(name):
                return []
            fields = [f for f in self.store.fresh(name).schema if is_vector(f)]
            steps = (retry_commit(lambda f=f: self._fold_column(name, f, merge), table=name, what="index upkeep")
                     for f in fields)  # a fold preempted by a concurrent write plans again on the new latest
            return [step for step in steps if step] + self._fold_text(name)

    def _fold_text(self, name: str) -> list[dict[str, Any]]:
        """Fold new rows into the table's full-text indexes, whatever its size (they are made on request,
        and Lance searches the rows they miss by a flat pass until then)."""
        started = time.perf_counter()
        folded = retry_commit(lambda: fold_text_indexes(self.store.fresh(name)), table=name, what="index upkeep")
        if not folded:
            return []
        self.store.invalidate(name)
        self.stats.built(time.perf_counter() - started)
        seconds = round(time.perf_counter() - started, 3)
        return [{"index": index, "action": "folded", "seconds": seconds} for index in folded]

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
        wanted = index_type_for(rows, vector_bytes(field.type), self.flat_limit)
        if found is None:
            ds = build_ivf(ds, column, name=f"{column}_idx", metric=metric, partitions=partitions_for(rows),
                           budget=self.budget, index_type=wanted)
            action = "built"
        else:
            stats = ds.stats.index_stats(found["name"])
            deltas = stats.get("num_indexed_rows_per_delta") or [0]
            unindexed = int(stats.get("num_unindexed_rows", 0))
            own = found["name"] == f"{column}_idx" and found["type"] in OWN_TYPES
            doubled = partitions_for(rows) >= math.sqrt(2) * self._partitions(ds, found)
            # Lance folds the new rows in one call that holds them all (at 10M x 384 a fold of 5.84M rows
            # that arrived during a long tuning peaked at 7 GB): past the budget, a rebuild by segments
            too_many = unindexed * vector_bytes(field.type) > self.budget
            if own and (doubled or too_many or (wanted == QUANTIZED and found["type"] != QUANTIZED)):
                # the table has doubled since the partitions were trained, outgrown the flat index, or
                # received more rows than a fold may hold
                ds = build_ivf(ds, column, name=found["name"], metric=metric, partitions=partitions_for(rows),
                               budget=self.budget, index_type=wanted)
                action = "rebuilt"
            elif unindexed or (merge and len(deltas) > 1):
                count = deltas_to_merge(deltas, unindexed, merge)
                ds.optimize.optimize_indices(index_names=[found["name"]], num_indices_to_merge=count)
                action = "merged" if count >= len(deltas) else "folded"
        if action is not None:
            self.store.invalidate(name)
            self.stats.built(time.perf_counter() - started)
            # the version this commit made, not latest: a write that landed meanwhile is not indexed yet
            ds = self.store.fresh(name).checkout_version(ds.version)
        found = vector_indexes(ds).get(column)
        if found is None:
            return None
        self._fit_cache(name, ds, found)
        tuning = self._tune_if_needed(ds, name, column, found, field)
        out = {"column": column, "action": action, "seconds": round(time.perf_counter() - started, 3)}
        if tuning is not None:
            out["recall"] = tuning.recall
            out["nprobes"] = tuning.nprobes
        return out if action or tuning else None

    def _fit_cache(self, name: str, ds: Any, found: dict[str, Any], prewarm: bool = True) -> None:
        """Give a table whose index is quantized an index cache that holds it whole (within
        ``cache_limit``), and read it in: otherwise every search decodes its probed partitions again (at
        10M x 384 that made searches take a second at 8 connections)."""
        if found["type"] in EXACT_TYPES:
            return
        described = {d.name: d for d in ds.describe_indices()}.get(found["name"])
        size = int(getattr(described, "total_size_bytes", 0) or 0)
        want = int(size * CACHE_HEADROOM)
        if size and want <= self.cache_limit and self.store.fit_index_cache(name, want) and prewarm:
            started = time.perf_counter()
            self.store.latest(name).prewarm_index(found["name"])
            log.info("table %s: index %s (%.0f MB) held in memory in %.1f s", name, found["name"], size / 2**20,
                     time.perf_counter() - started)

    # -- recall tuning -----------------------------------------------------------------------
    def tuning(self, ds: Any, column: str, found: dict[str, Any] | None = None) -> Tuning | None:
        """The tuning a version records for its index on ``column`` (in the table's config, so it is
        versioned with the index: a restart, a replica or an old tag reads it at once). One measured
        before later folds still applies: folds keep the trained partitions; one measured before a
        rebuild does not (until the new index is measured, searches probe generously)."""
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
        return tuning if tuning.fits(found, self._partitions(ds, found)) else None

    def _tune_if_needed(self, ds: Any, name: str, column: str, found: dict[str, Any],
                        field: pa.Field) -> Tuning | None:
        """Measure again when there is no tuning, the index was rebuilt, or the table grew by a fifth."""
        last = self.tuning(ds, column, found)
        rows = ds.count_rows()
        if last is not None and rows < 1.2 * last.rows and last.target == self.recall_target:
            return None
        tuning = self.measure(ds, column, found, vector_meta(field).get("metric", "l2"))
        if tuning is not None:
            # one small commit on latest, versioned with the index it names
            update_config(self.store, name, {CONFIG_PREFIX + column: tuning.dumps()})
            log.info("table %s column %s: nprobes %d for recall %.3f (target %.2f)", name, column,
                     tuning.nprobes, tuning.recall, self.recall_target)
        return tuning

    def measure(self, ds: Any, column: str, found: dict[str, Any], metric: str) -> Tuning | None:
        """Recall@k of increasing probe counts on a held-out sample of the column's own vectors, within
        the keeper's memory budget (None when this version has too many unindexed rows for it)."""
        spec = Measure(target=self.recall_target, sample=self.sample, k=self.k, budget=self.budget)
        return measure(ds, column, found, metric, _num_partitions(ds, found["name"]), spec)

    # -- search --------------------------------------------------------------------------------
    def nearest(self, snap: Snapshot, column: str, query: np.ndarray, k: int, *, metric: str,
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
        spec = self._spec(snap, column, k, metric, matching, nprobes, refine_factor)
        spec["q"] = np.asarray(query, np.float32)
        wanted = [*(columns or []), "_distance"]
        view = self._resident(snap, column, k, metric, nprobes, refine_factor) if predicate is None else None
        if view is not None:
            return self.resident.hits(snap, view, self.resident.search(view, [spec["q"]], k, spec["nprobes"]),
                                      wanted)[0]
        if predicate is not None or "use_index" in spec or not self._batchable(snap, column, spec["q"]):
            return snap._ds.to_table(columns=wanted, nearest=spec, filter=predicate, prefilter=predicate is not None,
                                     with_row_id=True)
        key = (snap.key, column, k, spec["metric"], spec.get("nprobes"), spec.get("refine_factor"), tuple(wanted))
        return self.batches.run(key, spec["q"], lambda queries: _search_many(snap._ds, spec, wanted, queries))

    def nearest_many(self, snap: Snapshot, column: str, queries: list[np.ndarray], k: int, *, metric: str,
                     nprobes: int | None = None, refine_factor: int | None = None,
                     columns: list[str] | None = None) -> list[pa.Table]:
        """``nearest`` (unfiltered) of each query, in one Lance search when the snapshot allows a batch."""
        spec = self._spec(snap, column, k, metric, None, nprobes, refine_factor)
        wanted = [*(columns or []), "_distance"]
        queries = [np.asarray(q, np.float32) for q in queries]
        view = self._resident(snap, column, k, metric, nprobes, refine_factor)
        if view is not None:
            return self.resident.hits(snap, view, self.resident.search(view, queries, k, spec["nprobes"]), wanted)
        if "use_index" in spec or not self._batchable(snap, column, queries[0]):
            return [_search_many(snap._ds, spec, wanted, [q])[0] for q in queries]
        return _search_many(snap._ds, spec, wanted, queries)

    def _spec(self, snap: Snapshot, column: str, k: int, metric: str, matching: int | None, nprobes: int | None,
              refine_factor: int | None) -> dict[str, Any]:
        """Lance's ``nearest`` parameters (without the query) for one search of this snapshot (a copy)."""
        return dict(self._planned(snap, column, k, metric, matching, nprobes, refine_factor)[0])

    def _planned(self, snap: Snapshot, column: str, k: int, metric: str, matching: int | None, nprobes: int | None,
                 refine_factor: int | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """``_spec`` and the column's index, remembered per snapshot and parameters."""
        key = (snap._ds.uri, snap.key, column, k, metric, matching, nprobes, refine_factor)
        with self._cond:
            planned = self._specs.get(key)
        if planned is None:
            found = vector_indexes(snap._ds).get(column)
            planned = (self._plan(snap, column, found, k, metric, matching, nprobes, refine_factor), found)
            with self._cond:
                self._specs[key] = planned
                while len(self._specs) > 4096:
                    self._specs.popitem(last=False)
        return planned

    def _plan(self, snap: Snapshot, column: str, found: dict[str, Any] | None, k: int, metric: str,
              matching: int | None, nprobes: int | None, refine_factor: int | None) -> dict[str, Any]:
        ds = snap._ds
        spec: dict[str, Any] = {"column": column, "k": k, "metric": LANCE_METRICS.get(metric, "L2")}
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
                if refine is None and tuning is None and found["type"] not in EXACT_TYPES:
                    refine = UNTUNED_REFINE
                if refine:
                    spec["refine_factor"] = int(refine)
        return spec

    def held(self, snap: Snapshot, column: str, k: int, metric: str, nprobes: int | None,
             refine_factor: int | None) -> bool:
        """Whether an unfiltered search of this snapshot is answered from memory (``app/store/resident.py``):
        it then takes a fraction of a millisecond, and its caller need not move it off the event loop."""
        return self._resident(snap, column, k, metric, nprobes, refine_factor) is not None

    def _resident(self, snap: Snapshot, column: str, k: int, metric: str, nprobes: int | None,
                  refine_factor: int | None) -> Any:
        """The resident view that answers an unfiltered search, or None (Lance does): an IVF_FLAT index
        probed without a refine step, not exhaustively."""
        spec, found = self._planned(snap, column, k, metric, None, nprobes, refine_factor)
        if found is None or "nprobes" not in spec or spec.get("refine_factor") or "use_index" in spec:
            return None
        return self.resident.view(snap, column, found, metric)

    def _batchable(self, snap: Snapshot, column: str, query: np.ndarray) -> bool:
        """Whether a batch of searches on this snapshot stays small: Lance copies the vectors of the
        rows no index holds once per query of a batch (a bulk load not yet indexed would multiply)."""
        ds = snap._ds
        found = vector_indexes(ds).get(column)
        indexed = 0
        if found is not None:
            described = {d.name: d for d in ds.describe_indices()}.get(found["name"])
            indexed = int(getattr(described, "num_rows_indexed", 0) or 0)
        unindexed = max(0, ds.count_rows() - indexed)
        return unindexed * query.nbytes * self.batches.max_batch <= BATCH_COPY_BYTES

    def _partitions(self, ds: Any, found: dict[str, Any]) -> int:
        key = (ds.uri, found["uuids"])
        parts = self._parts.get(key)
        if parts is None:
            parts = self._parts[key] = _num_partitions(ds, found["name"])
            while len(self._parts) > 1024:
                self._parts.pop(next(iter(self._parts)))
        return parts

    def describe(self, snap: Snapshot) -> dict[str, dict[str, Any]]:
        """Per vector index name: its tuning (recall estimate, probes) and the target."""
        ds = snap._ds
        out = {}
        for column, found in vector_indexes(ds).items():
            tuning = self.tuning(ds, column, found)
            entry: dict[str, Any] = {"recall_target": self.recall_target, "tuned": tuning is not None,
                                     "segments": len(found["uuids"]),
                                     "in_memory": self.resident.holds(snap, column, found)}
            if tuning is not None:
                entry.update(tuning.report())
                entry["tuned_for_these_files"] = tuning.uuids == found["uuids"]
            out[found["name"]] = entry
        return out


def _search_many(ds: Any, spec: dict[str, Any], columns: list[str], queries: list[np.ndarray]) -> list[pa.Table]:
    """Each query's hits, as ``to_table`` gives them for that query alone, from one search of them all."""
    if len(queries) == 1:
        return [ds.to_table(columns=columns, nearest={**spec, "q": queries[0]}, with_row_id=True)]
    got = ds.to_table(columns=columns, nearest={**spec, "q": np.stack(queries)}, with_row_id=True)
    which = got.column("query_index").to_numpy()
    got = got.drop_columns(["query_index"])
    return [got.take(np.flatnonzero(which == n)).sort_by("_distance") for n in range(len(queries))]


def _num_partitions(ds: Any, index: str) -> int:
    stats = ds.stats.index_stats(index)
    parts = [int(i.get("num_partitions", 0)) for i in stats.get("indices") or []]
    return max(parts) if parts else 1
