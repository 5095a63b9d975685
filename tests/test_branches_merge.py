"""Branches, diff and merge over HTTP (the service's app in this process) on a real Lance store.

A branch forks a table at latest, a version or a tag; reads and writes take ``?branch=``. A diff
between two refs lists ids added, removed and changed (with the changed columns). A merge applies
what a branch added, changed and removed since its fork to the target as one version, and refuses
(409) when the same id changed differently on both sides unless told which side wins.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from app.store import Store
from tests.helpers import arrow_stream, assert_error

ARROW = "application/vnd.apache.arrow.stream"
T = "/api/v1/tables/t"


class Tab:
    """The test's view of table ``t`` over HTTP."""

    def __init__(self, http: httpx.Client, pictures: list[bytes]) -> None:
        self.http = http
        self.pictures = pictures

    def version(self, branch: str | None = None) -> int:
        response = self.http.get(T, params={"branch": branch} if branch else {})
        assert response.status_code == 200, response.text
        return response.json()["version"]

    def log_length(self, branch: str | None = None) -> int:
        return len(self.http.get(f"{T}/versions", params={"limit": 1000, **({"branch": branch} if branch else {})})
                   .json())

    def add(self, labels: dict[str, int], *, picture: int = 0, branch: str | None = None, mode: str = "insert",
            **params: str) -> dict[str, Any]:
        """Image rows (real image bytes) with a label each, as one version."""
        ids = list(labels)
        rows = pa.table({"id": ids, "image": pa.array([self.pictures[picture]] * len(ids), pa.binary()),
                         "label": pa.array(list(labels.values()), pa.int64())})
        query = {"mode": mode, **params, **({"branch": branch} if branch else {})}
        response = self.http.post(f"{T}/rows", content=arrow_stream(rows),
                                  headers={"content-type": ARROW}, params=query)
        assert response.status_code == 201, response.text
        assert response.json()["skipped"] == [], response.text
        return response.json()

    def patch(self, key: str, values: dict[str, Any], branch: str | None = None) -> int:
        response = self.http.patch(f"{T}/rows/{key}", json=values, params={"branch": branch} if branch else {})
        assert response.status_code == 200, response.text
        return response.json()["version"]

    def delete(self, key: str, branch: str | None = None) -> int:
        response = self.http.delete(f"{T}/rows/{key}", params={"branch": branch} if branch else {})
        assert response.status_code == 200, response.text
        return response.json()["version"]

    def labels(self, **ref: Any) -> dict[str, int]:
        response = self.http.post(f"{T}/query", params=ref, json={"columns": ["id", "label"], "limit": 10_000})
        assert response.status_code == 200, response.text
        return {r["id"]: r["label"] for r in response.json()["rows"]}

    def image(self, key: str, **ref: Any) -> bytes:
        response = self.http.get(f"{T}/rows/{key}/image", params=ref)
        assert response.status_code == 200, response.text
        return response.content

    def branch(self, name: str, **ref: Any) -> dict[str, Any]:
        response = self.http.post(f"{T}/branches", json={"name": name, **ref})
        assert response.status_code == 201, response.text
        return response.json()

    def diff(self, a: str | int, b: str | int, **params: Any) -> dict[str, Any]:
        response = self.http.get(f"{T}/diff", params={"from": str(a), "to": str(b), **params})
        assert response.status_code == 200, response.text
        return response.json()

    def merge(self, branch: str, **body: Any) -> httpx.Response:
        return self.http.post(f"{T}/branches/{branch}/merge", json=body)


@pytest.fixture
def tab(store: Store, in_process, samples_dir: Path) -> Tab:
    """Table ``t`` with rows r0..r4 (labels 0..4), tagged ``base``."""
    pictures = [(samples_dir / n).read_bytes() for n in ("horse.png", "chessboard_GRAY.png", "multipage.tif")]
    with in_process(store.uri).http() as http:
        made = http.post("/api/v1/tables", json={"name": "t", "schema": [{"name": "label", "type": "int64"}]})
        assert made.status_code == 201, made.text
        t = Tab(http, pictures)
        t.add({f"r{i}": i for i in range(5)}, tag="base", message="five rows")
        yield t


