"""Writes over HTTP: uploads (multipart and Arrow), PATCH, DELETE, delete by filter.

Everything goes through the service's app (in this process, no socket) over a real Lance store: every
write must be exactly one new version, and every refusal must carry the ``{"error": {...}}`` body, never a 500.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import lance
import pyarrow as pa
import pytest

from app.store import Store
from tests.helpers import arrow_stream, assert_error

ARROW = "application/vnd.apache.arrow.stream"
T = "/api/v1/tables/pics"
EXTRA_SCHEMA = [{"name": "label", "type": "int64"}, {"name": "caption", "type": "string"},
                {"name": "score", "type": "double"}]


# -- helpers ---------------------------------------------------------------------------------
def head(client: httpx.Client, table: str = "pics") -> tuple[int, int]:
    """(latest version, number of versions in the log)."""
    info = client.get(f"/api/v1/tables/{table}")
    assert info.status_code == 200, info.text
    log = client.get(f"/api/v1/tables/{table}/versions", params={"limit": 1000})
    assert log.status_code == 200, log.text
    return info.json()["version"], len(log.json())


def one_version(client: httpx.Client, call: Callable[[], httpx.Response], table: str = "pics",
                status: int = 201) -> dict[str, Any]:
    """Run a write; it must succeed and add exactly one version, the one it reports."""
    before, count = head(client, table)
    response = call()
    assert response.status_code == status, response.text
    after, count_after = head(client, table)
    assert (after, count_after) == (before + 1, count + 1)
    body = response.json()
    assert body["version"] == after
    return body


def no_version(client: httpx.Client, call: Callable[[], httpx.Response], table: str = "pics") -> httpx.Response:
    """Run a request that must not change the table's history."""
    before = head(client, table)
    response = call()
    assert head(client, table) == before
    return response


