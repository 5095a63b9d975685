"""``GET /facets``: value counts and histograms that agree with ``/count`` under the same filter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import InProcess
from tests.helpers import assert_error


@pytest.fixture(scope="module")
def client(digits_root: Path) -> Iterator[httpx.Client]:
    app = InProcess(str(digits_root))
    yield app.http()
    app.close()


def count(client: httpx.Client, predicate: str) -> int:
    response = client.get("/api/v1/tables/digits/count", params={"filter": predicate})
    assert response.status_code == 200, response.text
    return response.json()["count"]


def test_default_facets_are_the_tables_own_low_cardinality_columns_first(client: httpx.Client) -> None:
    body = client.get("/api/v1/tables/digits/facets").json()
    assert body["count"] == 200
    columns = [f["column"] for f in body["facets"]]
    assert columns[:3] == ["label", "split", "ink"]  # the table's columns before mime, width, ...
    assert "id" not in columns and "sha256" not in columns and "vector" not in columns
    by_name = {f["column"]: f for f in body["facets"]}
    assert by_name["label"]["kind"] == "values" and by_name["ink"]["kind"] == "histogram"
    assert sum(v["count"] for v in by_name["label"]["values"]) == 200


@pytest.mark.parametrize("where", [None, "split = 'train'", "label > 4 AND ink > 3"])
def test_every_count_equals_the_count_api(client: httpx.Client, where: str | None) -> None:
    params = {"filter": where} if where else {}
    body = client.get("/api/v1/tables/digits/facets", params=params).json()
    scope = f"({where}) AND " if where else ""
    assert body["count"] == count(client, where or "true")
    for facet in body["facets"]:
        column = facet["column"]
        if facet["kind"] == "values":
            for item in facet["values"]:
                value = item["value"]
                literal = f"'{value}'" if isinstance(value, str) else str(value)
                assert item["count"] == count(client, f"{scope}{column} = {literal}"), (column, value)
        else:
            assert facet["bins"], column
            for b in facet["bins"]:
                upper = "<=" if b["closed"] else "<"
                predicate = f"{scope}{column} >= {b['lo']} AND {column} {upper} {b['hi']}"
                assert b["count"] == count(client, predicate), (column, b)
            assert sum(b["count"] for b in facet["bins"]) + facet["nulls"] + facet["nan"] == body["count"]


def test_named_columns_integer_bins_and_refusals(client: httpx.Client) -> None:
    body = client.get("/api/v1/tables/digits/facets",
                      params={"columns": ["width", "id"], "max_values": 3, "bins": 4}).json()
    width, ids = body["facets"]
    assert width["kind"] == "values" and width["values"] == [{"value": 8, "count": 200}]
    assert len(ids["values"]) == 3 and ids["other"] == 197  # named: counted even when every value differs
    sizes = client.get("/api/v1/tables/digits/facets", params={"columns": ["size_bytes"], "max_values": 1}).json()
    bins = sizes["facets"][0]["bins"]
    assert all(isinstance(b["lo"], int) and isinstance(b["hi"], int) for b in bins)  # whole-number edges
    assert_error(client.get("/api/v1/tables/digits/facets", params={"columns": ["vector"]}), 400)
    assert_error(client.get("/api/v1/tables/digits/facets", params={"columns": ["nope"]}), 400)
    bad = client.get("/api/v1/tables/digits/facets", params={"filter": "label = 'x'"})
    assert "column 'label' holds int64 values" in assert_error(bad, 400, "invalid_filter")["message"]
    old = client.get("/api/v1/tables/digits/facets", params={"tag": "v1", "filter": "label = 1"}).json()
    assert old["count"] == count(client, "label = 1")



def test_the_sdk_reads_the_same_facets(digits_root: Path) -> None:
    app = InProcess(str(digits_root))
    try:
        t = app.sdk().table("digits")
        got = t.facets("split = 'test'", ["label", "split"], max_values=5)
        assert got["count"] == t.count("split = 'test'")
        label, split = got["facets"]
        assert split["values"] == [{"value": "test", "count": got["count"]}]
        # ten labels are more than max_values: an integer column is binned then
        assert label["kind"] == "histogram" and sum(b["count"] for b in label["bins"]) == got["count"]
        assert t.at(tag="v1").facets(columns=["split"])["count"] == 200
    finally:
        app.close()


def test_floats_with_nan_and_infinity_are_binned_without_them(tmp_path: Path) -> None:
    import math

    import lance
    import pyarrow as pa

    from app.store import Store

    store = Store(str(tmp_path / "data"))
    rows = pa.table({"id": ["a", "b", "c", "d"], "score": [0.5, math.nan, math.inf, 2.0]})
    store.create("f", rows.schema)
    lance.write_dataset(rows, store.table_uri("f"), mode="append")
    app = InProcess(str(tmp_path / "data"))
    try:
        facet = app.http().get("/api/v1/tables/f/facets", params={"columns": ["score"]}).json()["facets"][0]
    finally:
        app.close()
    assert facet["kind"] == "histogram" and facet["nan"] == 2 and (facet["min"], facet["max"]) == (0.5, 2.0)
    assert sum(b["count"] for b in facet["bins"]) == 2
