"""Every write route answers the counts the table really gained, lost or changed, and a refused write
changes nothing: same version, same rows.

Each write is made through the service (its app in this process; a real server for LanceDB's own
client, whose core opens a socket), with the table's version, row count and rows read before and after
through the API; the answer's counts must equal the observed delta. The LanceDB routes are driven by
LanceDB's own client where it can express the call, and on the wire otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import lancedb
import pyarrow as pa
import pytest
from lancedb.remote.errors import HttpError

from app.store import Store
from tests.conftest import InProcess, LiveServer
from tests.helpers import arrow_stream

ARROW = "application/vnd.apache.arrow.stream"
NOT_AN_IMAGE = b"this is text, not an image"


class Api:
    def __init__(self, http: httpx.Client, pictures: list[bytes]) -> None:
        self.http = http
        self.pictures = pictures

    def state(self, table: str) -> tuple[int, int]:
        """(version, row count) of the table's latest version."""
        info = self.http.get(f"/api/v1/tables/{table}")
        assert info.status_code == 200, info.text
        count = self.http.get(f"/api/v1/tables/{table}/count")
        assert count.status_code == 200, count.text
        assert count.json()["count"] == info.json()["num_rows"]
        return info.json()["version"], info.json()["num_rows"]

    def rows(self, table: str) -> dict[str, dict[str, Any]]:
        response = self.http.post(f"/api/v1/tables/{table}/query", json={"limit": 10_000})
        assert response.status_code == 200, response.text
        return {r["id"]: {k: v for k, v in r.items() if k != "ingested_at"} for r in response.json()["rows"]}

    def image(self, table: str, key: str) -> bytes:
        response = self.http.get(f"/api/v1/tables/{table}/rows/{key}/image")
        assert response.status_code == 200, response.text
        return response.content

    def images(self, labels: dict[str, int], picture: int = 0, bad: tuple[str, ...] = ()) -> pa.Table:
        return pa.table({"id": list(labels),
                         "image": pa.array([NOT_AN_IMAGE if k in bad else self.pictures[picture] for k in labels],
                                           pa.binary()),
                         "label": pa.array(list(labels.values()), pa.int64())})


@pytest.fixture
def server(store: Store, live_server: Callable[[str], LiveServer]) -> LiveServer:
    return live_server(store.uri)


@pytest.fixture
def api(store: Store, in_process: Callable[..., InProcess], samples_dir: Path) -> Iterator[Api]:
    pictures = [(samples_dir / n).read_bytes() for n in ("horse.png", "chessboard_GRAY.png", "camera.webp")]
    with in_process(store.uri).http(timeout=120) as http:
        made = http.post("/api/v1/tables", json={"name": "t", "schema": [{"name": "label", "type": "int64"}]})
        assert made.status_code == 201, made.text
        api = Api(http, pictures)
        added = http.post("/api/v1/tables/t/rows", content=arrow_stream(api.images({f"r{i}": i for i in range(6)})),
                          headers={"content-type": ARROW})
        assert added.status_code == 201 and added.json()["inserted"] == 6, added.text
        yield api


class Watch:
    """The table's state around one write: the write's answer is checked against what changed."""

    def __init__(self, api: Api, table: str = "t") -> None:
        self.api, self.table = api, table
        self.version, self.count = api.state(table)
        self.before = api.rows(table)

    def changed(self, *, added: int = 0, removed: int = 0, versions: int = 1) -> dict[str, dict[str, Any]]:
        version, count = self.api.state(self.table)
        assert count - self.count == added - removed, (self.count, count, added, removed)
        assert version - self.version == versions, (self.version, version)
        after = self.api.rows(self.table)
        assert len(set(after) - set(self.before)) == added and len(set(self.before) - set(after)) == removed
        return after

    def unchanged(self) -> None:
        assert self.api.state(self.table) == (self.version, self.count)
        assert self.api.rows(self.table) == self.before


