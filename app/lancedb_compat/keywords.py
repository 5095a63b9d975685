"""A query body's ``full_text_query``: the LanceDB clients' ``query_type="fts"``, on the keyword service.

The clients send ``{"columns": [...], "query": "words"}`` (``columns`` empty: every full-text indexed
column) with ``"vector": []``; the query string has the native grammar (``"a phrase"`` is what the
client's ``phrase_query()`` sends), so the answers are the native ones. Hits come back BM25-ranked with
``_score``, and ``_rowid`` (stable row ids) when asked: the client's hybrid search sends a vector query
and this one, both ``with_row_id``, and fuses them itself on ``_rowid``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from app.errors import BadRequest
from app.filters import META_COLUMNS
from app.services.keywords import KeywordSpec, keyword_search
from app.services.query import check_columns
from app.services.search import MAX_K
from app.store import Ref, RowReader, Snapshot, Store
from app.store.schema import is_blob

__all__ = ["full_text", "run_keywords"]


def full_text(raw: Any) -> tuple[str, list[str] | None] | None:
    """The query string and the columns asked (None: every indexed column), or None without one."""
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("query"), str):
        raise BadRequest('full_text_query must be {"query": "words", "columns": [...]}: a structured query is '
                         "not served; send its words as a query string")
    columns = raw.get("columns") or None
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
        raise BadRequest("full_text_query.columns must be a list of column names")
    return raw["query"], columns


def run_keywords(store: Store, name: str, ref: Ref, words: tuple[str, list[str] | None], *, k: int | None,
                 offset: int, filter: str | None, columns: list[str] | None, names: list[str] | None,
                 with_row_id: bool) -> tuple[Snapshot, pa.Table]:
    """The answer: the columns asked (all by default, blob cells as bytes) renamed, then ``_score``."""
    snap = store.snapshot(name, ref)
    wanted = [c for c in (columns if columns is not None else snap.schema.names) if c not in ("_score", "_rowid")]
    unknown = [c for c in wanted if c in META_COLUMNS]
    if unknown:
        raise BadRequest(f"a full-text query can return _rowid and _score, not {unknown}")
    if wanted:
        check_columns(snap.schema, wanted)  # unknown columns are a 400
    blobs = [c for c in wanted if is_blob(snap.schema.field(c))]
    fetch = [c for c in wanted if c not in blobs]
    spec = KeywordSpec(words[0], words[1], min(k or MAX_K, MAX_K), offset, filter)
    snap, hits = keyword_search(store, name, ref, spec, fetch, snap=snap)
    row_ids = hits.column("_rowid").to_pylist()
    out = {c: hits.column(c) for c in fetch}
    for c in blobs:
        out[c] = pa.array(RowReader.blobs(snap, row_ids, c), pa.large_binary())
    renamed = dict(zip(columns or [], names or [], strict=True))
    table = {renamed.get(c, c): out[c] for c in wanted}
    table["_score"] = hits.column("_score")
    if with_row_id or (columns is not None and "_rowid" in columns):
        table["_rowid"] = hits.column("_rowid")
    return snap, pa.table(table)