# -- branches ----------------------------------------------------------------------------------
def test_branches_from_latest_version_and_tag(tab: Tab) -> None:
    base = tab.version()
    tab.add({"r5": 5})
    latest = tab.version()

    made = tab.branch("from-latest")
    assert (made["parent_branch"], made["parent_version"], made["version"]) == (None, latest, latest)
    assert tab.branch("from-version", version=base)["parent_version"] == base
    assert tab.branch("from-tag", tag="base")["parent_version"] == base

    listed = {b["name"]: b for b in tab.http.get(f"{T}/branches").json()["branches"]}
    assert set(listed) == {"from-latest", "from-version", "from-tag"}
    assert (listed["from-latest"]["parent_version"], listed["from-latest"]["num_rows"]) == (latest, 6)
    assert (listed["from-version"]["parent_version"], listed["from-version"]["num_rows"]) == (base, 5)
    assert set(tab.http.get(T).json()["branches"]) == set(listed)

    # reads at a branch are its own, and say so
    read = tab.http.get(f"{T}/count", params={"branch": "from-tag"})
    assert read.json() == {"count": 5} and read.headers["x-lightbox-branch"] == "from-tag"
    assert tab.labels(branch="from-latest") == {f"r{i}": i for i in range(6)}

    # writes at a branch leave main alone, and each is one version of the branch
    main_before, branch_before = tab.version(), tab.log_length("from-tag")
    tab.add({"b1": 11}, branch="from-tag", picture=1)
    tab.patch("r0", {"label": 100}, branch="from-tag")
    tab.delete("r1", branch="from-tag")
    assert tab.log_length("from-tag") == branch_before + 3
    assert tab.version() == main_before
    assert tab.labels() == {f"r{i}": i for i in range(6)}
    assert tab.labels(branch="from-tag") == {"r0": 100, "r2": 2, "r3": 3, "r4": 4, "b1": 11}
    assert tab.image("b1", branch="from-tag") == tab.pictures[1]
    assert tab.http.get(f"{T}/rows/b1").status_code == 404
    assert tab.labels(branch="from-version") == {f"r{i}": i for i in range(5)}  # a sibling is untouched
    newest = tab.http.get(f"{T}/versions", params={"branch": "from-tag"}).json()[0]
    assert newest["branch"] == "from-tag" and newest["operation"]


