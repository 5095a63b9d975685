"""A write that brings a new column adds it, in the same version as its rows; a value that does not
fit an existing column is a 422 naming the column and both types, and writes nothing.

Every door is tried over a real Lance store: ``run_ingest`` (``--metadata``, ``--labels-from-dirs``),
the ``lightbox`` command, multipart and Arrow uploads (in-process), the official LanceDB client
against a live server, and a branch. After each write that adds a column: one new version; older
rows read null, keep their row ids, row versions and bytes; ``diff`` shows only the new rows as
added; and the log's counts equal ``diff``'s.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import lancedb
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from lancedb.remote.errors import HttpError

from app.main import create_app
from app.services.diff import Diff, diff
from app.services.history import list_versions
from app.settings import Settings
from app.store import Ref, Store
from app.store.column_fit import ColumnTypeConflict
from ingest.pipeline import IngestOptions, run_ingest
from tests.conftest import LiveServer
from tests.helpers import arrow_stream, run_cli

FIRST = ["astronaut.png", "camera.png", "horse.png"]
MORE = ["rocket.jpg", "china.jpg", "chessboard_GRAY.png"]
ARROW = {"content-type": "application/vnd.apache.arrow.stream"}


# -- helpers ---------------------------------------------------------------------------------------
def folder(root: Path, samples: Path, names: list[str], sub: str = "") -> Path:
    out = root / sub if sub else root
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(samples / name, out / name)
    return root


def ingest(store: Store, source: Path, **kwargs: Any) -> int | None:
    return run_ingest(store, IngestOptions(table="g", sources=[str(source)], progress=False, workers=1,
                                           **kwargs)).version


def lineage(store: Store, table: str, version: int, branch: str | None = None) -> dict[str, tuple[int, int, str]]:
    """id -> (stable row id, last-updated version, sha256) at one version."""
    snap = store.snapshot(table, Ref(version=version, branch=branch))
    cols = ["id", "_row_last_updated_at_version"] + (["sha256"] if "sha256" in snap.schema.names else [])
    t = snap.read(cols, with_row_id=True)
    shas = t.column("sha256").to_pylist() if "sha256" in cols else [""] * t.num_rows
    return {i: (r, u, s) for i, r, u, s in zip(t.column("id").to_pylist(), t.column("_rowid").to_pylist(),
                                               t.column("_row_last_updated_at_version").to_pylist(), shas, strict=True)}


def assert_added_in_one_version(store: Store, table: str, before: int, added: set[str], columns: dict[str, Any],
                                branch: str | None = None, operation: str = "insert") -> Diff:
    """The write made exactly version ``before + 1``: its rows carry ``columns`` (id -> {column: value}),
    the rows before it read those columns as null and are untouched; ``diff`` and the log agree."""
    head = store.fresh(table, branch)
    assert head.version == before + 1
    old, new = lineage(store, table, before, branch), lineage(store, table, before + 1, branch)
    assert set(new) == set(old) | added and not set(old) & added
    assert {i: new[i] for i in old} == old  # same row ids, same row versions, same bytes
    values = {r["id"]: r for r in head.to_table(columns=["id", *columns_of(columns)]).to_pylist()}
    earlier = store.snapshot(table, Ref(version=before, branch=branch)).schema.names
    fresh = [c for c in head.schema.names if c not in earlier]
    assert fresh and set(fresh) <= set(columns_of(columns))
    for key in old:  # the columns this version added read null on the rows before it
        assert all(values[key][c] is None for c in fresh), values[key]
    for key, expected in columns.items():
        assert {c: values[key][c] for c in expected} == expected

    change = diff(store.snapshot(table, Ref(version=before, branch=branch)),
                  store.snapshot(table, Ref(version=before + 1, branch=branch)))
    assert (set(change.added), change.removed, change.changed) == (added, [], {})
    entry = next(e for e in list_versions(store, table, branch=branch)[0] if e["version"] == before + 1)
    assert (entry["rows_added"], entry["rows_updated"], entry["rows_removed"]) == (len(added), 0, 0)
    assert entry["operation"] == operation
    head.validate()
    return change


def columns_of(columns: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({c for values in columns.values() for c in values})


def conflict_of(response: httpx.Response, column: str, *words: str) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "column_type_conflict", error
    assert repr(column) in error["message"] and all(w in error["message"] for w in words), error["message"]
    return str(error["message"])


# -- ingest ----------------------------------------------------------------------------------------
def test_ingest_with_metadata_that_brings_columns_adds_them_in_the_same_version(
        tmp_path: Path, samples_dir: Path, store: Store) -> None:
    v1 = ingest(store, folder(tmp_path / "first", samples_dir, FIRST))
    assert v1 is not None
    more = folder(tmp_path / "more", samples_dir, MORE)
    (tmp_path / "more.csv").write_text("file,caption,score\n" + "".join(
        f"{name},photo {i},{i}\n" for i, name in enumerate(MORE)))
    v2 = ingest(store, more, metadata=str(tmp_path / "more.csv"), key="file", message="with captions")
    assert v2 == v1 + 1
    assert_added_in_one_version(store, "g", v1, set(MORE),
                                {name: {"caption": f"photo {i}", "score": i} for i, name in enumerate(MORE)})
    types = {f.name: f.type for f in store.fresh("g").schema}
    assert (types["caption"], types["score"]) == (pa.string(), pa.int64())
    assert list_versions(store, "g")[0][0]["message"] == "with captions"

    # the columns exist now: a CSV whose captions look like numbers is read as the text it is
    (tmp_path / "last").mkdir()
    shutil.copyfile(samples_dir / "camera.webp", tmp_path / "last" / "camera.webp")
    (tmp_path / "last.csv").write_text("file,caption,score\ncamera.webp,007,3\n")
    assert ingest(store, tmp_path / "last", metadata=str(tmp_path / "last.csv"), key="file") == v2 + 1
    got = store.fresh("g").to_table(columns=["id", "caption", "score"], filter="id = 'camera.webp'").to_pylist()
    assert got == [{"id": "camera.webp", "caption": "007", "score": 3}]


def test_labels_from_dirs_onto_a_table_without_labels(tmp_path: Path, samples_dir: Path, store: Store) -> None:
    v1 = ingest(store, folder(tmp_path / "flat", samples_dir, FIRST))
    assert v1 is not None
    labelled = folder(tmp_path / "labelled", samples_dir, MORE[:2], "cat")
    folder(labelled, samples_dir, MORE[2:], "dog")
    assert ingest(store, labelled, labels_from_dirs=True) == v1 + 1
    assert_added_in_one_version(store, "g", v1, {f"cat/{n}" for n in MORE[:2]} | {f"dog/{n}" for n in MORE[2:]},
                                {"cat/rocket.jpg": {"label": "cat"}, "dog/chessboard_GRAY.png": {"label": "dog"}})


def test_a_value_that_does_not_fit_its_column_names_both_types_and_writes_nothing(
        tmp_path: Path, samples_dir: Path, store: Store) -> None:
    digits = folder(tmp_path / "digits", samples_dir, FIRST[:1], "3")
    (tmp_path / "one.csv").write_text(f"file,score\n{FIRST[0]},5\n")
    v1 = ingest(store, digits, labels_from_dirs=True, metadata=str(tmp_path / "one.csv"), key="file")
    assert store.fresh("g").schema.field("label").type == pa.int64()

    more = folder(tmp_path / "more", samples_dir, MORE[:1])
    (tmp_path / "two.csv").write_text(f"file,score\n{MORE[0]},high\n")
    with pytest.raises(ColumnTypeConflict) as caught:
        ingest(store, more, metadata=str(tmp_path / "two.csv"), key="file")
    assert "'score'" in caught.value.message and "integer" in caught.value.message and "text" in caught.value.message
    assert caught.value.status == 422

    cats = folder(tmp_path / "cats", samples_dir, MORE[1:2], "cat")
    with pytest.raises(ColumnTypeConflict, match=r"'label'.*integer.*text"):
        ingest(store, cats, labels_from_dirs=True)
    assert store.fresh("g").version == v1 and store.fresh("g").count_rows() == 1

    done = run_cli("ingest", more, "--table", "g", "--uri", store.uri, "--metadata", tmp_path / "two.csv", "--key",
               "file", "--no-progress")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "'score'" in done.stderr and "integer" in done.stderr and "text" in done.stderr
    assert store.fresh("g").version == v1


def test_a_branch_gets_the_column_and_main_does_not(tmp_path: Path, samples_dir: Path, store: Store) -> None:
    v1 = ingest(store, folder(tmp_path / "first", samples_dir, FIRST))
    assert v1 is not None
    run_ingest(store, IngestOptions(table="g", sources=[str(folder(tmp_path / "b0", samples_dir, MORE[:1]))],
                                    branch="exp", progress=False))
    start = store.fresh("g", "exp").version
    labelled = folder(tmp_path / "b1", samples_dir, MORE[1:], "cat")
    run_ingest(store, IngestOptions(table="g", sources=[str(labelled)], branch="exp", labels_from_dirs=True,
                                    progress=False))
    assert_added_in_one_version(store, "g", start, {f"cat/{n}" for n in MORE[1:]},
                                {f"cat/{n}": {"label": "cat"} for n in MORE[1:]}, branch="exp")
    main = store.fresh("g")
    assert main.version == v1 and "label" not in main.schema.names

    # merging the branch brings the column to main, in the merge's one version
    from app.services.branches import merge

    out = merge(store, "g", "exp")
    assert out["version"] == v1 + 1
    assert_added_in_one_version(store, "g", v1, {MORE[0], *(f"cat/{n}" for n in MORE[1:])},
                                {f"cat/{n}": {"label": "cat"} for n in MORE[1:]} | {MORE[0]: {"label": None}},
                                operation="merge")


# -- the safe casts (service level) ------------------------------------------------------------------
STORED = pa.schema([pa.field("k", pa.string()), pa.field("n", pa.int32()), pa.field("f", pa.float32()),
                    pa.field("ts", pa.timestamp("us", tz="UTC")), pa.field("v", pa.list_(pa.float32(), 2)),
                    pa.field("t", pa.string())])


@pytest.mark.parametrize(("column", "values", "outcome"), [
    ("n", pa.array([7], pa.int64()), 7),                                   # integers of any width, when they fit
    ("n", pa.array([2**40], pa.int64()), "column_type_conflict"),
    ("n", pa.array(["12"]), "column_type_conflict"),                       # text is never parsed into numbers
    ("n", pa.array([1.0]), "column_type_conflict"),                        # nor decimals cut into integers
    ("f", pa.array([3], pa.int64()), 3.0),                                 # integers widen to decimal numbers
    ("f", pa.array([0.5], pa.float64()), 0.5),                             # at the column's precision
    ("ts", pa.array([datetime.date(2020, 1, 2)]), datetime.datetime(2020, 1, 2, tzinfo=datetime.UTC)),
    ("ts", pa.array(["2020-01-02"]), "column_type_conflict"),
    ("v", pa.array([[1.0, 2.0]]), [1.0, 2.0]),                            # lists into vectors of their length
    ("v", pa.array([[1.0, 2.0, 3.0]]), "column_type_conflict"),
    ("t", pa.array([True]), "column_type_conflict"),
    ("t", pa.nulls(1), None),                                              # a missing value fits a nullable column
    ("fresh", pa.nulls(1), None),                                          # a new column of nulls is stored as text
    ("fresh", pa.array([{"a": 1}]), {"a": 1}),                             # new columns keep their type
    ("fresh", pa.UnionArray.from_sparse(pa.array([0], pa.int8()), [pa.array([1])]), "unprocessable"),
])
def test_values_fit_a_column_by_the_safe_casts_only(store: Store, column: str, values: pa.Array,
                                                    outcome: Any) -> None:
    from app.errors import LightboxError
    from app.services.writes import append_rows

    store.create("t", STORED)
    before = store.fresh("t").version
    rows = pa.table({"k": ["a"], column: values})
    if isinstance(outcome, str):
        with pytest.raises(LightboxError) as caught:
            append_rows(store, "t", rows)
        assert (caught.value.status, caught.value.code) == (422, outcome)
        assert repr(column) in caught.value.message and store.fresh("t").version == before
        return
    assert append_rows(store, "t", rows)["version"] == before + 1
    assert store.fresh("t").to_table(columns=[column]).column(column).to_pylist() == [outcome]
    if column == "fresh":
        assert store.fresh("t").schema.field("fresh").type == (pa.string() if outcome is None else values.type)


# -- HTTP uploads (in-process) ---------------------------------------------------------------------
@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(uri=store.uri, latest_refresh_seconds=0.0))) as http:
        yield http


def test_uploads_add_columns_in_the_same_version(client: TestClient, store: Store, samples_dir: Path) -> None:
    t = "/api/v1/tables/g"
    assert client.post("/api/v1/tables", json={"name": "g"}).status_code == 201
    files = [("files", (n, (samples_dir / n).read_bytes(), "application/octet-stream")) for n in FIRST]
    v1 = client.post(f"{t}/rows", files=files).json()["version"]

    # multipart: the metadata brings 'caption' and 'rank'
    more = [("files", (n, (samples_dir / n).read_bytes(), "application/octet-stream")) for n in MORE[:2]]
    meta = {MORE[0]: {"caption": "a rocket", "rank": 1}, MORE[1]: {"caption": "a palace"}}
    body = client.post(f"{t}/rows", files=more, data={"metadata": json.dumps(meta)})
    assert body.status_code == 201, body.text
    assert (body.json()["version"], body.json()["inserted"]) == (v1 + 1, 2)
    assert_added_in_one_version(store, "g", v1, set(MORE[:2]), {
        MORE[0]: {"caption": "a rocket", "rank": 1}, MORE[1]: {"caption": "a palace", "rank": None}})
    log = client.get(f"{t}/versions").json()[0]
    served = client.get(f"{t}/diff", params={"from": str(v1), "to": str(v1 + 1)}).json()["counts"]
    assert (log["rows_added"], log["rows_updated"], log["rows_removed"]) == (
        served["added"], served["changed"], served["removed"]) == (2, 0, 0)

    # Arrow rows of images bring 'weight' (and fill 'caption')
    png = (samples_dir / MORE[2]).read_bytes()
    rows = pa.table({"id": ["extra/board.png"], "image": [png], "caption": ["board"], "weight": [2.5]})
    body = client.post(f"{t}/rows", content=arrow_stream(rows), headers=ARROW)
    assert body.status_code == 201, body.text
    assert_added_in_one_version(store, "g", v1 + 1, {"extra/board.png"},
                                {"extra/board.png": {"caption": "board", "weight": 2.5, "rank": None}})
    assert client.get(f"{t}/rows/extra/board.png/image").content == png

    # a value that does not fit: 422 naming the column and both types, nothing written
    bad = [("files", ("x.png", png, "application/octet-stream"))]
    conflict_of(client.post(f"{t}/rows", files=bad, data={"metadata": json.dumps([{"rank": "first"}])}),
                "rank", "integer", "text")
    conflict_of(client.post(f"{t}/rows", content=arrow_stream(pa.table({"id": ["y"], "image": [png], "weight": ["x"]})),
                            headers=ARROW), "weight", "decimal number", "text")
    mixed = [("files", (n, png, "application/octet-stream")) for n in ("m1.png", "m2.png")]
    mixed_meta = json.dumps([{"mood": 1}, {"mood": "sunny"}])
    assert client.post(f"{t}/rows", files=mixed, data={"metadata": mixed_meta}).status_code == 422
    assert store.fresh("g").version == v1 + 2


def test_plain_arrow_rows_add_columns_and_upserts_replace_rows(client: TestClient, store: Store) -> None:
    t = "/api/v1/tables/feats"
    store.create("feats", pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("area", pa.float64())]))

    def post(rows: pa.Table, **params: str) -> httpx.Response:
        return client.post(f"{t}/rows", content=arrow_stream(rows), headers=ARROW, params=params)

    first = pa.table({"id": [f"c{i}" for i in range(6)], "area": [float(i) for i in range(6)]})
    v1 = post(first).json()["version"]
    rows = pa.table({"id": ["n1", "n2"], "area": pa.array([7, 8], pa.int32()), "cell": ["a", "b"]})  # ints widen
    body = post(rows, message="cells")
    assert body.status_code == 201, body.text
    assert (body.json()["inserted"], body.json()["version"]) == (2, v1 + 1)
    assert_added_in_one_version(store, "feats", v1, {"n1", "n2"},
                                {"n1": {"cell": "a", "area": 7.0}, "n2": {"cell": "b", "area": 8.0}})

    # an upsert that brings a column replaces its rows (same ids) and inserts the new, in one version
    up = pa.table({"id": ["c1", "n9"], "area": [10.0, 9.0], "shade": ["dark", "light"]})
    body = post(up, mode="upsert")
    assert body.status_code == 201, body.text
    assert (body.json()["inserted"], body.json()["updated"], body.json()["version"]) == (1, 1, v1 + 2)
    got = {r["id"]: r for r in store.fresh("feats").to_table().to_pylist()}
    assert got["c1"] == {"id": "c1", "area": 10.0, "cell": None, "shade": "dark"}
    assert got["c2"] == {"id": "c2", "area": 2.0, "cell": None, "shade": None}
    assert len(got) == 9
    change = diff(store.snapshot("feats", Ref(version=v1 + 1)), store.snapshot("feats", Ref(version=v1 + 2)))
    assert (change.added, change.removed, sorted(change.changed)) == (["n9"], [], ["c1"])
    log = list_versions(store, "feats")[0][0]
    assert (log["operation"], log["rows_added"], log["rows_updated"], log["rows_removed"]) == ("upsert", 1, 1, 0)

    # an upsert that would empty a whole data file while adding a column is refused, clearly, with no version
    whole = pa.table({"id": ["n1", "n2"], "area": [1.0, 2.0], "hue": ["red", "blue"]})  # the rows of one write
    refused = post(whole, mode="upsert")
    assert refused.status_code == 409 and "every row of one of its data files" in refused.json()["error"]["message"]
    assert client.post(f"{t}/optimize").status_code == 200  # what the message advises: one data file now
    compacted = store.fresh("feats").version
    body = post(whole, mode="upsert")
    assert body.status_code == 201 and (body.json()["updated"], body.json()["version"]) == (2, compacted + 1)
    assert store.fresh("feats").to_table(columns=["hue"], filter="id = 'n2'").column("hue").to_pylist() == ["blue"]

    conflict_of(post(pa.table({"id": ["z"], "area": ["big"]})), "area", "decimal number", "text")
    conflict_of(post(pa.table({"id": ["z"], "cell": [3]})), "cell", "text", "integer")
    conflict_of(post(pa.table({"id": ["z"], "area": [1.5], "shade": [True]})), "shade", "text", "true/false")
    assert store.fresh("feats").version == compacted + 1


# -- the LanceDB protocol: the wire writes, and the official client (a live server) ---------------------
def lancedb_write(server: LiveServer, path: str, rows: pa.Table, **params: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/table/{path}", content=arrow_stream(rows), params=params,
                      headers={"content-type": ARROW["content-type"]}, timeout=60)


def test_lancedb_insert_and_merge_insert_add_columns(live_server: Callable[[str], LiveServer], store: Store,
                                                    samples_dir: Path, tmp_path: Path) -> None:
    """``insert`` is what the clients' ``add`` sends; ``merge_insert`` the same with its flags."""
    ingest(store, folder(tmp_path / "first", samples_dir, FIRST))
    server = live_server(store.uri)
    db = lancedb.connect("db://lightbox", api_key="k", host_override=server.url)
    v1 = db.open_table("g").version
    png = (samples_dir / MORE[0]).read_bytes()
    sent = lancedb_write(server, "g/insert/", pa.table({"id": ["new/rocket.jpg"], "image": [png], "caption": ["up"]}))
    assert sent.status_code == 200 and sent.json()["version"] == v1 + 1, sent.text
    assert_added_in_one_version(store, "g", v1, {"new/rocket.jpg"}, {"new/rocket.jpg": {"caption": "up"}})
    assert hashlib.sha256(png).hexdigest() == lineage(store, "g", v1 + 1)["new/rocket.jpg"][2]

    plain = db.create_table("feats", pa.table({"id": [f"r{i}" for i in range(5)], "x": list(range(5))}))
    p1 = plain.version
    sent = lancedb_write(server, "feats/merge_insert/", pa.table({"id": ["r0", "e"], "x": [0, 5], "size": [0.5, 1.5]}),
                         on="id", when_not_matched_insert_all="true")
    assert sent.status_code == 200 and sent.json()["num_inserted_rows"] == 1, sent.text
    assert_added_in_one_version(store, "feats", p1, {"e"}, {"e": {"size": 1.5, "x": 5}})
    assert plain.search().where("size > 1").select(["id"]).to_arrow().column("id").to_pylist() == ["e"]

    # an upsert that brings a column: matched rows replaced, the rest of their data file untouched
    upsert = pa.table({"id": ["r1", "f"], "x": [10, 6], "note": ["ten", "six"]})
    sent = lancedb_write(server, "feats/merge_insert/", upsert, on="id", when_matched_update_all="true",
                         when_not_matched_insert_all="true")
    assert sent.status_code == 200, sent.text
    assert (sent.json()["num_inserted_rows"], sent.json()["num_updated_rows"], sent.json()["version"]) == (1, 1, p1 + 2)
    rows = {r["id"]: r for r in plain.search().select(["id", "x", "size", "note"]).limit(100).to_arrow().to_pylist()}
    assert rows["r1"] == {"id": "r1", "x": 10, "size": None, "note": "ten"}
    assert rows["r2"] == {"id": "r2", "x": 2, "size": None, "note": None} and len(rows) == 7

    conflict_of(lancedb_write(server, "feats/insert/", pa.table({"id": ["h"], "x": ["six"]})), "x", "integer", "text")
    conflict_of(lancedb_write(server, "g/insert/", pa.table({"id": ["new/x.jpg"], "image": [png], "caption": [5]})),
                "caption", "text", "integer")
    assert store.fresh("feats").version == p1 + 2 and store.fresh("g").version == v1 + 1


