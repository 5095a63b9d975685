"""Small IVF_FLAT indexes searched from memory: Lance's own lists, probed without a query plan.

Measured at 200k x 384 (IVF_FLAT, 1,789 lists, 4-6 probes, one process on 2 cores), a Lance search
costs 1.5-2.2 CPU-ms for one query and 0.3-0.5 ms for each further query of a batch, whatever the
probes: planning, the scanner's set-up in Python, its threads. The work itself (one product with the
centroids, about 700 distances) takes a few hundredths of that. A FastAPI endpoint over faiss spends
0.8-0.9 CPU-ms on a whole request, so a search served by Lance's planner could not keep up with it
however the index was tuned (0.46x its QPS at 8 connections).

So once an IVF_FLAT index is small enough to hold twice (``LIGHTBOX_RESIDENT_INDEX_BYTES`` for all of
a process's), the searches of its column are answered from a copy of that index in memory:

- the lists are Lance's: the centroids of its trained IVF model (``get_ivf_model``) and each list's row
  ids and vectors as its index files hold them (``read_index_partition``, every segment), so the probes
  a query makes, the rows they scan and the distances they give are those Lance's own search would
  (a test compares both, for each metric);
- per version, the rows Lance would search too: the row ids of the live rows in the fragments the
  index covers (a list's row that was deleted, or updated into a new fragment, is dropped from the
  candidates, as Lance's prefilter drops it), and the vectors of the fragments no index segment
  covers yet (searched exactly, as Lance's flat pass does), with every row's id;
- it is built off the request path, on the first search of a version, while Lance answers; a version
  not held yet, a filter, a refine step, an exhaustive search or any other index type goes to Lance.

Nothing about an index is decided here: Lance trains, stores, folds and versions it; the keeper tunes
its probes; this holds its lists and scans them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from app.store.snapshot import Snapshot

__all__ = ["ResidentIndexes"]

log = logging.getLogger("lightbox.resident")

VIEWS = 8  # versions held at once (their live rows and unindexed vectors), least recently used first out
# The vectors of fragments the held lists do not cover are held for a version up to this many bytes; a
# version with more (a bulk load not folded yet) is searched by Lance.
EXTRA_BYTES = 64 * 1024**2
# Once the version's index covers this many rows the held lists do not (a fold of new rows), the lists are
# read again from the newer version (until then those rows are searched exactly, from memory).
REFRESH_ROWS = 2048


@dataclass
class _Lists:
    """One index's lists as one version's index files held them: its centroids, then every list's rows
    back to back (``offsets[p]`` to ``offsets[p + 1]``), and the fragments those rows came from."""

    centroids: np.ndarray  # (lists, dim) float32
    centroid_norms: np.ndarray  # (lists,) squared norms
    offsets: np.ndarray  # (lists + 1,) int64
    rowids: np.ndarray  # (rows,) uint64
    vectors: np.ndarray  # (rows, dim) float32, as the index stores them (unit length for cosine)
    norms: np.ndarray | None  # (rows,) squared norms, for L2
    fragments: frozenset[int]  # the fragments the index covered
    version: int  # the version they were read from

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.centroids, self.offsets, self.rowids, self.vectors)) + (
            self.norms.nbytes if self.norms is not None else 0)


@dataclass
class _View:
    """One version's rows around held lists: the live row ids of the fragments the lists cover (sorted),
    every row's id, and the vectors of the rows in the fragments they do not."""

    lists: _Lists
    metric: str  # Lance's: l2, cosine or dot
    # per row of the lists, what a distance adds to -2 (L2) or -1 (cosine, dot) times the product with the
    # query: the squared norm (L2, less the query's, added last) or 1, and +inf for a row not in this version
    offset: np.ndarray
    rows: np.ndarray  # sorted uint64: every row of the version
    ids: pa.Array | None  # the ``id`` of each of ``rows``
    extra_rowids: np.ndarray  # the rows of fragments the lists do not cover, searched exactly
    extra_vectors: np.ndarray  # unit length for cosine
    extra_offset: np.ndarray


