"""The gallery's curation page in Chromium (``#/t/<table>/curate``), on the 200 digits with three labels
flipped, a copy of one digit added and the curate columns computed; a clone of the table from before
curate shows what a table without them gets.

The ranked list leads with the highest ``label_issue`` and shows its suggested label and nearest rows;
a duplicate group shows its original and its copy; relabelling a row and deleting a copy are each one
version carrying its message (checked through the API and on the history page), with and without API
keys; a saved view opens the grid through it with the count API's number of rows; axe-core finds no
serious accessibility problem.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import lightbox
from tests.browser import ARTIFACTS, Watch, serious_axe_violations
from tests.conftest import InProcess, LiveServer

pytestmark = pytest.mark.browser
FLIPS = {"0/00000.png": 8, "1/00001.png": 7, "2/00002.png": 5}
ORIGINAL, COPY = "5/00005.png", "copy-of-5.png"
RW_KEY, RO_KEY = "curate-read-write", "curate-read-only"


@pytest.fixture(scope="module")
def curated(root: str) -> str:
    """The module's digits with flipped labels and a copy, cloned as ``plain``, then curated; a saved view."""
    with lightbox.connect(root) as client:
        t = client.table("digits")
        copy = t.image_bytes(ORIGINAL)
        for row_id, wrong in FLIPS.items():
            t.update(row_id, {"label": wrong}, message="a wrong label")
        t.add([copy], metadata=[{"label": 5}], ids=[COPY])
    app = InProcess(root)
    try:
        http = app.http()
        assert http.post("/api/v1/tables/digits/clone", json={"name": "plain"}).status_code == 201
        assert http.post("/api/v1/tables/digits/curate", json={"label": "label"}).status_code == 201
        assert http.put("/api/v1/tables/digits/views/fives",
                        json={"filter": "label = 5", "order_by": ["uniqueness desc"]}).status_code == 200
    finally:
        app.close()
    return root


@pytest.fixture(scope="module")
def server(curated: str) -> Iterator[LiveServer]:
    live = LiveServer(curated).start()
    yield live
    live.stop()


def head(page: object, server: LiveServer, table: str = "digits") -> dict:
    return page.request.get(f"{server.url}/api/v1/tables/{table}/versions", params={"limit": "1"}).json()[0]


def top_issue(page: object, server: LiveServer) -> dict:
    return page.request.post(f"{server.url}/api/v1/tables/digits/query", data={
        "order_by": ["label_issue desc"], "limit": 1, "columns": ["id", "label", "suggested_label", "label_issue"]}
    ).json()["rows"][0]