def row(client: httpx.Client, key: str, table: str = "pics", **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/tables/{table}/rows/{key}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def image(client: httpx.Client, key: str, table: str = "pics") -> bytes:
    response = client.get(f"/api/v1/tables/{table}/rows/{key}/image")
    assert response.status_code == 200, response.text
    return response.content


def files(*items: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


def schema_types(client: httpx.Client, table: str = "pics") -> dict[str, str]:
    return {f["name"]: f["type"] for f in client.get(f"/api/v1/tables/{table}").json()["schema"]}


@pytest.fixture
def client(store: Store, in_process) -> httpx.Client:
    with in_process(store.uri).http() as http:
        made = http.post("/api/v1/tables", json={"name": "pics", "schema": EXTRA_SCHEMA})
        assert made.status_code == 201, made.text
        yield http


@pytest.fixture
def small(samples_dir: Path) -> dict[str, bytes]:
    """Small real images of different formats, by file name."""
    names = ["horse.png", "chessboard_GRAY.png", "no_time_for_that_tiny.gif", "multipage.tif"]
    return {n: (samples_dir / n).read_bytes() for n in names}


# -- multipart uploads -------------------------------------------------------------------------
def test_multipart_with_list_metadata_adds_rows_with_identical_bytes_and_typed_columns(
        client: httpx.Client, small: dict[str, bytes]) -> None:
    names = ["horse.png", "chessboard_GRAY.png", "no_time_for_that_tiny.gif"]
    metadata = [{"label": 1, "caption": "a horse", "score": 0.5},
                {"label": 2, "caption": "a board", "score": 1.25},
                {"label": 3, "caption": "a cartoon", "score": -2.0}]
    body = one_version(client, lambda: client.post(
        f"{T}/rows", files=files(*((n, small[n]) for n in names)),
        data={"metadata": json.dumps(metadata), "message": "first upload", "author": "ada", "tag": "v1"}))
    assert body["inserted"] == 3 and body["skipped"] == [] and body["tag"] == "v1"

    for name, meta in zip(names, metadata, strict=True):
        got = row(client, name)
        assert (got["label"], got["caption"], got["score"]) == (meta["label"], meta["caption"], meta["score"])
        assert got["sha256"] == hashlib.sha256(small[name]).hexdigest()
        assert got["size_bytes"] == len(small[name])
        assert image(client, name) == small[name]
    assert row(client, "horse.png")["mime"] == "image/png"
    assert row(client, "no_time_for_that_tiny.gif")["mime"] == "image/gif"
    types = schema_types(client)
    assert (types["label"], types["caption"], types["score"]) == ("int64", "string", "double")

    newest = client.get(f"{T}/versions").json()[0]
    assert (newest["message"], newest["author"], newest["tags"]) == ("first upload", "ada", ["v1"])
    assert newest["rows_added"] == 3 and newest["num_rows"] == 3
    assert client.get(f"{T}/count", params={"tag": "v1"}).json() == {"count": 3}


def test_multipart_with_metadata_keyed_by_file_name(client: httpx.Client, small: dict[str, bytes]) -> None:
    metadata = {"multipage.tif": {"label": 40, "caption": "pages"}, "horse.png": {"label": 7, "score": 9.5}}
    names = ["horse.png", "chessboard_GRAY.png", "multipage.tif"]
    body = one_version(client, lambda: client.post(
        f"{T}/rows", files=files(*((n, small[n]) for n in names)), data={"metadata": json.dumps(metadata)},
        params={"message": "keyed"}))
    assert body["inserted"] == 3
    horse, board, tif = row(client, "horse.png"), row(client, "chessboard_GRAY.png"), row(client, "multipage.tif")
    assert (horse["label"], horse["caption"], horse["score"]) == (7, None, 9.5)
    assert (board["label"], board["caption"], board["score"]) == (None, None, None)  # no entry: nulls
    assert (tif["label"], tif["caption"], tif["frames"], tif["mime"]) == (40, "pages", 2, "image/tiff")
    assert image(client, "multipage.tif") == small["multipage.tif"]
    assert client.get(f"{T}/versions").json()[0]["message"] == "keyed"


def test_metadata_may_name_the_id(client: httpx.Client, small: dict[str, bytes]) -> None:
    one_version(client, lambda: client.post(
        f"{T}/rows", files=files(("horse.png", small["horse.png"])),
        data={"metadata": json.dumps([{"id": "animals/horse 1.png", "label": 5}])}))
    assert row(client, "animals/horse 1.png")["label"] == 5
    assert image(client, "animals/horse 1.png") == small["horse.png"]
    assert client.get(f"{T}/rows/horse.png").status_code == 404


def test_bad_images_are_skipped_with_reasons_and_good_ones_added(
        client: httpx.Client, small: dict[str, bytes], samples_dir: Path) -> None:
    truncated = (samples_dir / "camera.png").read_bytes()[:2000]
    body = one_version(client, lambda: client.post(f"{T}/rows", files=files(
        ("empty.png", b""), ("truncated.png", truncated), ("notes.txt", b"just some text, not an image\n"),
        ("horse.png", small["horse.png"]))))
    assert body["inserted"] == 1
    reasons = {s["file"]: s["reason"] for s in body["skipped"]}
    assert reasons == {"empty.png": "empty", "truncated.png": "truncated", "notes.txt": "not_an_image"}
    assert all(s["message"] for s in body["skipped"])
    assert client.get(f"{T}/count").json() == {"count": 1}
    assert image(client, "horse.png") == small["horse.png"]


def test_an_upload_of_only_bad_files_writes_no_version(client: httpx.Client) -> None:
    response = no_version(client, lambda: client.post(f"{T}/rows", files=files(("a.png", b""), ("b.txt", b"text"))))
    error = assert_error(response, 422, "unprocessable")
    assert [(s["file"], s["reason"]) for s in error["detail"]["skipped"]] == [("a.png", "empty"),
                                                                            ("b.txt", "not_an_image")]


def test_insert_skips_an_existing_id_and_upsert_replaces_image_and_metadata(
        client: httpx.Client, small: dict[str, bytes]) -> None:
    horse, board = small["horse.png"], small["chessboard_GRAY.png"]
    meta = {"metadata": json.dumps([{"id": "pic", "label": 1, "caption": "first"}])}
    one_version(client, lambda: client.post(f"{T}/rows", files=files(("horse.png", horse)), data=meta))
    before = row(client, "pic")

    replace = {"metadata": json.dumps([{"id": "pic", "label": 2, "caption": "second"}])}
    skipped = no_version(client, lambda: client.post(f"{T}/rows", files=files(("board.png", board)), data=replace,
                                                     params={"mode": "insert"}))
    assert [s["reason"] for s in assert_error(skipped, 422)["detail"]["skipped"]] == ["duplicate_id"]
    assert row(client, "pic") == before and image(client, "pic") == horse

    body = one_version(client, lambda: client.post(f"{T}/rows", files=files(("board.png", board)), data=replace,
                                                   params={"mode": "upsert", "message": "replace pic"}))
    assert (body["inserted"], body["updated"]) == (0, 1)
    after = row(client, "pic")
    assert (after["label"], after["caption"]) == (2, "second")
    assert after["sha256"] == hashlib.sha256(board).hexdigest() and after["sha256"] != before["sha256"]
    assert (after["width"], after["height"], after["size_bytes"]) != (before["width"], before["height"],
                                                                      before["size_bytes"])
    assert image(client, "pic") == board
    assert client.get(f"{T}/count").json() == {"count": 1}  # replaced, not duplicated
    newest = client.get(f"{T}/versions").json()[0]
    assert newest["message"] == "replace pic" and newest["rows_updated"] == 1

    # upsert with a new id and an existing one in one upload: one version, one insert and one update
    both = {"metadata": json.dumps([{"id": "pic", "label": 3}, {"id": "new", "label": 4}])}
    body = one_version(client, lambda: client.post(f"{T}/rows", files=files(("a.png", horse), ("b.gif",
                                                   small["no_time_for_that_tiny.gif"])), data=both,
                                                   params={"mode": "upsert"}))
    assert (body["inserted"], body["updated"]) == (1, 1)
    assert row(client, "pic")["label"] == 3 and image(client, "pic") == horse
    assert image(client, "new") == small["no_time_for_that_tiny.gif"]


def test_dedup_content_skips_bytes_already_stored(client: httpx.Client, small: dict[str, bytes]) -> None:
    horse = small["horse.png"]
    one_version(client, lambda: client.post(f"{T}/rows", files=files(("horse.png", horse))))
    same = no_version(client, lambda: client.post(f"{T}/rows", files=files(("copy.png", horse)),
                                                  params={"dedup": "content"}))
    assert [(s["file"], s["reason"]) for s in assert_error(same, 422)["detail"]["skipped"]] == [
        ("copy.png", "duplicate_content")]
    # two copies inside one upload: the first is kept
    body = one_version(client, lambda: client.post(
        f"{T}/rows", files=files(("g1.gif", small["no_time_for_that_tiny.gif"]),
                                 ("g2.gif", small["no_time_for_that_tiny.gif"])), data={"dedup": "content"}))
    assert body["inserted"] == 1 and [s["reason"] for s in body["skipped"]] == ["duplicate_content"]
    # by id (the default), the same bytes under a new id are a new row
    one_version(client, lambda: client.post(f"{T}/rows", files=files(("copy.png", horse))))
    assert client.get(f"{T}/count").json() == {"count": 3}


def test_upload_errors(client: httpx.Client, small: dict[str, bytes]) -> None:
    horse = small["horse.png"]
    wrong_type = no_version(client, lambda: client.post(f"{T}/rows", files=files(("horse.png", horse)),
                                                        data={"metadata": json.dumps([{"label": "not a number"}])}))
    assert "'label'" in assert_error(wrong_type, 422, "column_type_conflict")["message"]
    # a new metadata field is a new column, added in the upload's version (test_schema_evolution has the rest)
    one_version(client, lambda: client.post(f"{T}/rows", files=files(("horse.png", horse)),
                                            data={"metadata": json.dumps([{"colour": "brown"}])}))
    assert row(client, "horse.png")["colour"] == "brown"
    not_json = no_version(client, lambda: client.post(f"{T}/rows", files=files(("horse.png", horse)),
                                                      data={"metadata": "{nope"}))
    assert_error(not_json, 400)
    bad_mode = no_version(client, lambda: client.post(f"{T}/rows", files=files(("horse.png", horse)),
                                                      params={"mode": "replace"}))
    assert_error(bad_mode, 400)
    no_files = no_version(client, lambda: client.post(f"{T}/rows", data={"metadata": "[]"},
                                                      files=[("empty", (None, b""))]))
    assert_error(no_files, 400)
    json_body = no_version(client, lambda: client.post(f"{T}/rows", json={"id": "x"}))
    assert_error(json_body, 415, "unsupported_media_type")
    raw = no_version(client, lambda: client.post(f"{T}/rows", content=horse, headers={"content-type": "image/png"}))
    assert_error(raw, 415, "unsupported_media_type")
    missing = client.post("/api/v1/tables/nope/rows", files=files(("horse.png", horse)))
    assert_error(missing, 404, "table_not_found")
    garbage = no_version(client, lambda: client.post(f"{T}/rows", content=b"\x00not arrow at all",
                                                     headers={"content-type": ARROW}))
    assert_error(garbage, 400)


def test_uploads_over_the_limit_are_413(store: Store, in_process, samples_dir: Path,
                                        small: dict[str, bytes]) -> None:
    server = in_process(store.uri, max_upload_bytes=50_000)
    big = (samples_dir / "camera.png").read_bytes()
    assert len(big) > 50_000
    with server.http() as http:
        assert http.post("/api/v1/tables", json={"name": "pics"}).status_code == 201
        over = no_version(http, lambda: http.post(f"{T}/rows", files=files(("camera.png", big))))
        assert assert_error(over, 413, "payload_too_large")["detail"] == {"limit": 50_000}
        # two files each under the limit, together over it, sent chunked (no Content-Length to refuse early)
        form = httpx.Request("POST", server.url, files=files(("a.png", big[:30_000]), ("b.png", big[30_000:60_000])))
        halves = no_version(http, lambda: http.post(f"{T}/rows", content=iter([form.read()]),
                                                    headers={"content-type": form.headers["content-type"]}))
        assert_error(halves, 413, "payload_too_large")
        # a chunked body (no Content-Length) is cut off while it streams
        rows = pa.table({"id": ["camera.png"], "image": pa.array([big], pa.binary())})
        chunked = no_version(http, lambda: http.post(f"{T}/rows", headers={"content-type": ARROW},
                                                     content=iter([arrow_stream(rows)])))
        assert_error(chunked, 413, "payload_too_large")
        # under the limit is fine on the same server
        fine = one_version(http, lambda: http.post(f"{T}/rows", files=files(("horse.png", small["horse.png"]))))
        assert fine["inserted"] == 1


# -- Arrow IPC uploads ---------------------------------------------------------------------------
def test_arrow_stream_of_image_rows(client: httpx.Client, small: dict[str, bytes]) -> None:
    rows = pa.table({"id": ["a/horse", "a/board"], "image": pa.array([small["horse.png"],
                                                                      small["chessboard_GRAY.png"]], pa.binary()),
                     "label": pa.array([1, 2], pa.int64()), "caption": ["horse", "board"]})
    body = one_version(client, lambda: client.post(f"{T}/rows", content=arrow_stream(rows),
                                                   headers={"content-type": ARROW},
                                                   params={"message": "arrow", "tag": "arrow-1"}))
    assert body["inserted"] == 2 and body["skipped"] == []
    assert image(client, "a/horse") == small["horse.png"]
    assert (row(client, "a/board")["label"], row(client, "a/board")["caption"]) == (2, "board")
    assert client.get(f"{T}/versions").json()[0]["tags"] == ["arrow-1"]

    # upsert: one id replaced (new bytes, new label), one new, one bad image skipped; large_binary works too
    more = pa.table({"id": ["a/horse", "a/gif", "a/bad"],
                     "image": pa.array([small["multipage.tif"], small["no_time_for_that_tiny.gif"], b"oops"],
                                       pa.large_binary()),
                     "label": pa.array([10, 11, 12], pa.int64())})
    body = one_version(client, lambda: client.post(f"{T}/rows", content=arrow_stream(more),
                                                   headers={"content-type": ARROW}, params={"mode": "upsert"}))
    assert (body["inserted"], body["updated"]) == (1, 1)
    assert [(s["file"], s["reason"]) for s in body["skipped"]] == [("a/bad", "not_an_image")]
    assert image(client, "a/horse") == small["multipage.tif"]
    assert row(client, "a/horse")["label"] == 10 and row(client, "a/horse")["mime"] == "image/tiff"
    assert row(client, "a/board")["label"] == 2  # untouched
    assert client.get(f"{T}/count").json() == {"count": 3}

    no_id = no_version(client, lambda: client.post(f"{T}/rows", headers={"content-type": ARROW}, content=arrow_stream(
        pa.table({"image": pa.array([small["horse.png"]], pa.binary())}))))
    assert_error(no_id, 422)
    plain = no_version(client, lambda: client.post(f"{T}/rows", headers={"content-type": ARROW}, content=arrow_stream(
        pa.table({"id": ["x"], "label": [1]}))))
    assert_error(plain, 422)  # an image table takes images


FEATURES = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("area", pa.float64()),
                      pa.field("cell", pa.string())])


