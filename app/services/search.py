"""Similarity search: by vector, text, an uploaded image, or "more like this" row.

The query is embedded with the model recorded on the vector column, so text and images are
embedded exactly as the column was. The search itself is Lance's, on the pinned version's own
vector index (``app.store.vectors``): rows the index does not hold yet are searched exactly and
merged, and a filter is applied before the search (prefilter), so a filtered search keeps its recall.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.errors import BadRequest, NotFound, Unprocessable
from app.filters import check_filter, filter_errors
from app.services.query import check_columns
from app.store import Ref, RowReader, Snapshot, Store
from app.store.schema import is_blob, is_vector, vector_meta
from app.store.vectors import IndexKeeper
from embeddings.registry import Registry, UnknownModel

MAX_K = 10_000


class NoVectors(BadRequest):
    code = "no_vector_column"


class InvalidQuery(BadRequest):
    code = "invalid_query"


@dataclass
class SearchSpec:
    vector: list[float] | None = None
    text: str | None = None
    image_id: str | None = None
    image: bytes | None = None
    k: int = 10
    filter: str | None = None
    columns: list[str] | None = None
    column: str | None = None
    nprobes: int | None = None
    refine_factor: int | None = None
    keywords: str | None = None  # keyword search, or hybrid beside one of the above (``app.services.hybrid``)
    keyword_columns: list[str] | None = None
    offset: int = 0
    fusion: str = "rrf"
    weight: float = 0.5
    row_ids: bool = False  # keep ``_rowid`` (stable row ids) in the hits


@dataclass(frozen=True)
class Prepared:
    """A checked vector query on a resolved snapshot (``Searcher.prepare``)."""

    snap: Snapshot
    column: str
    columns: list[str]
    query: np.ndarray
    metric: str
    k: int
    nprobes: int | None
    refine_factor: int | None

    @property
    def key(self) -> tuple[Any, ...]:
        """What queries searched together must share."""
        return (self.snap.key, self.column, tuple(self.columns), self.metric, self.k, self.nprobes,
                self.refine_factor)


class Searcher:
    """Searches through the index keeper and caches filter results; one per service."""

    def __init__(self, store: Store, reader: RowReader, registry: Registry, indexes: IndexKeeper | None = None) -> None:
        self.store, self.reader, self.registry = store, reader, registry
        self.indexes = indexes or IndexKeeper(store)
        self._filters: OrderedDict[tuple[Any, ...], tuple[str, int]] = OrderedDict()
        self._shapes: OrderedDict[tuple[Any, ...], tuple[pa.Field, list[str], str]] = OrderedDict()
        self._lock = threading.Lock()

    def search(self, name: str, ref: Ref, spec: SearchSpec) -> tuple[Snapshot, pa.Table]:
        kinds = [k for k in ("vector", "text", "image_id", "image") if getattr(spec, k) not in (None, b"", "")]
        if len(kinds) != 1:
            raise InvalidQuery("give exactly one of vector, text, image_id or an image upload (and/or keywords)"
                               + (f"; got {', '.join(kinds)}" if kinds else ""))
        if not 1 <= spec.k <= MAX_K:
            raise InvalidQuery(f"k must be between 1 and {MAX_K}")
        snap = self.store.snapshot(name, ref)
        schema = snap.schema
        kind = "text" if spec.text is not None else "image" if spec.image else None
        field = vector_column(schema, spec.column, kind, self._can_embed)
        columns = search_columns(schema, spec.columns)
        filtered = self._filter(snap, spec.filter)
        query, exclude = self._query_vector(snap, field, spec)
        metric = vector_meta(field).get("metric", "l2")
        if snap.branch is None:
            self.indexes.notice(snap.key, snap.name)
        want = spec.k + (1 if exclude is not None else 0)
        predicate, matching = filtered if filtered is not None else (None, None)
        with filter_errors(predicate):
            found = self.indexes.nearest(snap, field.name, query, want, metric=metric, predicate=predicate,
                                         matching=matching, nprobes=spec.nprobes,
                                         refine_factor=spec.refine_factor, columns=columns)
        if exclude is not None:  # "more like this": the row itself is not a hit
            keep = pc.not_equal(found.column("_rowid"), pa.scalar(exclude, pa.uint64()))
            found = found.filter(keep).slice(0, spec.k)
        return snap, hits_table(found, [*columns, "_rowid"] if spec.row_ids else columns, metric)

    def prepare(self, snap: Snapshot, spec: SearchSpec) -> Prepared | None:
        """The checks ``search`` makes of a plain vector query (no filter, text or image), on a resolved
        snapshot, without reading the store; None for any other query. Raises what ``search`` would."""
        if (spec.vector is None or spec.filter or spec.text is not None or spec.image_id is not None or spec.image
                or spec.keywords is not None or spec.offset or spec.row_ids):
            return None
        if not 1 <= spec.k <= MAX_K:
            raise InvalidQuery(f"k must be between 1 and {MAX_K}")
        key = (snap.key, spec.column, tuple(spec.columns) if spec.columns is not None else None)
        with self._lock:
            shape = self._shapes.get(key)
        if shape is None:  # the column, the hits' columns and the metric: per version, not per request
            field = vector_column(snap.schema, spec.column)
            shape = (field, search_columns(snap.schema, spec.columns), vector_meta(field).get("metric", "l2"))
            with self._lock:
                self._shapes[key] = shape
                while len(self._shapes) > 256:
                    self._shapes.popitem(last=False)
        field, columns, metric = shape
        query, _ = self._query_vector(snap, field, spec)
        if snap.branch is None:
            self.indexes.notice(snap.key, snap.name)
        return Prepared(snap, field.name, list(columns), query, metric, spec.k, spec.nprobes, spec.refine_factor)

    def search_prepared(self, batch: list[Prepared]) -> list[pa.Table]:
        """The hits of prepared queries that share their snapshot, column and parameters (``Prepared.key``),
        in one search of the index when the snapshot allows a batch."""
        first = batch[0]
        found = self.indexes.nearest_many(first.snap, first.column, [p.query for p in batch], first.k,
                                          metric=first.metric, nprobes=first.nprobes,
                                          refine_factor=first.refine_factor, columns=first.columns)
        return [hits_table(f, first.columns, first.metric) for f in found]

    def held(self, prepared: Prepared) -> bool:
        """Whether the index answers this query from memory (``app/store/resident.py``): a fraction of a
        millisecond, so the caller may search on its own thread."""
        p = prepared
        return self.indexes.held(p.snap, p.column, p.k, p.metric, p.nprobes, p.refine_factor)

    def _can_embed(self, field: pa.Field, kind: str) -> bool:
        """Whether the model a vector column records can embed a ``kind`` query (loads it if need be)."""
        model = vector_meta(field).get("model")
        if not model or (kind == "text" and model == "builtin"):
            return False
        try:
            return kind in self.registry.get(model).modalities
        except UnknownModel:
            return False

    def _filter(self, snap: Snapshot, text: str | None) -> tuple[str, int] | None:
        """The checked predicate and how many rows it keeps, once per snapshot and filter text
        (``check_filter`` plans it; the count decides between an exact and an indexed search)."""
        if text is None or not text.strip():
            return None
        key = (*snap.key, text)
        with self._lock:
            found = self._filters.get(key)
        if found is None:
            predicate = check_filter(snap, text)
            if predicate is None:
                return None
            with filter_errors(predicate):
                found = (predicate, snap.count(predicate))
            with self._lock:
                self._filters[key] = found
                while len(self._filters) > 256:
                    self._filters.popitem(last=False)
        return found

    def _query_vector(self, snap: Snapshot, field: pa.Field, spec: SearchSpec) -> tuple[np.ndarray, int | None]:
        dim = field.type.list_size
        if spec.vector is not None:
            if len(spec.vector) != dim:
                raise InvalidQuery(f"the query vector has {len(spec.vector)} values; column {field.name!r} "
                                   f"holds {dim}", expected=dim, got=len(spec.vector))
            with np.errstate(over="ignore"):
                query = np.asarray(spec.vector, np.float32)
            if not np.isfinite(query).all():
                raise InvalidQuery("the query vector's values must be finite 32-bit floats (at most about 3.4e38)")
            return query, None
        if spec.image_id is not None:
            row_id = self.reader.index(snap).row_id(spec.image_id)
            if row_id is None:
                raise NotFound(f"no row with id {spec.image_id!r}", id=spec.image_id)
            cell = snap.take([row_id], [field.name]).column(0)[0].as_py()
            if cell is None:
                raise InvalidQuery(f"row {spec.image_id!r} has no vector in column {field.name!r}")
            return np.asarray(cell, np.float32), row_id
        model = vector_meta(field).get("model")
        if not model:
            raise InvalidQuery(f"column {field.name!r} records no model, so only a vector can query it")
        try:
            embedder = self.registry.get(model)
        except UnknownModel as exc:
            raise InvalidQuery(f"the column's model cannot be loaded here: {exc}", model=model) from exc
        kind = "text" if spec.text is not None else "image"
        if kind not in embedder.modalities:
            raise InvalidQuery(f"model {model!r} does not embed {kind}; it embeds "
                               f"{', '.join(sorted(embedder.modalities))}", model=model)
        try:
            vectors = embedder.embed_texts([spec.text]) if kind == "text" else embedder.embed_images([spec.image])
        except ValueError as exc:
            raise Unprocessable(f"cannot embed the query {kind}: {exc}") from exc
        return vectors[0], None


def search_columns(schema: pa.Schema, asked: list[str] | None) -> list[str]:
    """The hits' columns: ``_distance`` always comes, and image bytes never do (a Lance take would
    answer the blob's internal descriptor); as with fetch, they are read from ``/rows/{id}/image``."""
    wanted = [c for c in asked if c != "_distance"] if asked else None
    if asked and not wanted:  # only the distance: the ids say whose
        return ["id"] if "id" in schema.names else []
    columns = [c for c in check_columns(schema, wanted) if not is_blob(schema.field(c))]
    return columns or (["id"] if "id" in schema.names else [])