def test_ranked_rows_with_suggestions_and_neighbours_and_duplicate_groups(page: object, server: LiveServer) -> None:
    page.goto(server.url + "/")
    page.locator('article.card[data-table="digits"] a', has_text="curate").click()  # linked: it has the columns
    page.wait_for_url(re.compile(r"#/t/digits/curate"))
    assert page.locator('article.card[data-table="plain"] a', has_text="curate").count() == 0
    first = page.locator("#issues li.issue").first
    first.wait_for()
    top = top_issue(page, server)
    assert abs(float(first.get_attribute("data-issue")) - top["label_issue"]) < 1e-6
    assert first.get_attribute("data-id") in FLIPS  # a flipped label leads, as curate found
    assert first.locator(".suggested").inner_text() == str(top["suggested_label"])
    assert first.locator(".label").inner_text() == str(FLIPS[first.get_attribute("data-id")])
    assert first.locator("button.accept").inner_text() == f"Relabel to {top['suggested_label']}"
    neighbours = first.locator(".neighbours a.cell")
    neighbours.first.wait_for()
    assert neighbours.count() == 5
    assert first.get_attribute("data-id") not in neighbours.evaluate_all("cs => cs.map(c => c.dataset.id)")
    assert all("label: " in text for text in neighbours.all_inner_texts())
    group = page.locator(f'#groups .group[data-original="{ORIGINAL}"]')
    group.wait_for()
    assert group.locator(".original a.cell").get_attribute("data-id") == ORIGINAL
    assert group.locator(".copy a.cell").evaluate_all("cs => cs.map(c => c.dataset.id)") == [COPY]
    page.wait_for_function("[...document.querySelectorAll('#view img')].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(ARTIFACTS / "gallery_curate.png"), full_page=True)
    assert not serious_axe_violations(page)


def test_relabelling_is_one_version_with_its_message(page: object, server: LiveServer) -> None:
    before = head(page, server)["version"]
    page.goto(server.url + "/#/t/digits/curate")
    first = page.locator("#issues li.issue").first
    first.wait_for()
    row_id = first.get_attribute("data-id")
    was, suggested = first.locator(".label").inner_text(), first.locator(".suggested").inner_text()
    first.locator('input[name="label"]').fill("seven")  # not a whole number: refused here, nothing written
    first.locator('button[type="submit"]').click()
    assert "whole numbers" in first.locator(".error").inner_text()
    first.locator("button.accept").click()
    page.locator("#curate-notice").wait_for()
    page.wait_for_url(re.compile(rf"version={before + 1}"))
    entry = head(page, server)
    message = f"relabel row {row_id}: {was} -> {suggested} (curation)"
    assert (entry["version"], entry["operation"], entry["message"]) == (before + 1, "update", message)
    assert entry["rows_updated"] == 1
    row = page.request.get(f"{server.url}/api/v1/tables/digits/rows/{row_id}").json()
    assert str(row["label"]) == suggested
    page.goto(server.url + "/#/t/digits/history")
    assert message in page.locator(f'#log tr[data-version="{before + 1}"]').inner_text()
    page.goto(server.url + f"/#/t/digits/curate?version={before}")  # an older version: shown, not written to
    page.locator("#read-only-ref").wait_for()
    page.locator("#issues li.issue").first.wait_for()
    assert page.locator("#issues button").count() == 0


def test_deleting_a_copy_is_one_version_with_its_message(page: object, server: LiveServer) -> None:
    before = head(page, server)["version"]
    page.goto(server.url + "/#/t/digits/curate")
    copy = page.locator(f'#groups .copy[data-id="{COPY}"]')
    copy.wait_for()
    copy.locator("button.delete").click()
    page.locator("#curate-notice").wait_for()
    page.wait_for_url(re.compile(rf"version={before + 1}"))
    entry = head(page, server)
    assert (entry["version"], entry["operation"], entry["rows_removed"]) == (before + 1, "delete", 1)
    assert entry["message"] == f"delete copy {COPY} of {ORIGINAL} (curation)"
    assert page.request.get(f"{server.url}/api/v1/tables/digits/rows/{COPY}").status == 404
    assert page.request.get(f"{server.url}/api/v1/tables/digits/rows/{ORIGINAL}").status == 200
    page.locator("#duplicates p.muted", has_text="No duplicates").wait_for()


def test_a_saved_view_is_listed_and_opens_the_grid_through_it(page: object, server: LiveServer) -> None:
    page.goto(server.url + "/#/t/digits/curate")
    view = page.locator('#views tr[data-view="fives"]')
    view.wait_for()
    assert "label = 5" in view.inner_text() and "uniqueness desc" in view.inner_text()
    view.locator("a").click()
    page.wait_for_url(re.compile(r"#/t/digits\?view=fives"))
    page.wait_for_function("document.querySelector('#grid-status')?.textContent.includes(' of ')")
    count = page.request.get(f"{server.url}/api/v1/tables/digits/count", params={"view": "fives"}).json()["count"]
    assert count > 0 and f"{count} shown of {count} rows in view fives" in page.locator("#grid-status").inner_text()
    assert page.locator("#grid a.cell").count() == count


def test_a_table_without_the_columns_says_how_and_computes_them(page: object, server: LiveServer) -> None:
    before = head(page, server, "plain")["version"]
    page.goto(server.url + "/#/t/plain/curate")
    how = page.locator("#curate-cli")
    how.wait_for()
    text = how.inner_text()
    assert "lightbox curate plain --label" in text and "POST /api/v1/tables/plain/curate" in text
    assert page.locator("#curate-label").input_value() == "label"
    assert not serious_axe_violations(page)
    page.click('#curate-form button[type="submit"]')
    page.locator("#issues li.issue").first.wait_for()
    entry = head(page, server, "plain")
    assert (entry["version"], entry["operation"]) == (before + 1, "curate")
    assert "curated in version" in page.locator("#curate-notice").inner_text()


def test_with_keys_a_read_only_key_cannot_relabel_and_a_read_write_key_can(browser: object, curated: str,
                                                                           tmp_path: Path) -> None:
    shutil.copytree(curated, tmp_path / "data")  # its own copy: its writes stay out of the module's table
    keyed = LiveServer(str(tmp_path / "data"), api_keys=f"{RW_KEY},{RO_KEY}:ro").start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    watch = Watch(page, keyed.url)
    watch.allowed.update({401, 403})
    auth = {"x-api-key": RO_KEY}
    try:
        page.goto(keyed.url + "/#/t/digits/curate")
        page.locator("#key-dialog").wait_for()
        page.fill("#key-input", RO_KEY)
        page.click('#key-form button[type="submit"]')
        first = page.locator("#issues li.issue:has(button.accept)").first  # a row whose label differs
        first.wait_for()
        before = page.request.get(f"{keyed.url}/api/v1/tables/digits", headers=auth).json()["version"]
        first.locator("button.accept").click()
        assert "read-only" in first.locator(".error").inner_text()
        assert page.request.get(f"{keyed.url}/api/v1/tables/digits", headers=auth).json()["version"] == before
        page.click("#key-button")
        page.fill("#key-input", RW_KEY)
        page.click('#key-form button[type="submit"]')
        first = page.locator("#issues li.issue:has(button.accept)").first
        first.wait_for()
        first.locator("button.accept").click()
        page.wait_for_url(re.compile(rf"version={before + 1}"))
        entry = page.request.get(f"{keyed.url}/api/v1/tables/digits/versions", params={"limit": "1"},
                                 headers=auth).json()[0]
        assert entry["version"] == before + 1 and entry["message"].endswith("(curation)")
        watch.check()
    finally:
        context.close()
        keyed.stop()