def updated_ids(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> set[str]:
    return {k for k in set(before) & set(after) if before[k] != after[k]}


# -- native ------------------------------------------------------------------------------------
def test_native_uploads_answer_what_they_wrote(api: Api) -> None:
    watch = Watch(api)
    files = [("files", ("n1.png", api.pictures[1], "image/png")), ("files", ("n2.png", api.pictures[1], "image/png")),
             ("files", ("bad.png", NOT_AN_IMAGE, "image/png"))]
    up = api.http.post("/api/v1/tables/t/rows", files=files)
    assert up.status_code == 201, up.text
    assert up.json()["inserted"] == 2 and [s["reason"] for s in up.json()["skipped"]] == ["not_an_image"]
    watch.changed(added=2)

    watch = Watch(api)  # Arrow, insert: an id already there is kept as it was
    up = api.http.post("/api/v1/tables/t/rows", content=arrow_stream(api.images({"r0": 100, "a1": 101}, picture=2)),
                       headers={"content-type": ARROW})
    assert up.status_code == 201 and (up.json()["inserted"], up.json()["updated"]) == (1, 0), up.text
    after = watch.changed(added=1)
    assert after["r0"] == watch.before["r0"]

    watch = Watch(api)  # Arrow, upsert
    up = api.http.post("/api/v1/tables/t/rows", params={"mode": "upsert"},
                       content=arrow_stream(api.images({"r0": 100, "r1": 101, "a2": 102}, picture=2)),
                       headers={"content-type": ARROW})
    assert up.status_code == 201 and (up.json()["inserted"], up.json()["updated"]) == (1, 2), up.text
    after = watch.changed(added=1)
    assert updated_ids(watch.before, after) == {"r0", "r1"}
    assert api.image("t", "r0") == api.pictures[2]


def test_native_refused_writes_change_nothing(api: Api) -> None:
    assert api.http.post("/api/v1/tables/t/tags", json={"name": "old"}).status_code == 201
    api.http.post("/api/v1/tables/t/rows", content=arrow_stream(api.images({"r9": 9})), headers={"content-type": ARROW})
    watch = Watch(api)
    every_file_bad = api.http.post("/api/v1/tables/t/rows", files=[("files", ("x.png", NOT_AN_IMAGE, "image/png"))])
    assert every_file_bad.json().get("inserted", 0) == 0, every_file_bad.text
    watch.unchanged()
    refused = [
        api.http.post("/api/v1/tables/t/rows", headers={"content-type": ARROW},
                      content=arrow_stream(pa.table({"id": ["z1"], "image": [api.pictures[0]],
                                                     "label": ["not a number"]}))),
        api.http.post("/api/v1/tables/t/rows", headers={"content-type": ARROW}, content=b"not arrow"),
        api.http.patch("/api/v1/tables/t/rows/r1", json={"label": "not a number"}),
        api.http.patch("/api/v1/tables/t/rows/r1", json={"nosuch": 1}),
        api.http.patch("/api/v1/tables/t/rows/r1", json={"sha256": "x"}),
        api.http.patch("/api/v1/tables/t/rows/nosuch", json={"label": 1}),
        api.http.delete("/api/v1/tables/t/rows/nosuch"),
        api.http.post("/api/v1/tables/t/delete", json={"filter": "nosuch = 1"}),
        api.http.post("/api/v1/tables/t/delete", json={"filter": ""}),
        api.http.post("/api/v1/tables/t/embeddings", json={"model": "no-such-model"}),
        api.http.post("/api/v1/tables/t/restore", json={"version": 999}),
        # a tag the new version could not take is refused before anything is written
        api.http.patch("/api/v1/tables/t/rows/r1", params={"tag": "lightbox-clone-x"}, json={"label": 5}),
        api.http.patch("/api/v1/tables/t/rows/r1", params={"tag": "old"}, json={"label": 5}),
        api.http.patch("/api/v1/tables/t/rows/r1", params={"tag": "bad..tag"}, json={"label": 5}),
        api.http.delete("/api/v1/tables/t/rows/r1", params={"tag": "old"}),
        api.http.post("/api/v1/tables/t/delete", json={"filter": "label = 1", "tag": "old"}),
        api.http.post("/api/v1/tables/t/rows", params={"tag": "old"}, headers={"content-type": ARROW},
                      content=arrow_stream(api.images({"z2": 1}))),
        api.http.post("/api/v1/tables/t/rows", params={"tag": "lightbox-clone-x"}, headers={"content-type": ARROW},
                      content=arrow_stream(api.images({"z2": 1}))),
    ]
    for response in refused:
        assert 400 <= response.status_code < 500, (response.request.method, response.request.url, response.text)
        assert set(response.json()["error"]) == {"code", "message", "detail"}
    watch.unchanged()


def test_native_row_writes_answer_what_they_changed(api: Api) -> None:
    watch = Watch(api)
    patched = api.http.patch("/api/v1/tables/t/rows/r2", json={"label": 22})
    assert patched.status_code == 200 and patched.json()["updated"] == 1, patched.text
    assert updated_ids(watch.before, watch.changed()) == {"r2"}

    watch = Watch(api)
    gone = api.http.delete("/api/v1/tables/t/rows/r3")
    assert gone.status_code == 200 and gone.json()["deleted"] == 1, gone.text
    watch.changed(removed=1)

    watch = Watch(api)
    matching = api.http.get("/api/v1/tables/t/count", params={"filter": "label >= 4"}).json()["count"]
    by_filter = api.http.post("/api/v1/tables/t/delete", json={"filter": "label >= 4"})
    assert by_filter.status_code == 200 and by_filter.json()["deleted"] == matching == 3, by_filter.text
    watch.changed(removed=3)

    watch = Watch(api)  # nothing matches: no version, nothing counted
    nothing = api.http.post("/api/v1/tables/t/delete", json={"filter": "label = 12345"})
    assert nothing.status_code == 200 and nothing.json()["deleted"] == 0, nothing.text
    watch.unchanged()

    watch = Watch(api)  # restore to before the deletions: the answer's row count is the table's
    restored = api.http.post("/api/v1/tables/t/restore", json={"version": watch.version - 3})
    assert restored.status_code == 200, restored.text
    after = watch.changed(added=3 + 1)
    assert restored.json()["num_rows"] == len(after) == 6

    watch = Watch(api)
    embedded = api.http.post("/api/v1/tables/t/embeddings", json={"model": "builtin"})
    assert embedded.status_code == 201, embedded.text
    assert embedded.json()["rows"] == watch.count and embedded.json()["failed"] == 0
    watch.changed()


def test_a_merge_answers_what_it_applied(api: Api) -> None:
    made = api.http.post("/api/v1/tables/t/branches", json={"name": "b"})
    assert made.status_code == 201, made.text
    up = api.http.post("/api/v1/tables/t/rows", params={"branch": "b", "mode": "upsert"},
                       content=arrow_stream(api.images({"b1": 1, "b2": 2, "r0": 50}, picture=1)),
                       headers={"content-type": ARROW})
    assert up.status_code == 201 and (up.json()["inserted"], up.json()["updated"]) == (2, 1), up.text
    assert api.http.delete("/api/v1/tables/t/rows/r5", params={"branch": "b"}).json()["deleted"] == 1

    watch = Watch(api)
    merged = api.http.post("/api/v1/tables/t/branches/b/merge", json={})
    assert merged.status_code == 200 and merged.json()["merged"], merged.text
    body = merged.json()
    assert (body["upserted"], body["removed"]) == (3, 1)
    assert (body["applied"]["inserted"], body["applied"]["updated"], body["applied"]["deleted"]) == (2, 1, 1)
    after = watch.changed(added=2, removed=1)
    assert updated_ids(watch.before, after) == {"r0"}

    watch = Watch(api)  # merging again applies nothing
    again = api.http.post("/api/v1/tables/t/branches/b/merge", json={})
    assert again.status_code == 200 and not again.json()["merged"] and again.json()["upserted"] == 0, again.text
    watch.unchanged()


# -- the LanceDB protocol ----------------------------------------------------------------------
def test_lancedb_add_and_overwrite_are_all_or_nothing(api: Api, server: LiveServer) -> None:
    tbl = lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url).open_table("t")

    watch = Watch(api)
    added = tbl.add(api.images({"l1": 1, "l2": 2}, picture=1))
    assert added.version == watch.version + 1
    watch.changed(added=2)

    # one bad image refuses the whole write: appended or overwriting, client or wire
    for mode in ("append", "overwrite"):
        watch = Watch(api)
        with pytest.raises(HttpError, match="422"):
            tbl.add(api.images({"l3": 3, "bad": 4}, bad=("bad",)), mode=mode)
        watch.unchanged()
        wire = api.http.post("/v1/table/t/insert/", params={"mode": mode}, headers={"content-type": ARROW},
                             content=arrow_stream(api.images({"bad": 4}, bad=("bad",))))
        assert wire.status_code == 422 and wire.json()["error"]["detail"]["refused"][0]["reason"] == "not_an_image"
        watch.unchanged()

    watch = Watch(api)  # append: ids already there are kept, and not counted
    wire = api.http.post("/v1/table/t/insert/", headers={"content-type": ARROW},
                         content=arrow_stream(api.images({"l1": 100, "l4": 4}, picture=2)))
    assert wire.status_code == 200 and wire.json()["num_inserted_rows"] == 1, wire.text
    after = watch.changed(added=1)
    assert after["l1"] == watch.before["l1"]

    watch = Watch(api)  # overwrite: one version; the counts are the rows gained, replaced and lost
    wire = api.http.post("/v1/table/t/insert/", params={"mode": "overwrite"}, headers={"content-type": ARROW},
                         content=arrow_stream(api.images({"r0": 100, "o1": 101}, picture=2)))
    assert wire.status_code == 200, wire.text
    body = wire.json()
    lost = len(watch.before) - 1
    assert (body["num_inserted_rows"], body["num_updated_rows"], body["num_deleted_rows"]) == (1, 1, lost)
    after = watch.changed(added=1, removed=lost)
    assert set(after) == {"r0", "o1"} and after["r0"]["label"] == 100
    assert api.image("t", "o1") == api.pictures[2]

    watch = Watch(api)
    tbl.add(api.images({"p1": 1}), mode="overwrite")
    assert set(watch.changed(added=1, removed=2)) == {"p1"}

    watch = Watch(api)  # re-creating the table over it: refused before the old one is dropped
    db = lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url)
    with pytest.raises(HttpError, match="422"):
        db.create_table("t", api.images({"c1": 1, "bad": 2}, bad=("bad",)), mode="overwrite")
    watch.unchanged()
    assert api.image("t", "p1") == api.pictures[0]
    with pytest.raises(HttpError, match="422"):  # nor does a refused create leave a table behind
        db.create_table("fresh", api.images({"c1": 1, "bad": 2}, bad=("bad",)))
    assert db.table_names() == ["t"]