class ResidentIndexes:
    """The resident copies of a process's small IVF_FLAT indexes (see the module's docstring).

    One copy of the lists per table and index, shared by the versions searched: a fold adds rows to the
    index without changing its centroids, so the lists read at one version still hold the rows of every
    fragment they came from (fragments never change; a deleted or moved row drops out of ``live``), and
    a later version's other rows are searched exactly until they pass ``REFRESH_ROWS``. Lists are read
    again only for a newer version (new centroids after a rebuild, or a fold past that): an old version
    asked for never evicts them, it is answered by Lance.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget  # bytes of lists held at once, all indexes together (0: none)
        self._lists: dict[tuple[str, str], _Lists] = {}  # (table's uri, index name) -> its lists
        self._views: OrderedDict[tuple[Any, ...], _View] = OrderedDict()
        self._failed: OrderedDict[tuple[Any, ...], None] = OrderedDict()  # views that cannot be held now
        self._pending: OrderedDict[tuple[Any, ...], tuple[Snapshot, str, dict[str, Any], str]] = OrderedDict()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.searches = 0  # queries answered here (tests and metrics read it)
        self.reads = 0  # lists read from an index's files

    # -- what is held -------------------------------------------------------------------------------
    def view(self, snap: Snapshot, column: str, found: dict[str, Any], metric: str) -> _View | None:
        """This version's resident view of ``column``'s index, or None (Lance answers): then it is built
        in the background if it can be held. Only the main branch's versions are held (a branch's
        fragment ids are its own)."""
        if self.budget <= 0 or found["type"] != "IVF_FLAT" or snap.branch is not None:
            return None
        key = _view_key(snap, column, found)
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
                return view
            if key in self._failed or key in self._pending:
                return None
            self._pending[key] = (snap, column, found, metric)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._build_pending, daemon=True, name="lightbox-resident")
                self._worker.start()
        return None

    def holds(self, snap: Snapshot, column: str, found: dict[str, Any]) -> bool:
        """Whether searches of this version of ``column`` are answered from memory now (nothing is built)."""
        with self._lock:
            return _view_key(snap, column, found) in self._views

    def held_bytes(self) -> int:
        with self._lock:
            return sum(lists.nbytes for lists in self._lists.values())

    def _build_pending(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._worker = None
                    return
                key, job = self._pending.popitem(last=False)
            try:
                view = self._build(*job)
            except Exception:  # Lance answers this version's searches as before
                log.warning("could not hold the index of %s in memory", key[1], exc_info=True)
                view = None
            with self._lock:
                if view is None:
                    self._failed[key] = None
                    while len(self._failed) > 1024:
                        self._failed.popitem(last=False)
                else:
                    self._views[key] = view
                    while len(self._views) > VIEWS:
                        self._views.popitem(last=False)

    def _build(self, snap: Snapshot, column: str, found: dict[str, Any], metric: str) -> _View | None:
        started = time.perf_counter()
        ds = snap._ds
        field = ds.schema.field(column)
        dim = field.type.list_size
        if not pa.types.is_float32(field.type.value_type) or dim <= 0:
            return None
        covered: set[int] = set()
        for index in ds.list_indices():
            if index["name"] == found["name"]:
                covered.update(int(f) for f in index.get("fragment_ids") or ())
        fragments = ds.get_fragments()
        lists = self._lists_for(snap, found["name"], dim, metric, covered, fragments)
        if lists is None:
            return None
        inside = [f for f in fragments if f.fragment_id in lists.fragments]
        outside = [f for f in fragments if f.fragment_id not in lists.fragments]
        rows = _rows(ds, column, inside, dim, metric, vectors=False)
        extra = _rows(ds, column, outside, dim, metric, vectors=True)
        if rows is None or extra is None:
            return None
        live, ids = rows[0], rows[3]
        if extra[3] is not None and ids is not None:
            every = np.concatenate([live, extra[0]])
            order = every.argsort(kind="stable")
            rows_sorted, ids = every[order], pa.concat_arrays([ids, extra[3]]).take(pa.array(order))
        else:
            rows_sorted = np.sort(np.concatenate([live, extra[0]]))
        log.info("table %s v%d: index %s searched from memory (%.0f MB of lists from v%d, %d rows beside them) "
                 "after %.2f s", snap.name, snap.version, found["name"], lists.nbytes / 2**20, lists.version,
                 len(extra[0]), time.perf_counter() - started)
        base = lists.norms if lists.norms is not None else np.ones(len(lists.rowids), np.float32)
        offset = np.where(_alive(live, lists.rowids), base, np.float32(np.inf)).astype(np.float32)
        extra_base = extra[2] if extra[2] is not None else np.ones(len(extra[0]), np.float32)
        return _View(lists, metric, offset, rows_sorted, ids, extra[0], extra[1], extra_base.astype(np.float32))

    def _lists_for(self, snap: Snapshot, name: str, dim: int, metric: str, covered: set[int],
                   fragments: list[Any]) -> _Lists | None:
        """The held lists of this index when they serve ``snap`` (same centroids, not too far behind),
        else read again from ``snap`` when it is newer and they fit the budget; None: Lance answers."""
        ds = snap._ds
        key = (ds.uri, name)
        with self._lock:
            held = self._lists.get(key)
        if held is not None:
            same = np.array_equal(_matrix(ds._ds.get_ivf_model(name).centroids, dim), held.centroids)
            behind = sum(f.count_rows() for f in fragments
                         if f.fragment_id in covered and f.fragment_id not in held.fragments)
            if same and behind <= REFRESH_ROWS:
                return held
            if snap.version <= held.version:
                return None  # an older version's index: Lance answers it, the newer lists stay
        indexed = sum(int(getattr(d, "num_rows_indexed", 0) or 0) for d in ds.describe_indices() if d.name == name)
        with self._lock:
            others = sum(x.nbytes for k, x in self._lists.items() if k != key)
        if others + indexed * (dim * 4 + 12) > self.budget:
            return None
        if _index_metric(ds, name) != metric:
            return None  # an index made by hand with another metric: Lance decides what it serves
        lists = _read_lists(ds, name, dim, metric, frozenset(covered), snap.version)
        with self._lock:
            self._lists[key] = lists
            for old in [k for k, v in self._views.items() if v.lists is held]:  # their memory goes with them
                del self._views[old]
            self.reads += 1
        return lists

    # -- search ---------------------------------------------------------------------------------------
    def search(self, view: _View, queries: list[np.ndarray], k: int,
               nprobes: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each query's ``(row ids, Lance's distances)``, nearest first, as Lance's search of the same
        version with ``nprobes`` would give them."""
        lists = view.lists
        q = np.asarray(np.stack(queries), np.float32)
        if view.metric == "cosine":
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
        parts = len(lists.centroids)
        nprobes = min(nprobes, parts)
        # (centroids @ q.T).T: OpenBLAS took 2x longer a query for q @ centroids.T at batches of 2 to 8
        closeness = lists.centroid_norms[None, :] - 2.0 * (lists.centroids @ q.T).T
        probes = (closeness.argpartition(nprobes - 1, axis=1)[:, :nprobes] if nprobes < parts
                  else np.broadcast_to(np.arange(parts), (len(q), parts)))
        scaled = q * np.float32(-2.0 if view.metric == "l2" else -1.0)  # distance = offset + vector . scaled
        extra = view.extra_offset[:, None] + view.extra_vectors @ scaled.T if len(view.extra_rowids) else None
        lift = (q * q).sum(1) if view.metric == "l2" else np.zeros(len(q), np.float32)
        out = []
        for i in range(len(q)):
            # only the probed lists' bounds become Python ints (all 1,789 of them took 33 us a search)
            spans = list(zip(lists.offsets[probes[i]].tolist(), lists.offsets[probes[i] + 1].tolist(), strict=True))
            rowids = np.concatenate([lists.rowids[s:e] for s, e in spans])
            qi = scaled[i]
            distances = np.concatenate([view.offset[s:e] + lists.vectors[s:e] @ qi for s, e in spans])
            if extra is not None:
                rowids = np.concatenate([rowids, view.extra_rowids])
                distances = np.concatenate([distances, extra[:, i]])
            if len(distances) > k:
                top = distances.argpartition(k - 1)[:k]
                rowids, distances = rowids[top], distances[top]
            order = distances.argsort(kind="stable")
            distances = distances[order]
            alive = np.isfinite(distances)  # a row deleted or moved since the lists were read: +inf
            found = (distances[alive] + lift[i]).astype(np.float32)
            out.append((rowids[order][alive], np.maximum(found, 0.0) if view.metric == "l2" else found))
        self.searches += len(q)
        return out

    def hits(self, snap: Snapshot, view: _View, found: list[tuple[np.ndarray, np.ndarray]],
             columns: list[str]) -> list[pa.Table]:
        """Each query's hits as Lance's ``to_table`` gives them: ``columns``, ``_distance``, ``_rowid``.
        The ids are held; any other column is read for the whole batch by one take."""
        rowids = np.concatenate([r for r, _ in found]) if found else np.zeros(0, np.uint64)
        arrays: dict[str, pa.Array] = {}
        others = [c for c in columns if c not in ("id", "_distance")]
        table = None
        if others:
            every, where = np.unique(rowids, return_inverse=True)
            table = snap.take(every.tolist(), others)
        for column in columns:
            if column == "_distance":
                continue
            if column == "id" and view.ids is not None:
                arrays[column] = view.ids.take(pa.array(view.rows.searchsorted(rowids)))
            else:
                assert table is not None
                arrays[column] = table.column(column).take(pa.array(where, pa.int64())).combine_chunks()
        arrays["_distance"] = pa.array(np.concatenate([d for _, d in found]) if found else [], pa.float32())
        arrays["_rowid"] = pa.array(rowids, pa.uint64())
        every_hit = pa.table(arrays)
        out, start = [], 0
        for r, _ in found:
            out.append(every_hit.slice(start, len(r)))
            start += len(r)
        return out