def vector_column(schema: pa.Schema, name: str | None, kind: str | None = None,
                  can_embed: Callable[[pa.Field, str], bool] | None = None) -> pa.Field:
    """The vector column to search: the one named, the table's only one, or, for a text or image
    query, the only one whose model embeds that kind (a CLIP column beside a builtin one, for text)."""
    vectors = [f for f in schema if is_vector(f)]
    if name is not None:
        match = [f for f in vectors if f.name == name]
        if not match:
            raise NoVectors(f"{name!r} is not a vector column; vector columns: {[f.name for f in vectors]}")
        return match[0]
    if not vectors:
        raise NoVectors("this table has no vector column; add one with `lightbox embed`")
    if len(vectors) > 1 and kind is not None and can_embed is not None:
        fitting = [f for f in vectors if can_embed(f, kind)]
        if len(fitting) == 1:
            return fitting[0]
    if len(vectors) > 1:
        raise InvalidQuery(f"this table has several vector columns; say which: {[f.name for f in vectors]}")
    return vectors[0]


def hits_table(found: pa.Table, columns: list[str], metric: str) -> pa.Table:
    """Lance's answer as the API gives it: the asked columns, then ``_distance`` in the API's terms."""
    distances = _api_distance(found.column("_distance").to_numpy(zero_copy_only=False), metric)
    return found.select(columns).append_column("_distance", pa.array(distances.astype(np.float32)))


def _api_distance(distance: np.ndarray, metric: str) -> np.ndarray:
    """Lance's ``_distance`` as the API reports it: squared L2, or 1 - similarity for cosine and dot
    (Lance's dot distance is the negated product)."""
    distance = np.asarray(distance, np.float64)
    if metric == "dot":
        distance = 1.0 + distance
    return np.maximum(distance, 0.0)