def test_official_client_overwrite_brings_columns_in_one_version(live_server: Callable[[str], LiveServer],
                                                                 store: Store) -> None:
    """The official client checks ``add`` and ``merge_insert`` rows against the table's schema itself and
    refuses a column it lacks before sending anything; ``add(mode="overwrite")`` sends the rows as they are."""
    server = live_server(store.uri)
    db = lancedb.connect("db://lightbox", api_key="k", host_override=server.url)
    tbl = db.create_table("feats", pa.table({"id": ["a", "b", "c"], "x": [1, 2, 3]}))
    p1 = tbl.version
    before = lineage(store, "feats", p1)
    replacing = pa.table({"id": ["b", "d"], "x": [20, 4], "tag": ["two", "four"]})
    assert tbl.add(replacing, mode="overwrite").version == p1 + 1
    assert sorted(tbl.search().select(["id", "x", "tag"]).to_arrow().to_pylist(), key=lambda r: r["id"]) == [
        {"id": "b", "x": 20, "tag": "two"}, {"id": "d", "x": 4, "tag": "four"}]
    change = diff(store.snapshot("feats", Ref(version=p1)), store.snapshot("feats", Ref(version=p1 + 1)))
    assert (change.added, change.removed, sorted(change.changed)) == (["d"], ["a", "c"], ["b"])
    log = list_versions(store, "feats")[0][0]
    assert (log["rows_added"], log["rows_updated"], log["rows_removed"]) == (1, 1, 2)
    assert min(r for r, _, _ in lineage(store, "feats", p1 + 1).values()) > max(r for r, _, _ in before.values())

    with pytest.raises(HttpError, match=r"422.*'x'.*integer.*text"):
        tbl.add(pa.table({"id": ["e"], "x": ["five"], "tag": ["x"]}), mode="overwrite")
    assert store.fresh("feats").version == p1 + 1