def test_branch_refusals_and_delete(tab: Tab) -> None:
    tab.branch("exp")
    assert_error(tab.http.post(f"{T}/branches", json={"name": "exp"}), 409)
    assert_error(tab.http.post(f"{T}/branches", json={"name": "main"}), 400)
    assert_error(tab.http.post(f"{T}/branches", json={"name": "no/slash"}), 400)
    assert_error(tab.http.post(f"{T}/branches", json={"name": "x", "version": 999}), 404)
    assert_error(tab.http.post(f"{T}/branches", json={"name": "x", "tag": "nope"}), 404)
    assert_error(tab.http.post(f"{T}/branches", json={"name": "x", "version": 1, "tag": "base"}), 400)
    assert_error(tab.http.post("/api/v1/tables/nope/branches", json={"name": "x"}), 404, "table_not_found")
    assert_error(tab.http.delete(f"{T}/branches/ghost"), 404, "branch_not_found")
    assert_error(tab.http.get(f"{T}/count", params={"branch": "ghost"}), 404)
    assert_error(tab.http.patch(f"{T}/rows/r0", params={"branch": "ghost"}, json={"label": 1}), 404)
    assert_error(tab.http.delete(f"{T}/rows/r0", params={"branch": "ghost"}), 404)
    assert_error(tab.http.post(f"{T}/delete", params={"branch": "ghost"}, json={"filter": "true"}), 404)
    assert "ghost" not in tab.http.get(T).json()["branches"]
    # an image upload to a new branch creates it from main's latest, as `lightbox ingest --branch` does
    main_version = tab.version()
    pushed = tab.http.post(f"{T}/rows", params={"branch": "pushed"}, files=[("f", ("a.png", tab.pictures[0]))])
    assert pushed.status_code == 201, pushed.text
    assert tab.http.get(T).json()["branches"]["pushed"]["parent_version"] == main_version
    assert set(tab.labels(branch="pushed")) == {"r0", "r1", "r2", "r3", "r4", "a.png"}
    assert tab.version() == main_version
    assert tab.http.delete(f"{T}/branches/pushed").status_code == 204

    # a tag on the branch pins it: deleting the branch is a conflict until the tag goes
    tab.add({"e1": 1}, branch="exp")
    tagged = tab.http.post(f"{T}/tags", json={"name": "exp-tag", "branch": "exp"})
    assert tagged.status_code == 201 and tagged.json()["branch"] == "exp", tagged.text
    assert assert_error(tab.http.delete(f"{T}/branches/exp"), 409)["detail"] == {"branch": "exp"}
    assert tab.labels(tag="exp-tag")["e1"] == 1
    assert tab.http.delete(f"{T}/tags/exp-tag").status_code == 204
    assert tab.http.delete(f"{T}/branches/exp").status_code == 204
    assert tab.http.get(f"{T}/branches").json() == {"branches": []}
    assert_error(tab.http.get(f"{T}/count", params={"branch": "exp"}), 404)
    assert tab.labels() == {f"r{i}": i for i in range(5)}  # main never saw e1
    tab.branch("exp")  # the name is free again, forked from main as it is now
    assert tab.labels(branch="exp") == tab.labels()


# -- diff --------------------------------------------------------------------------------------
def test_diff_between_refs_lists_ids_and_changed_columns(tab: Tab) -> None:
    base = tab.version()
    tab.branch("side", tag="base")
    tab.patch("r1", {"label": 10})
    tab.add({"r2": 2}, mode="upsert", picture=2)  # same label, different image bytes
    tab.delete("r3")
    tab.add({"r5": 5})
    head = tab.version()

    expected = {"added": ["r5"], "removed": ["r3"]}
    for a, b in (("base", "main"), (base, head), ("side", "main"), (base, "HEAD")):
        got = tab.diff(a, b)
        assert got["counts"] == {"added": 1, "removed": 1, "changed": 2}, (a, b)
        assert {"added": got["added"], "removed": got["removed"]} == expected, (a, b)
        changed = {c["id"]: c["columns"] for c in got["changed"]}
        assert changed["r1"] == ["label"]
        values = {c["id"]: c["values"] for c in got["changed"]}
        assert values["r1"] == {"label": {"from": 1, "to": 10}}  # old -> new, as the gallery shows it
        assert "sha256" in values["r2"] and "image" not in values["r2"]  # the digest stands for the bytes
        assert "sha256" in changed["r2"] and "label" not in changed["r2"] and "id" not in changed["r2"]
        assert got["from"]["version"] == base and got["to"]["version"] == head
    assert tab.diff("main", "side")["counts"] == {"added": 1, "removed": 1, "changed": 2}
    assert tab.diff("main", "side")["added"] == ["r3"]  # the reverse direction
    assert tab.diff("base", "side")["counts"] == {"added": 0, "removed": 0, "changed": 0}
    assert tab.diff(head, head)["counts"] == {"added": 0, "removed": 0, "changed": 0}
    # the sha256 the diff compares is the image's
    assert tab.http.get(f"{T}/rows/r2").json()["sha256"] == hashlib.sha256(tab.pictures[2]).hexdigest()

    # the branch's side of a diff
    tab.patch("r0", {"label": 50}, branch="side")
    side = tab.diff("base", "side")
    assert side["to"]["branch"] == "side"
    assert side["changed"] == [{"id": "r0", "columns": ["label"], "values": {"label": {"from": 0, "to": 50}}}]
    # a branch against its fork point, written BRANCH@VERSION (main@N for main's)
    fork = tab.http.get(f"{T}/branches").json()["branches"]
    point = next(b for b in fork if b["name"] == "side")
    since = tab.diff(f"{point['parent_branch'] or 'main'}@{point['parent_version']}", "side")
    assert since["from"] == {"version": base, "branch": None} and since["changed"][0]["id"] == "r0"
    assert tab.diff(f"side@{tab.version('side')}", "side")["counts"]["changed"] == 0
    assert_error(tab.http.get(f"{T}/diff", params={"from": "nobranch@1", "to": "main"}), 400)

    assert_error(tab.http.get(f"{T}/diff", params={"from": "no-such-ref", "to": "main"}), 400)
    assert_error(tab.http.get(f"{T}/diff", params={"from": "999", "to": "main"}), 404)
    assert_error(tab.http.get(f"{T}/diff", params={"to": "main"}), 400)
    assert_error(tab.http.get(f"{T}/diff", params={"from": "base", "cursor": "x"}), 400)
    assert_error(tab.http.get("/api/v1/tables/nope/diff", params={"from": "1"}), 404, "table_not_found")


