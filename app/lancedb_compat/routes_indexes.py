"""Indexes: create (vector and scalar), list, stats."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request

from app.deps import StoreDep
from app.errors import BadRequest, IndexNotFound
from app.lancedb_compat.fields import CreateIndexBody, IndexStatsBody, ListIndexesBody
from app.lancedb_compat.request import body_ref, str_field, table_name
from app.lancedb_compat.routing import compat_router, table_route
from app.responses import JSON
from app.services import maintenance
from app.store.keywords import FTS_TYPES, TOKENIZER_OPTIONS

router = compat_router()
Delimiter = Annotated[str | None, Query()]
# Lance's names for index kinds -> the names the clients parse (lancedb's IndexType)
TYPE_NAMES = {"btree": "BTREE", "bitmap": "BITMAP", "labellist": "LABEL_LIST", "inverted": "FTS", "fts": "FTS",
              "ngram": "NGRAM", "zonemap": "ZONEMAP", "bloomfilter": "BLOOM_FILTER", "rtree": "RTREE"}
REQUEST_TYPES = {"BLOOM_FILTER": "BLOOMFILTER", "SCALAR": "BTREE"}
PARAMS = ("num_partitions", "num_sub_vectors", "num_bits")


def client_type(lance_type: str) -> str:
    key = lance_type.replace("_", "").lower()
    return TYPE_NAMES.get(key, lance_type.upper())


@table_route(router, "create_index")
@table_route(router, "create_scalar_index")
def create_index(table_id: str, request: Request, store: StoreDep, body: CreateIndexBody,
                 delimiter: Delimiter = None) -> JSON:
    name = table_name(table_id, delimiter)
    column = str_field(body, "column")
    if not column:
        raise BadRequest("give the column to index in 'column'")
    if str_field(body, "branch"):  # never build on main what was asked of a branch
        raise BadRequest("create_index builds on main's latest version; indexes of a branch are not built here",
                         branch=body["branch"])
    scalar = request.url.path.rstrip("/").endswith("create_scalar_index")
    kind = (str_field(body, "index_type") or ("BTREE" if scalar else "IVF_PQ")).upper()
    kind = REQUEST_TYPES.get(kind, kind)
    return JSON(maintenance.create_index(store, name, column, kind, _params(body, kind, column),
                                         replace=body.get("replace") is not False, sized_defaults=True))


def _params(body: dict[str, Any], kind: str, column: str) -> dict[str, Any]:
    params: dict[str, Any] = {k: body[k] for k in PARAMS if body.get(k) is not None}
    if kind in FTS_TYPES:  # the client's FTS settings (positions off unless asked, as in LanceDB)
        params.update({k: body[k] for k in TOKENIZER_OPTIONS if body.get(k) is not None})
        params["name"] = f"{column}_idx"  # LanceDB's default name
    given = {"name": str_field(body, "name"),
             "metric": str_field(body, "metric_type") or str_field(body, "distance_type")}
    params.update({k: v for k, v in given.items() if v is not None})
    return params


@table_route(router, "index/{index_name}/drop")
def drop_index(table_id: str, index_name: str, store: StoreDep, delimiter: Delimiter = None) -> JSON:
    return JSON(maintenance.drop_index(store, table_name(table_id, delimiter), index_name))


def _indexes(store: StoreDep, name: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    return maintenance.list_indexes(store, None, name, body_ref(body))[1]


@table_route(router, "index/list")
def list_indexes(table_id: str, store: StoreDep, body: ListIndexesBody, delimiter: Delimiter = None) -> JSON:
    indexes = _indexes(store, table_name(table_id, delimiter), body)
    return JSON({"indexes": [
        {"index_name": i["name"], "index_uuid": i["name"], "columns": i["columns"], "status": "done",
         "index_type": client_type(i["type"]), "num_indexed_rows": i["num_indexed_rows"],
         "num_unindexed_rows": i["num_unindexed_rows"]} for i in indexes], "page_token": None})


@table_route(router, "index/{index_name}/stats")
def index_stats(table_id: str, index_name: str, store: StoreDep, body: IndexStatsBody,
                delimiter: Delimiter = None) -> JSON:
    for i in _indexes(store, table_name(table_id, delimiter), body):
        if i["name"] == index_name:
            return JSON({"index_type": client_type(i["type"]), "num_indexed_rows": i["num_indexed_rows"],
                         "num_unindexed_rows": i["num_unindexed_rows"], "num_indices": 1})
    raise IndexNotFound(f"no index named {index_name!r}", index=index_name)
