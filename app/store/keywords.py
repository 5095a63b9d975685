"""Full-text search on Lance's own inverted (``INVERTED``/``FTS``) indexes: build, fold, search.

A keyword query arrives here as a small tree (``Keywords``: words and phrases, each should, must or
must not match) that the services parsed from the user's text; it becomes Lance's query objects
(``MatchQuery``, ``PhraseQuery``, ``MultiMatchQuery``, ``BooleanQuery``) only here, so the engine's API
stays inside ``app.store``. Lance ranks the hits by BM25 and answers each with its ``_score``.

What the engine does, checked on pylance 14 (so nothing is rebuilt here):
- rows appended after the index was last built or folded are searched by a flat pass over their
  fragments and merged with the indexed hits (phrases too); deleted and updated rows are masked out,
  so a search is right at once after any write, and the keeper's fold only makes it faster;
- a pinned version searches with the index its manifest records (an old tag with the index it had); a
  column with no index in that version is searched by the same flat pass;
- a filter with ``prefilter=True`` is applied before the ranking, so a filter never starves the top k;
- phrases need the token positions (``with_position=True``, which Lightbox indexes by default); an
  index without them refuses a phrase with a ``ValueError`` ("position is not found").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lance
import pyarrow as pa
from lance.query import BooleanQuery, FullTextQuery, MatchQuery, MultiMatchQuery, Occur, PhraseQuery

__all__ = ["FTS_TYPES", "TOKENIZER_OPTIONS", "Keywords", "Part", "build_text_index", "fold_text_indexes",
           "is_text", "search_keywords", "text_indexes"]

FTS_TYPES = {"FTS", "INVERTED"}  # what a caller may ask for; Lance lists the index as "Inverted"
# Tokenizer settings a caller may give when creating an index (Lance's names and meanings)
TOKENIZER_OPTIONS = ("with_position", "base_tokenizer", "language", "max_token_length", "lower_case", "stem",
                     "remove_stop_words", "custom_stop_words", "ascii_folding")


@dataclass(frozen=True)
class Part:
    """One word group or phrase of a query, and whether it should, must or must not match."""

    text: str
    phrase: bool = False
    occur: str = "should"  # "should" | "must" | "must_not"


@dataclass(frozen=True)
class Keywords:
    """A parsed keyword query over ``columns`` (each with a full-text index, or searched flat)."""

    parts: tuple[Part, ...]
    columns: tuple[str, ...] = field(default_factory=tuple)


def is_text(field_: pa.Field) -> bool:
    """Whether an inverted index can hold the column: strings, or lists of strings."""
    kind = field_.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def text_indexes(ds: lance.LanceDataset) -> dict[str, str]:
    """``{column: index name}`` of a version's full-text indexes."""
    return {i["fields"][0]: i["name"] for i in ds.list_indices()
            if i["type"].upper() in FTS_TYPES and len(i["fields"]) == 1}


def build_text_index(ds: lance.LanceDataset, column: str, name: str, options: dict[str, Any]) -> None:
    """Build (or replace) ``name``, an inverted index on ``column`` (one new version). Positions are
    kept unless asked otherwise, so phrase queries work."""
    given = {k: options[k] for k in TOKENIZER_OPTIONS if options.get(k) is not None}
    ds.create_scalar_index(column, "INVERTED", name=name, replace=True, **{"with_position": True, **given})


def fold_text_indexes(ds: lance.LanceDataset) -> list[str]:
    """Fold the rows a version's full-text indexes do not cover yet into them (one new version when
    there were any); the names of the indexes folded."""
    stale = [name for name in text_indexes(ds).values()
             if int(ds.stats.index_stats(name).get("num_unindexed_rows", 0))]
    if stale:
        ds.optimize.optimize_indices(index_names=stale)
    return stale


def search_keywords(ds: lance.LanceDataset, query: Keywords, *, columns: Sequence[str], limit: int,
                    offset: int = 0, predicate: str | None = None) -> pa.Table:
    """The best ``limit`` rows after ``offset`` by BM25: ``columns`` plus ``_rowid`` and ``_score``."""
    return ds.to_table(columns=[*columns, "_score"], full_text_query=lance_query(query), filter=predicate,
                       prefilter=predicate is not None, limit=limit, offset=offset or None, with_row_id=True)


def lance_query(query: Keywords) -> FullTextQuery:
    """The tree as Lance's query objects: a lone part as itself, several in a boolean query."""
    clauses = [(Occur[part.occur.upper()], _part_query(part, query.columns)) for part in query.parts]
    if len(clauses) == 1 and clauses[0][0] is Occur.SHOULD:
        return clauses[0][1]
    return BooleanQuery(clauses)


def _part_query(part: Part, columns: Sequence[str]) -> FullTextQuery:
    if part.phrase:
        phrases: list[FullTextQuery] = [PhraseQuery(part.text, c) for c in columns]
        return phrases[0] if len(phrases) == 1 else BooleanQuery([(Occur.SHOULD, q) for q in phrases])
    return MatchQuery(part.text, columns[0]) if len(columns) == 1 else MultiMatchQuery(part.text, list(columns))