def test_diff_pages_with_limit_and_cursor(tab: Tab) -> None:
    tab.add({f"n{i:02d}": i for i in range(12)})
    tab.delete("r0")
    seen: list[str] = []
    removed: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = tab.diff("base", "main", limit=5, **({"cursor": cursor} if cursor else {}))
        assert page["counts"] == {"added": 12, "removed": 1, "changed": 0}  # counts are always whole
        assert len(page["added"]) <= 5
        seen += page["added"]
        removed += page["removed"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"n{i:02d}" for i in range(12)] and removed == ["r0"]


def test_diff_counts_rows_whose_vectors_alone_changed_instead_of_listing_them(tab: Tab) -> None:
    before = tab.version()
    tab.patch("r1", {"label": 8})
    embedded = tab.http.post(f"{T}/embeddings", json={"model": "builtin"})
    assert embedded.status_code == 201, embedded.text
    listed = tab.diff(before, "main")
    rows = listed["counts"]["changed"]
    assert rows > 2 and listed["vectors_only"] == rows - 1
    assert len(listed["changed"]) == rows  # listed by default, as before
    counted = tab.diff(before, "main", vectors="count")
    assert counted["counts"] == listed["counts"] and counted["vectors_only"] == listed["vectors_only"]
    assert [c["id"] for c in counted["changed"]] == ["r1"]  # only the row a person changed
    assert counted["changed"][0]["values"] == {"label": {"from": 1, "to": 8}}  # the vector's values are not sent
    assert "vector" in counted["changed"][0]["columns"]
    assert_error(tab.http.get(f"{T}/diff", params={"from": str(before), "vectors": "some"}), 400)