def test_lancedb_merge_insert_update_and_delete_answer_what_they_changed(api: Api, server: LiveServer) -> None:
    tbl = lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url).open_table("t")

    watch = Watch(api)
    merged = (tbl.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
              .when_not_matched_by_source_delete("label >= 4")
              .execute(api.images({"r0": 100, "r1": 101, "m1": 7}, picture=1)))
    assert (merged.num_inserted_rows, merged.num_updated_rows, merged.num_deleted_rows) == (1, 2, 2)
    after = watch.changed(added=1, removed=2)  # one version for all three
    assert updated_ids(watch.before, after) == {"r0", "r1"}

    watch = Watch(api)  # update only: absent ids are not inserted
    merged = (tbl.merge_insert("id").when_matched_update_all()
              .execute(api.images({"r2": 102, "absent": 9}, picture=1)))
    assert (merged.num_inserted_rows, merged.num_updated_rows, merged.num_deleted_rows) == (0, 1, 0)
    assert updated_ids(watch.before, watch.changed()) == {"r2"}

    watch = Watch(api)  # insert only: existing ids are kept
    merged = tbl.merge_insert("id").when_not_matched_insert_all().execute(api.images({"r2": 5, "m2": 8}))
    assert (merged.num_inserted_rows, merged.num_updated_rows) == (1, 0)
    assert not updated_ids(watch.before, watch.changed(added=1))

    watch = Watch(api)  # a bad image refuses the whole merge, its deletions too
    with pytest.raises(HttpError, match="422"):
        (tbl.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
         .when_not_matched_by_source_delete().execute(api.images({"r0": 1, "bad": 2}, bad=("bad",))))
    watch.unchanged()

    watch = Watch(api)
    matching = tbl.count_rows("label < 100")
    assert tbl.update(where="label < 100", values={"label": 99}).rows_updated == matching
    after = watch.changed()
    assert len(updated_ids(watch.before, after)) == matching - sum(1 for r in watch.before.values()
                                                                   if r["label"] == 99)

    watch = Watch(api)
    with pytest.raises(HttpError):
        tbl.update(where="label = 99", values={"label": "not a number"})
    watch.unchanged()

    watch = Watch(api)
    assert tbl.delete("label = 99").num_deleted_rows == matching
    watch.changed(removed=matching)

    watch = Watch(api)
    assert tbl.delete("label = 12345").num_deleted_rows == 0
    watch.unchanged()