def make_features(store: Store, how: str) -> None:
    if how == "store":
        store.create("feats", FEATURES)
    else:  # a table written with plain Lance, as another tool would
        first = pa.table({"id": ["c0"], "area": [1.0], "cell": ["seed"]}, schema=FEATURES)
        lance.write_dataset(first, store.table_uri("feats"))


@pytest.mark.parametrize("how", ["store", "lance"])
def test_arrow_stream_of_plain_rows_into_a_table_without_images(client: httpx.Client, store: Store,
                                                                small: dict[str, bytes], how: str) -> None:
    make_features(store, how)
    t = "/api/v1/tables/feats"

    def post(rows: pa.Table, **params: str) -> httpx.Response:
        return client.post(f"{t}/rows", content=arrow_stream(rows), headers={"content-type": ARROW}, params=params)

    base = 1 if how == "lance" else 0
    first = pa.table({"id": ["c1", "c2", "c3"], "area": [1.5, 2.5, 3.5], "cell": ["a", "b", "c"]})
    body = one_version(client, lambda: post(first, message="cells"), table="feats")
    assert (body["inserted"], body["updated"]) == (3, 0)
    cells = body["version"]
    assert client.get(f"{t}/count").json() == {"count": 3 + base}

    # insert skips ids it has; columns may come in any order, missing ones are null, ints cast to double
    again = pa.table({"cell": ["z", "d"], "id": ["c1", "c4"], "area": pa.array([9, 4], pa.int32())})
    body = one_version(client, lambda: post(again), table="feats")
    assert (body["inserted"], body["updated"]) == (1, 0)
    c1 = row(client, "c1", "feats")
    assert (c1["area"], c1["cell"]) == (1.5, "a")
    assert row(client, "c4", "feats")["area"] == 4.0

    # upsert replaces, and duplicate ids inside one upload do not make duplicate rows
    up = pa.table({"id": ["c1", "c5", "c5"], "area": [100.0, 5.0, 6.0]})
    body = one_version(client, lambda: post(up, mode="upsert"), table="feats")
    assert (body["inserted"], body["updated"]) == (1, 1)
    got = client.post(f"{t}/query", json={"columns": ["id", "area", "cell"], "limit": 100}).json()["rows"]
    by_id = {r["id"]: r for r in got}
    assert len(got) == len(by_id) == 5 + base
    assert by_id["c1"]["area"] == 100.0 and by_id["c1"]["cell"] is None  # the upload's row, whole
    assert by_id["c5"]["area"] == 5.0  # the first of the duplicates
    assert {e["version"]: e["message"] for e in client.get(f"{t}/versions").json()}[cells] == "cells"

    # a column the table lacks is added in the write's version (older rows read null); see test_schema_evolution
    one_version(client, lambda: post(pa.table({"id": ["c9"], "weight": [1.0]})), table="feats")
    assert (row(client, "c9", "feats")["weight"], row(client, "c1", "feats")["weight"]) == (1.0, None)
    bad_type = no_version(client, lambda: post(pa.table({"id": ["c10"], "area": ["big"]})), table="feats")
    assert "'area'" in assert_error(bad_type, 422, "column_type_conflict")["message"]
    no_id = no_version(client, lambda: post(pa.table({"id": pa.array([None], pa.string()), "area": [1.0]})),
                       table="feats")
    assert_error(no_id, 422)
    for data in (small["horse.png"], b"\x89PNG"):  # images need an image table, however good they are
        multipart = no_version(client, lambda data=data: client.post(f"{t}/rows", files=files(("x.png", data))),
                               table="feats")
        assert_error(multipart, 422)


