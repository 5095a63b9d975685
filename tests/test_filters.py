"""Filters: the validator on its own, then through POST /query and GET /count of the service's app.

Every bad filter must be a 400 ``invalid_filter`` that names the problem (never a 500), and every
valid filter must return exactly the rows a plain Python/pyarrow computation over the same data
(read back from Lance directly) says it should.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import lance
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from app.errors import BadRequest
from app.filters import MAX_DEPTH, MAX_LENGTH, InvalidFilter, validate_filter
from app.store import Store
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import InProcess

SCHEMA = pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("label", pa.int64()),
    pa.field("split", pa.string()),
    pa.field("ink", pa.float64()),
    pa.field("flag", pa.bool_()),
    pa.field("tags", pa.list_(pa.string())),
    pa.field("meta", pa.struct([("a", pa.int64()), ("b", pa.string())])),
    pa.field("ts", pa.timestamp("us", tz="UTC")),
    pa.field("my col", pa.int64()),
])

# -- the validator alone ------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "label = 3",
    "label = 3 AND split = 'train'",
    "label <> 3 OR NOT (ink > 0.5)",
    "label IN (1, 2, 3)",
    "label NOT IN (1, 2)",
    "label BETWEEN 2 AND 5",
    "label NOT BETWEEN 2 AND 5",
    "split LIKE 'tr%'",
    "split NOT ILIKE 'TR%'",
    "split IS NULL",
    "split IS NOT NULL",
    "flag",
    "NOT flag",
    "flag IS TRUE",
    "flag = false",
    "label % 2 = 0",
    "-label < -3",
    "label + 1 >= 2 * ink",
    "meta.a = 1",
    "tags[1] = 'x'",
    "array_has(tags, 'x')",
    "starts_with(split, 'tr')",
    "upper(split) = 'TRAIN'",
    "ts > TIMESTAMP '2024-01-01 00:00:00'",
    "CAST(label AS BOOLEAN)",
    "CAST(ink AS DECIMAL(10, 2)) > 1",
    "`my col` = 1",
    "split = \"train\"",
    "split = 'it''s'",
    "_rowid < 10",
    "TRUE",
    "NOT NOT flag",
    "((((label = 1))))",
])
def test_valid_filters_pass_unchanged(text: str) -> None:
    assert validate_filter(text, SCHEMA) == text


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t"])
def test_empty_filter_means_no_filter(text: str | None) -> None:
    assert validate_filter(text, SCHEMA) is None


def rejected(text: str) -> InvalidFilter:
    with pytest.raises(InvalidFilter) as info:
        validate_filter(text, SCHEMA)
    error = info.value
    assert isinstance(error, BadRequest) and error.status == 400 and error.code == "invalid_filter"
    return error


def test_unknown_column_is_named_with_a_suggestion() -> None:
    error = rejected("lable = 3 AND split = 'train'")
    assert "unknown column 'lable'" in error.message
    assert "did you mean 'label'?" in error.message
    assert error.detail["column"] == "lable" and error.detail["position"] == 0
    assert "label" in error.detail["columns"]
    far = rejected("split = 'a' OR zzzzz > 1")
    assert "unknown column 'zzzzz'" in far.message and "did you mean" not in far.message
    assert far.detail["position"] == len("split = 'a' OR ")
    nested = rejected("meta.c = 1")
    assert "'meta.c'" in nested.message and "does not exist" in nested.message
    assert "unknown column 'my'" in rejected("my col = 1").message  # needs backticks
    assert "unknown column 'train'" in rejected("split = train").message


@pytest.mark.parametrize(("text", "words"), [
    ("label =", "expected a value or a column at position 7, found 'end of filter'"),
    ("label = = 3", "position 8"),
    ("(label = 3", "expected ')'"),
    ("label IN (1, 2", "expected ')'"),
    ("label IN 1", "expected '('"),
    ("label BETWEEN 1", "expected 'AND'"),
    ("label IS 3", "expected NULL, TRUE or FALSE after IS"),
    ("label NOT 3", "unexpected 'NOT' at position 6"),
    ("split = 'unterminated", "unexpected character \"'\" at position 8"),
    ("label = 3 AND", "found 'end of filter'"),
    ("label @ 3", "unexpected character '@'"),
    ("label = 3 /* no */", "comments are not allowed"),
    ("label = 1 --1", "comments are not allowed"),
    ("CAST(label AS) = 1", "expected a type name"),
    ("AS = 1", "unexpected keyword AS"),
])
def test_syntax_errors_say_what_and_where(text: str, words: str) -> None:
    assert words in rejected(text).message


@pytest.mark.parametrize(("text", "words"), [
    ("label", "filter must be a boolean expression"),
    ("label + 1", "filter must be a boolean expression"),
    ("'train'", "filter must be a boolean expression"),
    ("3", "filter must be a boolean expression"),
    ("-flag", "filter must be a boolean expression"),
    ("label = 3 AND ink", "the operands of AND must be boolean expressions"),
    ("ink OR flag", "the operands of OR must be boolean expressions"),
    ("NOT label", "the operands of NOT must be boolean expressions"),
])
def test_non_boolean_expressions_are_refused(text: str, words: str) -> None:
    assert words in rejected(text).message


@pytest.mark.parametrize("text", [
    "label = 3 split = 'train'",
    "label = 3)",
    "label = 3 4",
    "flag flag",
    "label = 3 ORDER BY label",
])
def test_trailing_garbage_is_refused(text: str) -> None:
    error = rejected(text)
    assert "a filter is one expression" in error.message
    assert error.detail["position"] > 0


HOSTILE = {
    "statement": "1=1; DROP TABLE x",
    "injection": "' OR 1=1 --",
    "union": "label = 1 UNION SELECT * FROM x",
    "huge": "label = 1 OR " * 7_700 + "label = 1",
    "parens": "(" * 1000 + "label = 1" + ")" * 1000,
    "nul": "label = 1\x00 OR TRUE",
    "calls": "abs(" * 1000 + "label" + ")" * 1000 + " = 1",
    "casts": "CAST(" * 1000 + "label" + " AS INT)" * 1000 + " = 1",
    "subscripts": "tags[" * 2000 + "1" + "]" * 2000 + " = 'x'",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_filters_are_refused(name: str) -> None:
    text = HOSTILE[name]
    assert len(HOSTILE["huge"]) > 100_000
    error = rejected(text)
    if name in ("parens", "calls", "casts", "subscripts"):
        assert f"nested more than {MAX_DEPTH} levels" in error.message or "characters long" in error.message
    if name == "huge":
        assert f"the limit is {MAX_LENGTH}" in error.message
    if name == "nul":
        assert "NUL" in error.message


def test_long_chains_of_prefix_operators_do_not_exhaust_the_stack() -> None:
    # thousands of NOTs or minus signs within the length limit: a loop, not a RecursionError
    assert validate_filter("NOT " * 3_000 + "flag", SCHEMA) is not None
    assert validate_filter("- " * 4_000 + "1 = 1", SCHEMA) is not None
    assert "comments are not allowed" in rejected("-" * 8_000 + "1 = 1").message  # `--` starts a comment
    assert "operands of NOT" in rejected("NOT " * 3_000 + "label").message
    deepest = "(" * MAX_DEPTH + "label = 1" + ")" * MAX_DEPTH
    assert validate_filter(deepest, SCHEMA) == deepest
    assert "nested more than" in rejected("(" + deepest + ")").message


# -- through the server -------------------------------------------------------------------------

N_FACTS = 300
COLORS = ["red", "green", "Blue", None, "it's"]


def _facts() -> pa.Table:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    rows: dict[str, list[Any]] = {
        "id": [f"r{i:03d}" for i in range(N_FACTS)],
        "label": [i if i % 7 else None for i in range(N_FACTS)],
        "split": [COLORS[i % 5] for i in range(N_FACTS)],
        "ink": [round(i * 0.37, 2) if i % 11 else None for i in range(N_FACTS)],
        "flag": [[True, False, None][i % 3] for i in range(N_FACTS)],
        "tags": [None if i % 13 == 0 else [f"t{i % 3}", f"u{i % 5}"] for i in range(N_FACTS)],
        "meta": [{"a": i % 4, "b": f"b{i}"} for i in range(N_FACTS)],
        "ts": [start + dt.timedelta(hours=i) for i in range(N_FACTS)],
        "my col": [i % 10 for i in range(N_FACTS)],
    }
    return pa.table(rows, schema=SCHEMA)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, digits_dir: Path) -> str:
    """Two read-only tables: ``facts`` (every column type a filter meets) and ingested ``digits``."""
    uri = str(tmp_path_factory.mktemp("filters") / "data")
    store = Store(uri)
    store.create("facts", SCHEMA)
    facts = _facts()
    for part in (facts.slice(0, 120), facts.slice(120)):  # two fragments
        lance.write_dataset(part, store.table_uri("facts"), mode="append")
    run_ingest(store, IngestOptions(table="digits", sources=[str(digits_dir / "images")], labels_from_dirs=True,
                                    metadata=str(digits_dir / "digits.csv"), key="file", progress=False))
    return uri


@pytest.fixture
def client(app: InProcess) -> Iterator[httpx.Client]:
    with app.http(timeout=30) as c:
        yield c


def table_rows(root: str, name: str) -> list[dict[str, Any]]:
    """Ground truth: the table read straight from Lance, not through the service."""
    return lance.dataset(f"{root}/{name}.lance").to_table().to_pylist()


def query_ids(client: httpx.Client, table: str, text: str) -> list[str]:
    response = client.post(f"/api/v1/tables/{table}/query",
                           json={"filter": text, "columns": ["id"], "limit": 10_000})
    assert response.status_code == 200, (text, response.text)
    body = response.json()
    assert body["next_cursor"] is None
    return [r["id"] for r in body["rows"]]


def count_of(client: httpx.Client, table: str, text: str) -> int:
    response = client.get(f"/api/v1/tables/{table}/count", params={"filter": text})
    assert response.status_code == 200, (text, response.text)
    return response.json()["count"]


def _has(values: Any, wanted: Any) -> bool:
    return values is not None and wanted in values


# SQL three-valued logic in Python: a comparison with NULL is unknown, and unknown rows are dropped.
FACT_CASES: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("label > 100", lambda r: r["label"] is not None and r["label"] > 100),
    ("label >= 10 AND label < 20", lambda r: r["label"] is not None and 10 <= r["label"] < 20),
    ("label = 5 OR split = 'red'", lambda r: r["label"] == 5 or r["split"] == "red"),
    ("split IN ('red', 'Blue')", lambda r: r["split"] in ("red", "Blue")),
    ("split NOT IN ('red', 'Blue')", lambda r: r["split"] is not None and r["split"] not in ("red", "Blue")),
    ("label BETWEEN 10 AND 20", lambda r: r["label"] is not None and 10 <= r["label"] <= 20),
    ("label NOT BETWEEN 10 AND 290", lambda r: r["label"] is not None and not 10 <= r["label"] <= 290),
    ("split LIKE 'gr%'", lambda r: r["split"] is not None and r["split"].startswith("gr")),
    ("split ILIKE 'b%'", lambda r: r["split"] is not None and r["split"].lower().startswith("b")),
    ("split IS NULL", lambda r: r["split"] is None),
    ("split IS NOT NULL", lambda r: r["split"] is not None),
    ("split = 'it''s'", lambda r: r["split"] == "it's"),
    ("split = \"green\"", lambda r: r["split"] == "green"),
    ("flag", lambda r: r["flag"] is True),
    ("NOT flag", lambda r: r["flag"] is False),
    ("NOT NOT flag", lambda r: r["flag"] is True),
    ("flag IS NULL", lambda r: r["flag"] is None),
    ("flag = false AND label > 200", lambda r: r["flag"] is False and r["label"] is not None and r["label"] > 200),
    ("ink > 50.5", lambda r: r["ink"] is not None and r["ink"] > 50.5),
    ("ink IS NULL OR ink < 1", lambda r: r["ink"] is None or r["ink"] < 1),
    ("label % 3 = 0 AND NOT (split = 'green')",
     lambda r: r["label"] is not None and r["label"] % 3 == 0 and r["split"] is not None and r["split"] != "green"),
    ("label + 1 > 200", lambda r: r["label"] is not None and r["label"] + 1 > 200),
    ("-label < -250", lambda r: r["label"] is not None and r["label"] > 250),
    ("(label > 280 OR label < 10) AND flag IS NOT NULL",
     lambda r: r["label"] is not None and (r["label"] > 280 or r["label"] < 10) and r["flag"] is not None),
    ("meta.a = 2", lambda r: r["meta"]["a"] == 2),
    ("array_has(tags, 't1')", lambda r: _has(r["tags"], "t1")),
    ("ts >= TIMESTAMP '2024-01-05 00:00:00'", lambda r: r["ts"] >= dt.datetime(2024, 1, 5, tzinfo=dt.UTC)),
    ("id LIKE 'r1%'", lambda r: r["id"].startswith("r1")),
    ("`my col` = 3", lambda r: r["my col"] == 3),
    ("TRUE", lambda r: True),
    ("label > 100000", lambda r: False),
]


def test_valid_filters_return_exactly_the_ground_truth(client: httpx.Client, root: str) -> None:
    rows = table_rows(root, "facts")
    assert len(rows) == N_FACTS
    for text, keep in FACT_CASES:
        expected = sorted(r["id"] for r in rows if keep(r))
        got = query_ids(client, "facts", text)
        assert sorted(got) == expected, text
        assert len(got) == len(set(got)), text
        assert count_of(client, "facts", text) == len(expected), text
    # the cases are not vacuous: most select some rows but not all
    sizes = [sum(1 for r in rows if keep(r)) for _, keep in FACT_CASES]
    assert sum(1 for n in sizes if 0 < n < N_FACTS) >= len(FACT_CASES) - 3


def test_filters_over_ingested_metadata_match_pyarrow(client: httpx.Client, root: str) -> None:
    table = lance.dataset(f"{root}/digits.lance").to_table(columns=["id", "label", "split", "ink", "width"])
    cases = {
        "label = 3 AND split = 'train'": pc.and_(pc.equal(table["label"], 3), pc.equal(table["split"], "train")),
        "label IN (0, 9) OR ink > 6.5": pc.or_(pc.is_in(table["label"], pa.array([0, 9])),
                                                pc.greater(table["ink"], 6.5)),
        "split = 'test' AND NOT (label < 5)": pc.and_(pc.equal(table["split"], "test"),
                                                      pc.invert(pc.less(table["label"], 5))),
        "id LIKE '7/%'": pc.starts_with(table["id"], "7/"),
        "width = 8": pc.equal(table["width"], 8),
    }
    for text, mask in cases.items():
        expected = sorted(table.filter(mask)["id"].to_pylist())
        assert sorted(query_ids(client, "digits", text)) == expected, text
        assert count_of(client, "digits", text) == len(expected), text
    assert count_of(client, "digits", "label = 3 AND split = 'train'") > 0
    assert client.get("/api/v1/tables/digits/count").json() == {"count": 200}


def assert_invalid_filter(response: httpx.Response, *words: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == "invalid_filter"
    for word in words:
        assert word in error["message"], (word, error["message"])
    return error


ERROR_CASES = [
    ("lable = 3", ["unknown column 'lable'", "did you mean 'label'?"]),
    ("label = = 3", ["position 8"]),
    ("(label = 3", ["expected ')'"]),
    ("label + 1", ["boolean expression"]),
    ("label = 3 AND ink", ["operands of AND must be boolean"]),
    ("label = 3 split = 'x'", ["a filter is one expression"]),
    # well-formed SQL that only Lance's planner can refuse: still a 400 that says why
    # ... in the types the table's schema shows (int64, string), never the engine's (Int64, Utf8)
    ("label = 'abc'", ["cannot run on this table", "'abc' is text", "column 'label' holds int64 values",
                       "e.g. label = 3"]),
    ("split = 3", ["3 is a number", "column 'split' holds string values", "quote the value"]),
    ("nosuch(label) = 1", ["cannot run on this table", "nosuch"]),
    ("upper(split)", ["cannot run on this table", "boolean"]),
    ("CAST(label AS nonsense) = 1", ["cannot run on this table"]),
    ("\"label\" > 3", ["cannot run on this table"]),  # double quotes make a string, as in Lance
    # fails only on the data: 'red' cannot be cast to an integer
    ("CAST(split AS INT) > 1", ["failed on this table's data", "red"]),
]


def test_every_error_class_is_a_400_naming_the_problem(client: httpx.Client) -> None:
    for text, words in ERROR_CASES:
        query = client.post("/api/v1/tables/facts/query", json={"filter": text})
        assert_invalid_filter(query, *words)
        count = client.get("/api/v1/tables/facts/count", params={"filter": text})
        assert_invalid_filter(count, *words)
        for engine_name in ("Utf8", "Int64", "Float64"):
            assert engine_name not in query.json()["error"]["message"], (text, engine_name)
    detail = assert_invalid_filter(client.get("/api/v1/tables/facts/count", params={"filter": "lable = 3"}))["detail"]
    assert detail["column"] == "lable"


def test_hostile_filters_are_400_never_500(client: httpx.Client) -> None:
    hostile = [*HOSTILE.values(), "NOT " * 3_000 + "flag", "- " * 4_000 + "1 = 1", "-" * 8_000 + "1 = 1",
               "x" * 100_000,
               "label = 1 OR " * 7_700 + "label = 1", "label = 1 -- AND 1=1", "label = 1 UNION ALL SELECT 1"]
    for text in hostile:
        query = client.post("/api/v1/tables/facts/query", json={"filter": text, "columns": ["id"]})
        assert_invalid_filter(query)
        arrow = client.post("/api/v1/tables/facts/query", json={"filter": text},
                            headers={"Accept": "application/vnd.apache.arrow.stream"})
        assert_invalid_filter(arrow)
    # GET with long query strings: 1,000 nested parentheses and a NUL byte
    for text in (HOSTILE["parens"], HOSTILE["nul"], HOSTILE["statement"], HOSTILE["injection"]):
        assert_invalid_filter(client.get("/api/v1/tables/facts/count", params={"filter": text}))
    # the table is untouched and the server still answers
    assert client.get("/api/v1/tables/facts/count").json() == {"count": N_FACTS}
    assert client.get("/api/v1/tables/facts").json()["version"] == 3
