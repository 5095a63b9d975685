"""The JSON body fields each LanceDB operation accepts; any other field is a 422 ``unknown_field``.

A field the server does not know must never be dropped quietly: ``{"predicte": "label = 3"}`` to
``count_rows`` would count every row, ``{"filtr": ...}`` to ``query`` would answer unfiltered rows.
The lists are what the official clients send (the Rust core behind lancedb 0.40.0 for Python and
the TypeScript client: ``rust/lancedb/src/remote/table.rs``, captured from the Python client on the
wire) and the Lance REST Namespace spec's request models (``lance_namespace_urllib3_client``); they are
listed in ``docs/http.md``. Fields a client sends that Lightbox has no use for (``prefilter``: filters
always apply first; ``ef``; FTS tokenizer options) are accepted and have no effect.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from app.lancedb_compat.request import json_body
from app.models import check_fields

# every namespace-spec request carries these; the clients add "version" and "branch" to reads
COMMON = ("id", "identity", "context")
READ = (*COMMON, "version", "branch", "tag")
DESCRIBE = (*READ, "with_table_uri", "load_detailed_metadata", "check_declared", "vend_credentials")
COUNT_ROWS = (*READ, "predicate")
QUERY = (*READ, "vector", "k", "filter", "prefilter", "columns", "offset", "with_row_id", "fast_search",
         "distance_type", "vector_column", "bypass_vector_index", "nprobes", "minimum_nprobes", "maximum_nprobes",
         "lower_bound", "upper_bound", "ef", "refine_factor", "full_text_query", "order_by", "approx_mode", "use_lsm")
VECTOR_INDEX = ("metric_type", "distance_type", "num_partitions", "num_sub_vectors", "num_bits", "sample_rate",
                "max_iterations", "target_partition_size", "m", "ef_construction")
FTS_INDEX = ("with_position", "base_tokenizer", "language", "max_token_length", "lower_case", "stem",
             "remove_stop_words", "ascii_folding", "custom_stop_words", "block_size", "min_ngram_length",
             "max_ngram_length", "prefix_only", "lance_tokenizer", "preserve_original", "split_identifiers",
             "split_on_numerics", "index_operators")
CREATE_INDEX = (*COMMON, "branch", "column", "index_type", "name", "replace", *VECTOR_INDEX, *FTS_INDEX)
LIST_INDEXES = (*READ, "page_token", "limit")
INDEX_STATS = (*READ, "index_name")
LIST_VERSIONS = (*COMMON, "branch", "page_token", "limit", "descending")
LIST_TAGS = (*COMMON, "page_token", "limit")
TAG = (*COMMON, "tag", "version", "branch")
RESTORE = (*COMMON, "version", "branch", "tag")
DELETE = (*COMMON, "branch", "predicate")
UPDATE = (*COMMON, "branch", "predicate", "updates", "properties")

# each operation's fields, by its path under /v1/table/{table_id}/ (the OpenAPI document declares them too)
OPERATIONS = {
    "describe": DESCRIBE, "exists": READ, "stats": READ, "count_rows": COUNT_ROWS, "query": QUERY,
    "create_index": CREATE_INDEX, "create_scalar_index": CREATE_INDEX, "index/list": LIST_INDEXES,
    "index/{index_name}/stats": INDEX_STATS, "version/list": LIST_VERSIONS, "tags/list": LIST_TAGS,
    "tags/create": TAG, "tags/update": TAG, "tags/delete": TAG, "tags/version": TAG, "restore": RESTORE,
    "delete": DELETE, "update": UPDATE,
}

# words a client may reach for that no close match finds
HINTS = {"where": "predicate", "filter": "predicate", "values": "updates", "set": "updates"}
QUERY_HINTS = {"where": "filter", "predicate": "filter", "limit": "k", "select": "columns", "top_k": "k"}
INDEX_HINTS = {"type": "index_type", "metric": "metric_type", "index_name": "name", "kind": "index_type"}


def body_of(fields: tuple[str, ...], hints: dict[str, str] | None = None) -> Any:
    """A route parameter: the JSON body, its fields checked against ``fields`` (422 for any other)."""

    async def checked(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        check_fields(body, list(fields), HINTS if hints is None else hints)
        return body

    return Annotated[dict[str, Any], Depends(checked)]


ReadBody = body_of(READ)
DescribeBody = body_of(DESCRIBE)
CountBody = body_of(COUNT_ROWS)
QueryBody = body_of(QUERY, QUERY_HINTS)
CreateIndexBody = body_of(CREATE_INDEX, INDEX_HINTS)
ListIndexesBody = body_of(LIST_INDEXES)
IndexStatsBody = body_of(INDEX_STATS)
ListVersionsBody = body_of(LIST_VERSIONS)
ListTagsBody = body_of(LIST_TAGS)
TagBody = body_of(TAG)
RestoreBody = body_of(RESTORE)
DeleteBody = body_of(DELETE)
UpdateBody = body_of(UPDATE)