# -- PATCH / DELETE / delete by filter ----------------------------------------------------------------
@pytest.fixture
def loaded(client: httpx.Client, small: dict[str, bytes]) -> httpx.Client:
    """Four rows: ids k/0..k/3 with labels 0..3."""
    names = list(small)
    metadata = [{"id": f"k/{i}", "label": i, "caption": f"row {i}", "score": float(i)} for i in range(4)]
    one_version(client, lambda: client.post(f"{T}/rows", files=files(*((n, small[n]) for n in names)),
                                            data={"metadata": json.dumps(metadata)}))
    return client


def test_patch_changes_one_column_as_one_version(loaded: httpx.Client) -> None:
    client = loaded
    before = row(client, "k/1")
    body = one_version(client, lambda: client.patch(f"{T}/rows/k/1", json={"label": 42},
                                                    params={"message": "relabel", "author": "bob"}), status=200)
    assert body["updated"] == 1
    after = row(client, "k/1")
    assert after == {**before, "label": 42}
    assert row(client, "k/2")["label"] == 2
    newest = client.get(f"{T}/versions").json()[0]
    assert (newest["message"], newest["author"], newest["rows_updated"]) == ("relabel", "bob", 1)
    diff = client.get(f"{T}/diff", params={"from": str(body["version"] - 1), "to": "main"}).json()
    assert diff["counts"] == {"added": 0, "removed": 0, "changed": 1}
    assert diff["changed"] == [{"id": "k/1", "columns": ["label"], "values": {"label": {"from": 1, "to": 42}}}]

    # falsy values and null are values too; several columns at once is still one version
    one_version(client, lambda: client.patch(f"{T}/rows/k/1", json={"label": 0, "caption": None, "score": 0.0}),
                status=200)
    got = row(client, "k/1")
    assert (got["label"], got["caption"], got["score"]) == (0, None, 0.0)
    one_version(client, lambda: client.patch(f"{T}/rows/k/1", json={"source": "relabelled"}, params={"tag": "p1"}),
                status=200)
    assert row(client, "k/1")["source"] == "relabelled"
    assert client.get(f"{T}/versions").json()[0]["tags"] == ["p1"]


