"""Similarity search: by vector, text, an uploaded image, or "more like this" row.

The query is embedded with the model recorded on the vector column, so text and images are
embedded exactly as the column was. A filter is applied before the search (the ANN index is
restricted to matching rows), so a filtered search keeps its recall.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from app.errors import BadRequest, NotFound, Unprocessable
from app.filters import check_filter, filter_errors
from app.services.query import check_columns
from app.store import Ref, RowReader, Snapshot, Store
from app.store.ann import AnnCache
from app.store.schema import is_blob, is_vector, vector_meta
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


class Searcher:
    """Owns the ANN indexes and filter results; one per service."""

    def __init__(self, store: Store, reader: RowReader, registry: Registry, ann: AnnCache | None = None) -> None:
        self.store, self.reader, self.registry = store, reader, registry
        self.ann = ann or AnnCache()
        self._filters: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def search(self, name: str, ref: Ref, spec: SearchSpec) -> tuple[Snapshot, pa.Table]:
        kinds = [k for k in ("vector", "text", "image_id", "image") if getattr(spec, k) not in (None, b"", "")]
        if len(kinds) != 1:
            raise InvalidQuery("give exactly one of vector, text, image_id or an image upload"
                               + (f"; got {', '.join(kinds)}" if kinds else ""))
        if not 1 <= spec.k <= MAX_K:
            raise InvalidQuery(f"k must be between 1 and {MAX_K}")
        snap = self.store.snapshot(name, ref)
        schema = snap.ds.schema
        kind = "text" if spec.text is not None else "image" if spec.image else None
        field = vector_column(schema, spec.column, kind, self._can_embed)
        columns = search_columns(schema, spec.columns)
        allowed = self._allowed(snap, spec.filter)
        query, exclude = self._query_vector(snap, field, spec)
        meta = vector_meta(field)
        index = self.ann.get(snap.key, snap.ds, field.name, meta.get("metric", "l2"))
        want = spec.k + (1 if exclude is not None else 0)
        selectivity = len(allowed) / max(1, index.size) if allowed is not None else 1.0
        row_ids, distances = index.search(query, want, allowed=allowed, nprobes=spec.nprobes,
                                          selectivity=selectivity)
        if exclude is not None:
            keep = row_ids != exclude
            row_ids, distances = row_ids[keep][: spec.k], distances[keep][: spec.k]
        return snap, self._rows(snap, schema, columns, row_ids).append_column(
            "_distance", pa.array(distances.astype(np.float32)))

    def _can_embed(self, field: pa.Field, kind: str) -> bool:
        """Whether the model a vector column records can embed a ``kind`` query (loads it if need be)."""
        model = vector_meta(field).get("model")
        if not model or (kind == "text" and model == "builtin"):
            return False
        try:
            return kind in self.registry.get(model).modalities
        except UnknownModel:
            return False

    def _rows(self, snap: Snapshot, schema: pa.Schema, columns: list[str], row_ids: np.ndarray) -> pa.Table:
        """The hits' columns: ids straight from the id map when that is all that was asked (a take
        costs about as much as the whole ANN search), otherwise one Lance take."""
        if not len(row_ids):
            return _empty(schema, columns)
        if columns == ["id"]:
            index = self.reader.index(snap)
            return pa.table({"id": pa.array(index.ids_of(row_ids.tolist()), pa.string())})
        return snap.ds._take_rows(row_ids.tolist(), columns=columns)

    def _allowed(self, snap: Snapshot, text: str | None) -> np.ndarray | None:
        """Row ids the filter keeps; a filter is checked (``check_filter``) once, when first cached."""
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
                table = snap.ds.to_table(columns=[], filter=predicate, with_row_id=True)
            found = table.column("_rowid").to_numpy().astype(np.uint64)
            with self._lock:
                self._filters[key] = found
                while len(self._filters) > 64:
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
            cell = snap.ds._take_rows([row_id], columns=[field.name]).column(0)[0].as_py()
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


def _empty(schema: pa.Schema, columns: list[str]) -> pa.Table:
    return pa.schema([schema.field(c) for c in columns]).empty_table()