# -- merge -------------------------------------------------------------------------------------
def test_merge_applies_adds_changes_and_deletes_as_one_version(tab: Tab) -> None:
    tab.branch("feat")
    tab.add({"n1": 21, "n2": 22}, branch="feat", picture=1)
    tab.patch("r1", {"label": 11}, branch="feat")
    tab.add({"r2": 2}, branch="feat", mode="upsert", picture=2)  # new bytes under an old id
    tab.delete("r3", branch="feat")
    tab.patch("r4", {"label": 44})  # main moves on too, elsewhere
    before, log_before = tab.version(), tab.log_length()

    merged = tab.merge("feat")
    assert merged.status_code == 200, merged.text
    body = merged.json()
    assert body["merged"] is True and body["conflicts"] == [] and body["into"] == "main"
    assert (body["upserted"], body["removed"]) == (4, 1)
    assert body["version"] == tab.version() == before + 1 and tab.log_length() == log_before + 1
    assert tab.labels() == {"r0": 0, "r1": 11, "r2": 2, "r4": 44, "n1": 21, "n2": 22}
    assert tab.image("n1") == tab.pictures[1] and tab.image("r2") == tab.pictures[2]
    assert tab.image("r0") == tab.pictures[0]
    assert tab.http.get(f"{T}/rows/r2").json()["sha256"] == hashlib.sha256(tab.pictures[2]).hexdigest()
    assert tab.http.get(f"{T}/versions").json()[0]["message"] == "merge feat into main"
    assert tab.labels(branch="feat")["r4"] == 4  # a merge does not touch the branch

    # after the merge, main and the branch differ only where main moved on
    assert {c["id"] for c in tab.diff("main", "feat")["changed"]} == {"r4"}

    # merging again is a no-op
    again = tab.merge("feat")
    assert again.status_code == 200 and again.json()["merged"] is False, again.text
    assert tab.version() == before + 1 and tab.log_length() == log_before + 1

    # new work on the branch merges on its own, with the message given
    tab.add({"n3": 23}, branch="feat")
    third = tab.merge("feat", message="more from feat", author="eve")
    assert third.json()["merged"] is True and third.json()["upserted"] == 1
    newest = tab.http.get(f"{T}/versions").json()[0]
    assert (newest["message"], newest["author"]) == ("more from feat", "eve")
    assert tab.labels()["n3"] == 23 and tab.labels()["r4"] == 44


@pytest.fixture
def conflicted(tab: Tab) -> Tab:
    """Branch ``feat`` and main both changed r1 (differently), r2 (identically) and r3 (deleted on the
    branch, patched on main); the branch also added n1; main also changed r4."""
    tab.branch("feat")
    tab.patch("r1", {"label": 100}, branch="feat")
    tab.patch("r1", {"label": 200})
    tab.patch("r2", {"label": 7}, branch="feat")
    tab.patch("r2", {"label": 7})
    tab.delete("r3", branch="feat")
    tab.patch("r3", {"label": 33})
    tab.add({"n1": 21}, branch="feat")
    tab.patch("r4", {"label": 44})
    return tab


def test_conflicting_changes_are_a_409_listing_the_ids(conflicted: Tab) -> None:
    tab = conflicted
    before, labels = tab.version(), tab.labels()
    error = assert_error(tab.merge("feat"), 409, "merge_conflict")
    assert error["detail"]["conflicts"] == ["r1", "r3"]  # r2 changed the same way on both: no conflict
    assert error["detail"]["count"] == 2
    assert tab.version() == before and tab.labels() == labels
    assert_error(tab.merge("feat", on_conflict="fail"), 409, "merge_conflict")
    assert_error(tab.merge("ghost"), 404, "branch_not_found")
    assert_error(tab.merge("feat", on_conflict="maybe"), 400)
    assert tab.version() == before


@pytest.mark.parametrize("side", ["theirs", "ours"])
def test_on_conflict_picks_a_side(conflicted: Tab, side: str) -> None:
    tab = conflicted
    before = tab.version()
    merged = tab.merge("feat", on_conflict=side)
    assert merged.status_code == 200, merged.text
    assert merged.json()["conflicts"] == ["r1", "r3"] and merged.json()["merged"] is True
    assert tab.version() == before + 1
    common = {"r0": 0, "r2": 7, "r4": 44, "n1": 21}  # the branch's add is applied either way
    if side == "theirs":
        assert tab.labels() == {**common, "r1": 100}  # and r3 deleted, as on the branch
    else:
        assert tab.labels() == {**common, "r1": 200, "r3": 33}
    again = tab.merge("feat", on_conflict=side)
    assert again.status_code == 200 and again.json()["merged"] is False, again.text
    assert tab.version() == before + 1


def test_merge_into_another_branch(tab: Tab) -> None:
    tab.branch("release")
    tab.branch("fix")
    tab.patch("r0", {"label": 9}, branch="fix")
    merged = tab.merge("fix", into="release")
    assert merged.status_code == 200 and merged.json()["into"] == "release", merged.text
    assert tab.labels(branch="release")["r0"] == 9
    assert tab.labels()["r0"] == 0  # main untouched