def test_cli_upload_labels_bring_the_column_and_keep_its_type(live_server: Callable[[str], LiveServer], store: Store,
                                                               samples_dir: Path, tmp_path: Path) -> None:
    """``lightbox ingest --server --labels-from-dirs``: the first upload adds a text ``label`` to a table
    without one; a later one of digit-named folders sends its labels as text too (not integers)."""
    v1 = ingest(store, folder(tmp_path / "flat", samples_dir, FIRST))
    assert v1 is not None
    server = live_server(store.uri)
    cats = folder(tmp_path / "cats", samples_dir, MORE[:1], "cat")
    done = run_cli("ingest", cats, "--table", "g", "--server", server.url, "--labels-from-dirs", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_added_in_one_version(store, "g", v1, {"cat/rocket.jpg"}, {"cat/rocket.jpg": {"label": "cat"}})
    digits = folder(tmp_path / "digits", samples_dir, MORE[1:2], "7")
    done = run_cli("ingest", digits, "--table", "g", "--server", server.url, "--labels-from-dirs", "--no-progress")
    assert done.returncode == 0, done.stderr
    got = store.fresh("g").to_table(columns=["id", "label"], filter="id = '7/china.jpg'").to_pylist()
    assert got == [{"id": "7/china.jpg", "label": "7"}] and store.fresh("g").version == v1 + 2


@pytest.mark.s3
def test_a_column_is_added_on_object_storage(s3_root: Any, samples_dir: Path, tmp_path: Path) -> None:
    store = Store(s3_root.uri, storage_options=s3_root.options, refresh_seconds=0.0)
    v1 = ingest(store, folder(tmp_path / "flat", samples_dir, FIRST[:2]))
    assert v1 is not None
    labelled = folder(tmp_path / "labelled", samples_dir, MORE[:2], "cat")
    assert ingest(store, labelled, labels_from_dirs=True) == v1 + 1
    assert_added_in_one_version(store, "g", v1, {f"cat/{n}" for n in MORE[:2]},
                                {f"cat/{n}": {"label": "cat"} for n in MORE[:2]})