@pytest.mark.parametrize(("values", "status", "code"), [
    ({"sha256": "0" * 64}, 422, None),
    ({"image": "aGVsbG8="}, 422, None),
    ({"width": 3}, 422, None),
    ({"id": "other"}, 422, None),
    ({"colour": "red"}, 422, "unknown_column"),
    ({"label": "forty-two"}, 422, None),
    ({"label": 1.5}, 422, None),
    ({"label": [1, 2]}, 422, None),
    ({}, 422, None),
])
def test_patch_refusals(loaded: httpx.Client, values: dict[str, Any], status: int, code: str | None) -> None:
    before = row(loaded, "k/2")
    response = no_version(loaded, lambda: loaded.patch(f"{T}/rows/k/2", json=values))
    assert_error(response, status, code)
    assert row(loaded, "k/2") == before


def test_patch_and_delete_of_a_missing_row_are_404(loaded: httpx.Client) -> None:
    assert_error(no_version(loaded, lambda: loaded.patch(f"{T}/rows/no/such", json={"label": 1})), 404,
                 "row_not_found")
    assert_error(no_version(loaded, lambda: loaded.delete(f"{T}/rows/no/such")), 404, "row_not_found")
    assert_error(loaded.patch("/api/v1/tables/nope/rows/k/1", json={"label": 1}), 404, "table_not_found")
    assert_error(loaded.delete("/api/v1/tables/nope/rows/k/1"), 404, "table_not_found")
    assert_error(loaded.post("/api/v1/tables/nope/delete", json={"filter": "true"}), 404, "table_not_found")
    assert_error(no_version(loaded, lambda: loaded.patch(f"{T}/rows/k/1", content=b"[1]",
                                                         headers={"content-type": "application/json"})), 400)


