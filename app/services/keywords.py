"""Keyword search: the query grammar, the columns it may search, and the search itself.

The grammar is a search box's (it is the same in REST, the SDK, the command line and the gallery):

- ``red cat``: rows with any of the words, best first (BM25: rarer words and shorter texts weigh more);
- ``"red cat"``: the phrase, words in that order;
- ``+red``, ``+"red cat"``: must match; ``-dog``, ``-"blue dog"``: must not.

A query is at most ``MAX_KEYWORDS_CHARS`` characters. Words are tokenized as the column's index was
(lower-cased, stemmed, stop words dropped, accents folded, by default), so ``Cats`` finds ``cat``.

A column is searched when it has a full-text index in the version asked for, or in main's latest (an
old version from before the index is searched by a flat pass: the engine's, like rows the index does not
cover yet). A column with neither is refused (400), naming the indexed and the indexable columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from app.errors import BadRequest
from app.filters import check_filter, filter_errors, lance_reason
from app.store import Ref, Snapshot, Store
from app.store.keywords import Keywords, Part, is_text

__all__ = ["MAX_KEYWORDS_CHARS", "KeywordSpec", "NoTextIndex", "keyword_search", "parse_keywords",
           "searchable_columns"]

MAX_KEYWORDS_CHARS = 1000
# a quoted phrase (closed), or a run of anything else; either may carry a leading + or -
_TOKEN = re.compile(r'([+-]?)(?:"([^"]*)"|([^\s"]+))')


class InvalidKeywords(BadRequest):
    code = "invalid_keywords"


class NoTextIndex(BadRequest):
    code = "no_text_index"


@dataclass
class KeywordSpec:
    keywords: str
    columns: list[str] | None = None  # the text columns searched (default: every one with a full-text index)
    k: int = 10
    offset: int = 0
    filter: str | None = None


def parse_keywords(text: str) -> list[Part]:
    """The query's parts: plain words as one "any of these" part, each phrase and each ``+``/``-`` term
    its own. Refuses (400) an empty query, one over the length limit, unbalanced quotes, and one that
    only excludes."""
    if not text.strip():
        raise InvalidKeywords("the keyword query is empty; give words, \"a phrase\", +required or -excluded")
    if len(text) > MAX_KEYWORDS_CHARS:
        raise InvalidKeywords(f"the keyword query has {len(text)} characters; the limit is {MAX_KEYWORDS_CHARS}",
                              limit=MAX_KEYWORDS_CHARS)
    if text.count('"') % 2:
        raise InvalidKeywords('the keyword query has an unbalanced quote: close each "phrase"')
    words: list[str] = []
    parts: list[Part] = []
    for sign, phrase, word in _TOKEN.findall(text):
        body = (phrase if phrase else word).strip()
        if not body.strip("+-"):
            continue  # a lone sign, or an empty phrase
        occur = {"+": "must", "-": "must_not"}.get(sign, "should")
        if occur == "should" and not phrase:
            words.append(body)
        else:
            parts.append(Part(body, phrase=bool(phrase), occur=occur))
    if words:
        parts.insert(0, Part(" ".join(words)))
    if not any(p.occur != "must_not" for p in parts):
        raise InvalidKeywords("the keyword query only excludes; give at least one word or phrase to find")
    return parts


def searchable_columns(store: Store, snap: Snapshot, asked: list[str] | None) -> list[str]:
    """The text columns a keyword query searches at ``snap``: those asked, each with a full-text index
    here or in main's latest; by default every such column."""
    indexed = set(snap.text_indexes()) | _latest_indexed(store, snap)
    present = [c for c in snap.schema.names if c in indexed]
    texts = [f.name for f in snap.schema if is_text(f)]
    if not asked:
        if not present:
            raise NoTextIndex(f"this table has no full-text index; create one on a text column {texts} "
                              "(POST .../indexes with type FTS, or `lightbox index TABLE create COLUMN --type FTS`)",
                              indexable_columns=texts)
        return present
    for column in asked:
        if column not in snap.schema.names:
            raise BadRequest(f"unknown column {column!r}; full-text indexed columns: {present}", column=column)
        if column not in indexed:
            raise NoTextIndex(f"column {column!r} has no full-text index; indexed columns: {present}, indexable "
                              f"(text) columns: {texts}", column=column, indexed_columns=present,
                              indexable_columns=texts)
    return list(dict.fromkeys(asked))


def _latest_indexed(store: Store, snap: Snapshot) -> set[str]:
    if snap.branch is None and snap.version == store.snapshot(snap.name).version:
        return set()
    return set(store.snapshot(snap.name).text_indexes())


def keyword_search(store: Store, name: str, ref: Ref, spec: KeywordSpec, columns: list[str],
                   snap: Snapshot | None = None) -> tuple[Snapshot, pa.Table]:
    """The best ``k`` rows after ``offset`` (BM25, ``_score`` descending): ``columns``, ``_rowid``, ``_score``."""
    snap = snap or store.snapshot(name, ref)
    parts = parse_keywords(spec.keywords)
    query = Keywords(tuple(parts), tuple(searchable_columns(store, snap, spec.columns)))
    predicate = check_filter(snap, spec.filter) if spec.filter and spec.filter.strip() else None
    with filter_errors(predicate):
        try:
            hits = snap.keyword_search(query, columns, limit=spec.k, offset=spec.offset, predicate=predicate)
        except ValueError as exc:
            if "position" in str(exc):  # an index built without positions cannot answer a phrase
                raise InvalidKeywords("a phrase needs a full-text index built with positions (with_position); "
                                      "rebuild the index, or search the words unquoted") from exc
            if "invalid user input" in str(exc).lower():
                raise InvalidKeywords(f"the keyword query cannot run: {lance_reason(exc)}") from exc
            raise
    return snap, hits
