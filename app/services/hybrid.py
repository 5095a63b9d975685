"""One search door for every kind: similarity, keywords, or both fused (hybrid).

- similarity alone (a vector, a text embedded by the column's model, a row, an image): ``Searcher``;
- keywords alone: ``app.services.keywords`` (BM25, each hit with its ``_score``);
- both: each side is searched on the same pinned version under the same filter (prefiltered), for
  ``HYBRID_DEPTH`` times the rows asked for, and the two rankings are fused:
  - ``rrf`` (default): reciprocal rank fusion, ``sum(1 / (RRF_K + rank))`` over the sides a row is
    found by (rank from 1, ``RRF_K`` = 60 as in the original paper and in LanceDB), so a row both sides
    find ranks above one only either finds;
  - ``linear``: ``weight * vector + (1 - weight) * keyword``, each side's scores scaled to 0..1 over its
    candidates (min-max; the nearest distance and the highest BM25 score are 1), 0 where a side did not
    find the row.
  Hits carry ``_relevance_score`` (the fused score, descending), ``_distance`` and ``_score`` (null
  where that side did not find the row).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa

from app.errors import BadRequest
from app.services.keywords import KeywordSpec, keyword_search
from app.services.search import MAX_K, InvalidQuery, NoVectors, Searcher, SearchSpec, search_columns
from app.store import Ref, Snapshot
from app.store.schema import is_vector

__all__ = ["FUSIONS", "HYBRID_DEPTH", "RRF_K", "find", "fuse"]

RRF_K = 60
HYBRID_DEPTH = 2  # each side fetches this many times (k + offset) candidates
FUSIONS = ("rrf", "linear")
SIMILARITY = ("vector", "text", "image_id", "image")


def find(searcher: Searcher, name: str, ref: Ref, spec: SearchSpec) -> tuple[Snapshot, pa.Table]:
    """Answer any search body: similarity, keywords or hybrid, ``k`` hits after ``offset``."""
    _check_window(spec)
    similar = any(getattr(spec, kind) not in (None, b"", "") for kind in SIMILARITY)
    if spec.keywords is None:
        if not spec.offset:
            return searcher.search(name, ref, spec)
        snap, hits = searcher.search(name, ref, replace(spec, k=spec.k + spec.offset))
        return snap, hits.slice(spec.offset, spec.k)
    snap = searcher.store.snapshot(name, ref)
    if snap.branch is None:
        searcher.indexes.notice(snap.key, snap.name)  # another process's writes get folded too
    columns = search_columns(snap.schema, spec.columns)
    words = KeywordSpec(spec.keywords, spec.keyword_columns, spec.k, spec.offset, spec.filter)
    if not similar:
        snap, hits = keyword_search(searcher.store, name, ref, words, columns, snap=snap)
        return snap, hits.drop_columns([] if spec.row_ids else ["_rowid"])
    if not any(is_vector(f) for f in snap.schema):
        raise NoVectors("hybrid search needs a vector column, and this table has none; search the keywords "
                        "alone, or add vectors with `lightbox embed`")
    depth = min(MAX_K, HYBRID_DEPTH * (spec.k + spec.offset))
    pinned = Ref(version=snap.version, branch=snap.branch)  # both sides read the same version
    _, near = searcher.search(name, pinned, replace(spec, k=depth, offset=0, keywords=None, row_ids=True))
    _, matched = keyword_search(searcher.store, name, pinned, replace(words, k=depth, offset=0), columns, snap=snap)
    fused = fuse(near, matched, method=spec.fusion, weight=spec.weight)
    return snap, fused.slice(spec.offset, spec.k).drop_columns([] if spec.row_ids else ["_rowid"])


def _check_window(spec: SearchSpec) -> None:
    if spec.offset < 0 or not 1 <= spec.k + spec.offset <= MAX_K:
        raise InvalidQuery(f"k must be at least 1, offset at least 0, and k + offset at most {MAX_K}")
    if spec.fusion not in FUSIONS:
        raise InvalidQuery(f"fusion must be one of {list(FUSIONS)}, not {spec.fusion!r}")
    if not 0.0 <= spec.weight <= 1.0:  # also refuses nan
        raise InvalidQuery(f"weight (the vector side's share in linear fusion) must be from 0 to 1, not {spec.weight}")


def fuse(near: pa.Table, matched: pa.Table, *, method: str = "rrf", weight: float = 0.5) -> pa.Table:
    """The rows of both rankings once each (by ``_rowid``), best fused score first."""
    if method not in FUSIONS:
        raise BadRequest(f"fusion must be one of {list(FUSIONS)}")
    ids = list(dict.fromkeys([*near.column("_rowid").to_pylist(), *matched.column("_rowid").to_pylist()]))
    at = {rid: i for i, rid in enumerate(ids)}
    distance = np.full(len(ids), np.nan)
    score = np.full(len(ids), np.nan)
    distance[[at[r] for r in near.column("_rowid").to_pylist()]] = near.column("_distance").to_numpy()
    score[[at[r] for r in matched.column("_rowid").to_pylist()]] = matched.column("_score").to_numpy()
    if method == "rrf":
        relevance = _rrf(at, near) + _rrf(at, matched)
    else:
        relevance = weight * _scaled(-distance) + (1 - weight) * _scaled(score)
    order = np.argsort(-relevance, kind="stable")  # ties keep the vector side's order, then the keywords'
    rows = _rows(near, matched)
    out = rows.take(pa.array(order))
    return (out.append_column("_distance", pa.array(distance[order], pa.float32(), mask=np.isnan(distance[order])))
            .append_column("_score", pa.array(score[order], pa.float32(), mask=np.isnan(score[order])))
            .append_column("_relevance_score", pa.array(relevance[order], pa.float32())))


def _rrf(at: dict[int, int], ranked: pa.Table) -> np.ndarray:
    out = np.zeros(len(at))
    for rank, rid in enumerate(ranked.column("_rowid").to_pylist(), start=1):
        out[at[rid]] = 1.0 / (RRF_K + rank)
    return out


def _scaled(values: np.ndarray) -> np.ndarray:
    """Min-max to 0..1 over the values found (higher is better); 0 where not found (nan)."""
    found = ~np.isnan(values)
    out = np.zeros(len(values))
    if found.any():
        low, high = values[found].min(), values[found].max()
        out[found] = 1.0 if high == low else (values[found] - low) / (high - low)
    return out


def _rows(near: pa.Table, matched: pa.Table) -> pa.Table:
    """Each row's columns (and ``_rowid``), from the side that found it: the vector side's rows, then
    the keyword side's others (the order of ``fuse``'s ids)."""
    columns = [c for c in near.column_names if c != "_distance"]
    extra = matched.select(columns).filter(pa.array(
        np.isin(matched.column("_rowid").to_numpy(), near.column("_rowid").to_numpy(), invert=True)))
    return pa.concat_tables([near.select(columns), extra])