def test_delete_one_row(loaded: httpx.Client) -> None:
    body = one_version(loaded, lambda: loaded.delete(f"{T}/rows/k/3", params={"message": "drop k/3"}), status=200)
    assert body["deleted"] == 1
    assert loaded.get(f"{T}/rows/k/3").status_code == 404
    assert loaded.get(f"{T}/count").json() == {"count": 3}
    newest = loaded.get(f"{T}/versions").json()[0]
    assert (newest["message"], newest["rows_removed"]) == ("drop k/3", 1)
    # the old version still has it
    assert row(loaded, "k/3", version=body["version"] - 1)["label"] == 3
    assert_error(no_version(loaded, lambda: loaded.delete(f"{T}/rows/k/3")), 404, "row_not_found")


def test_delete_by_filter(loaded: httpx.Client) -> None:
    body = one_version(loaded, lambda: loaded.post(f"{T}/delete", json={"filter": "label >= 2",
                                                                         "message": "drop high"}), status=200)
    assert body["deleted"] == 2
    ids = {r["id"] for r in loaded.post(f"{T}/query", json={"columns": ["id"]}).json()["rows"]}
    assert ids == {"k/0", "k/1"}
    assert loaded.get(f"{T}/versions").json()[0]["message"] == "drop high"

    nothing = no_version(loaded, lambda: loaded.post(f"{T}/delete", json={"filter": "label > 100"}))
    assert nothing.status_code == 200 and nothing.json()["deleted"] == 0
    for bad in ("label >", "colour = 'red'", "label", "1; DROP TABLE pics"):
        assert_error(no_version(loaded, lambda bad=bad: loaded.post(f"{T}/delete", json={"filter": bad})), 400)
    assert_error(no_version(loaded, lambda: loaded.post(f"{T}/delete", json={})), 422)
    assert loaded.get(f"{T}/count").json() == {"count": 2}

    # a quote inside an id is data, not SQL
    tricky = one_version(loaded, lambda: loaded.patch(f"{T}/rows/k/0", json={"caption": "it's"}), status=200)
    assert tricky["updated"] == 1
    done = one_version(loaded, lambda: loaded.post(f"{T}/delete", json={"filter": "caption = 'it''s'"}), status=200)
    assert done["deleted"] == 1