def test_lancedb_writes_on_a_plain_table(api: Api, server: LiveServer) -> None:
    db = lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url)
    tbl = db.create_table("plain", pa.table({"id": ["a", "b", "c"], "x": pa.array([1, 2, 3], pa.int64())}))

    watch = Watch(api, "plain")  # LanceDB's client casts to the schema itself: a row that does not fit, on the wire
    for mode in ("append", "overwrite"):
        wire = api.http.post("/v1/table/plain/insert/", params={"mode": mode}, headers={"content-type": ARROW},
                             content=arrow_stream(pa.table({"id": ["d", "e"], "x": ["4", "not a number"]})))
        assert wire.status_code == 422, wire.text
    watch.unchanged()

    watch = Watch(api, "plain")
    wire = api.http.post("/v1/table/plain/insert/", headers={"content-type": ARROW},
                         content=arrow_stream(pa.table({"id": ["a", "d"], "x": pa.array([10, 4], pa.int64())})))
    assert wire.status_code == 200 and wire.json()["num_inserted_rows"] == 1, wire.text
    watch.changed(added=1)

    watch = Watch(api, "plain")
    wire = api.http.post("/v1/table/plain/insert/", params={"mode": "overwrite"}, headers={"content-type": ARROW},
                         content=arrow_stream(pa.table({"id": ["a", "z"], "x": pa.array([10, 26], pa.int64())})))
    assert wire.status_code == 200, wire.text
    body = wire.json()
    assert (body["num_inserted_rows"], body["num_updated_rows"], body["num_deleted_rows"]) == (1, 1, 3)
    assert watch.changed(added=1, removed=3) == {"a": {"id": "a", "x": 10}, "z": {"id": "z", "x": 26}}

    watch = Watch(api, "plain")
    merged = (tbl.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
              .execute(pa.table({"id": ["z", "y"], "x": pa.array([0, 25], pa.int64())})))
    assert (merged.num_inserted_rows, merged.num_updated_rows) == (1, 1)
    watch.changed(added=1)

    watch = Watch(api, "plain")  # an empty overwrite empties the table, and says so
    wire = api.http.post("/v1/table/plain/insert/", params={"mode": "overwrite"}, headers={"content-type": ARROW},
                         content=arrow_stream(pa.table({"id": pa.array([], pa.string()),
                                                        "x": pa.array([], pa.int64())})))
    assert wire.status_code == 200 and wire.json()["num_deleted_rows"] == 3, wire.text
    watch.changed(removed=3)