def _view_key(snap: Snapshot, column: str, found: dict[str, Any]) -> tuple[Any, ...]:
    """A held view's key: the table, the version, the column and its index segments."""
    return (snap._ds.uri, snap.key, column, found["uuids"])


def _alive(live: np.ndarray, rowids: np.ndarray) -> np.ndarray:
    """Which of ``rowids`` are rows of the version (``live`` is sorted)."""
    if not len(live):
        return np.zeros(len(rowids), bool)
    at = live.searchsorted(rowids)
    at[at >= len(live)] = 0
    return live[at] == rowids


def _matrix(array: pa.Array, dim: int) -> np.ndarray:
    values = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    return np.asarray(values.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(-1, dim)


def _index_metric(ds: Any, name: str) -> str | None:
    segments = ds.stats.index_stats(name).get("indices") or []
    metrics = {str(s.get("metric_type", "")).lower() for s in segments}
    return metrics.pop() if len(metrics) == 1 else None


def _read_lists(ds: Any, name: str, dim: int, metric: str, fragments: frozenset[int], version: int) -> _Lists:
    """The index's centroids and lists, read through Lance (every segment's rows of each list)."""
    model = ds._ds.get_ivf_model(name)
    centroids = _matrix(model.centroids, dim)
    rowids, vectors, sizes = [], [], []
    for p in range(len(centroids)):
        part = ds._ds.read_index_partition(name, p, True).read_all()
        sizes.append(part.num_rows)
        rowids.append(part.column("_rowid").to_numpy())
        vectors.append(_matrix(part.column("flat"), dim))
    offsets = np.zeros(len(centroids) + 1, np.int64)
    offsets[1:] = np.cumsum(sizes)
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
    del vectors
    norms = np.einsum("ij,ij->i", stacked, stacked) if metric == "l2" else None
    return _Lists(centroids, np.einsum("ij,ij->i", centroids, centroids), offsets,
                  np.concatenate(rowids).astype(np.uint64) if rowids else np.zeros(0, np.uint64), stacked, norms,
                  fragments, version)


def _rows(ds: Any, column: str, fragments: list[Any], dim: int, metric: str, *,
          vectors: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, pa.Array | None] | None:
    """The live rows of ``fragments``, sorted by row id: their row ids, their vectors when ``vectors``
    (unit length for cosine; squared norms for L2) and their ids. None when the vectors are too many
    to hold, or one cosine cannot compare (zero)."""
    has_id = "id" in ds.schema.names
    empty = (np.zeros(0, np.uint64), np.zeros((0, dim), np.float32),
             np.zeros(0, np.float32) if metric == "l2" else None,
             pa.array([], ds.schema.field("id").type) if has_id else None)
    if not fragments:
        return empty
    if vectors and sum(f.count_rows() for f in fragments) * dim * 4 > EXTRA_BYTES:
        return None
    wanted = (["id"] if has_id else []) + ([column] if vectors else [])
    table = ds.scanner(columns=wanted, fragments=fragments, with_row_id=True,
                       filter=f"{_quote(column)} IS NOT NULL" if vectors else None).to_table()
    rowids = table.column("_rowid").to_numpy().astype(np.uint64)
    order = rowids.argsort(kind="stable")
    ids = table.column("id").combine_chunks().take(pa.array(order)) if has_id else None
    if not vectors:
        return rowids[order], empty[1], empty[2], ids
    matrix = _matrix(table.column(column), dim)[order]
    if metric == "cosine":
        lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
        if not np.all(lengths > 0):
            return None
        matrix = matrix / lengths
    norms = np.einsum("ij,ij->i", matrix, matrix) if metric == "l2" else None
    return rowids[order], np.ascontiguousarray(matrix, np.float32), norms, ids


def _quote(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"