def test_native_writes_on_a_plain_table(api: Api, server: LiveServer) -> None:
    db = lancedb.connect("db://lightbox", api_key="KEY", host_override=server.url)
    db.create_table("plain", pa.table({"id": ["a", "b"], "x": pa.array([1, 2], pa.int64())}))
    assert api.http.post("/api/v1/tables/plain/tags", json={"name": "old"}).status_code == 201
    api.http.patch("/api/v1/tables/plain/rows/a", json={"x": 10})

    def upload(rows: pa.Table, **params: str) -> httpx.Response:
        return api.http.post("/api/v1/tables/plain/rows", params=params, content=arrow_stream(rows),
                             headers={"content-type": ARROW})

    watch = Watch(api, "plain")
    for response in (upload(pa.table({"id": ["c"], "x": ["not a number"]})),
                     upload(pa.table({"id": ["c"], "x": [1.5]})),  # (a new column is added: test_schema_evolution)
                     upload(pa.table({"id": pa.array([None], pa.string()), "x": [3]})),
                     upload(pa.table({"id": ["c"], "x": [3]}), tag="old")):
        assert 400 <= response.status_code < 500, response.text
    watch.unchanged()

    watch = Watch(api, "plain")
    up = upload(pa.table({"id": ["a", "c", "c"], "x": pa.array([100, 3, 4], pa.int64())}))
    assert up.status_code == 201 and (up.json()["inserted"], up.json()["updated"]) == (1, 0), up.text
    assert watch.changed(added=1)["c"]["x"] == 3

    watch = Watch(api, "plain")
    up = upload(pa.table({"id": ["a", "d"], "x": pa.array([100, 5], pa.int64())}), mode="upsert", tag="new")
    assert up.status_code == 201 and (up.json()["inserted"], up.json()["updated"]) == (1, 1), up.text
    assert updated_ids(watch.before, watch.changed(added=1)) == {"a"}
    assert {t["name"] for t in api.http.get("/api/v1/tables/plain/tags").json()["tags"]} == {"old", "new"}
