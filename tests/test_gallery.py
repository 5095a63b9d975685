"""The gallery in a real browser: Debian's Chromium driven by Playwright against a real server on
demo-like data (the ``digits`` table: tag ``v1`` on the first write, later rows, a changed image,
a builtin vector column).

Every test fails on a browser console error, a failed request, a request that leaves the server
(the pages must work offline), or an HTTP error status the flow does not expect. Screenshots go to
``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.browser import ARTIFACTS, Watch, requested
from tests.conftest import LiveServer
from tests.gallery_data import CHANGED_ID, build_digits

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

RO_KEY, RW_KEY = "gallery-read-only", "gallery-read-write"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return build_digits(tmp_path_factory.mktemp("gallery"))


@pytest.fixture(scope="module")
def server(digits: dict[str, object]) -> Iterator[LiveServer]:
    live = LiveServer(str(digits["uri"])).start()
    yield live
    live.stop()



def cells(page: object) -> object:
    return page.locator("#grid a.cell")


def test_tables_page_lists_the_table_with_tags_and_vectors(page: object, server: LiveServer, digits: dict) -> None:
    page.goto(server.url + "/")
    card = page.locator('article.card[data-table="digits"]')
    card.wait_for()
    text = card.inner_text()
    assert f"{digits['rows']} rows" in text
    assert "v1" in text and "vector · builtin" in text


def test_docs_and_redoc_work_offline(page: object, server: LiveServer) -> None:
    page.goto(server.url + "/docs")
    page.locator(".swagger-ui .opblock").first.wait_for()
    assert page.locator(".swagger-ui .opblock").count() > 20
    page.goto(server.url + "/redoc")
    page.locator("h2", has_text="Get Thumbnail").first.wait_for()


def test_grid_pages_by_cursor_as_it_scrolls_and_keyboard_opens_rows(page: object, server: LiveServer,
                                                                     digits: dict) -> None:
    page.goto(server.url + "/#/t/digits")
    page.wait_for_function("document.querySelectorAll('#grid a.cell').length === 100")
    page.wait_for_function("document.querySelector('#grid-status')?.textContent.includes(' of ')")
    assert page.locator("#grid-status").inner_text().startswith(f"100 shown of {digits['rows']} rows")
    # an 8x8 PNG is smaller than its thumbnail would be: the page's originals come in one request,
    # pinned to the version the ref resolved to, byte for byte
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    first = page.locator("#grid a.cell").first
    src = first.locator("img").get_attribute("src")
    original = (Path(digits["digits"]) / first.get_attribute("data-id")).read_bytes()
    assert src == "data:image/png;base64," + base64.b64encode(original).decode()
    fetches = [u for _, u in page.watch.statuses if "/fetch" in u]
    assert fetches == [f"{server.url}/api/v1/tables/digits/fetch?version=3"]
    assert not [u for _, u in page.watch.statuses if "/rows/" in u]
    # the per-image routes the gallery uses otherwise are cached for good when pinned
    for route in ("image", "thumbnail"):
        url = f"{server.url}/api/v1/tables/digits/rows/0/00000.png/{route}?version=3"
        assert page.request.get(url).headers["cache-control"] == "public, max-age=31536000, immutable"
    page.locator(".sentinel").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelectorAll('#grid a.cell').length === 200")
    assert page.locator("#grid").get_attribute("data-pages") == "2"
    assert len([u for _, u in page.watch.statuses if "/fetch" in u]) == 2
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    assert page.evaluate("[...document.images].filter(i => !i.alt).length") == 0
    # keyboard: Tab reaches the thumbnails, Enter opens a row, Escape comes back to the same grid
    page.locator("#grid a.cell").nth(150).focus()
    opened = page.locator("#grid a.cell").nth(150).get_attribute("data-id")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.id") != opened
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.locator("#row-fields").wait_for()
    assert opened in page.locator("h1").inner_text()
    page.locator("#row-history table").wait_for()  # the row page's own reads are done
    before = len(page.watch.requests)
    page.keyboard.press("Escape")
    page.wait_for_function("document.querySelectorAll('#grid a.cell').length === 200")
    page.wait_for_timeout(200)
    assert not [u for u in page.watch.requests[before:] if "/rows/" in u or "/fetch" in u]  # coming back is free


def test_filter_with_a_typo_shows_the_validator_message(page: object, server: LiveServer) -> None:
    page.watch.allowed.add(400)
    page.goto(server.url + "/#/t/digits")
    cells(page).first.wait_for()
    page.fill("#filter", "lable = 3")
    page.press("#filter", "Enter")
    error = page.locator("#grid-errors .error")
    error.wait_for()
    assert "unknown column 'lable'" in error.inner_text() and "did you mean 'label'" in error.inner_text()
    assert cells(page).count() == 0
    page.fill("#filter", "label = 3")
    page.press("#filter", "Enter")
    cells(page).first.wait_for()
    assert "filter=label" in page.url
    page.reload()  # the URL carries the filter
    page.wait_for_function("document.querySelectorAll('#grid a.cell').length > 0")
    labels = page.locator("#grid .cell .meta").filter(has_text="label:").all_inner_texts()
    assert labels and all(t == "label: 3" for t in labels)


def test_row_page_shows_metadata_history_and_downloads_the_original(page: object, server: LiveServer,
                                                                   digits: dict) -> None:
    page.goto(server.url + "/#/t/digits?filter=label%20%3D%203")
    cells(page).first.wait_for()
    page.select_option("#sort", "id")  # the changed row was rewritten last: sort by id to bring it first
    page.wait_for_url(re.compile(r"sort=id"))
    page.wait_for_function(f"document.querySelector('#grid a.cell')?.dataset.id === '{CHANGED_ID}'")
    page.locator("#grid a.cell").first.click()
    page.locator("#row-fields").wait_for()
    original = (Path(digits["uri"]).parent / "sources" / "replaced" / CHANGED_ID).read_bytes()
    fields = page.locator("#row-fields").inner_text()
    assert hashlib.sha256(original).hexdigest() in fields and "label\t3" in fields
    assert page.locator("#row-image").get_attribute("alt").startswith(f"image {CHANGED_ID}")
    with page.expect_download() as download:
        page.click("#download")
    assert Path(download.value.path()).read_bytes() == original
    history = page.locator("#row-history table")
    history.wait_for()
    assert history.locator('tr[data-what="added"]').get_attribute("data-version") == "1"
    changed = history.locator('tr[data-what="changed"]')
    assert changed.get_attribute("data-version") == "3" and "invert one digit" in changed.inner_text()


def test_deep_tiffs_render_like_thumbnails_on_the_row_page(page: object, server: LiveServer) -> None:
    page.goto(f"{server.url}/#/t/deep")
    page.wait_for_function("[...document.querySelectorAll('#grid img')].filter(i => i.naturalWidth > 0).length === 2")
    srcs = page.locator("#grid img").evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))")
    assert all(s.startswith("data:image/") for s in srcs)  # a TIFF is not shown as is: its thumbnail is,
    # the first screen's in one request
    [batch] = requested(page, "/thumbnails")
    assert batch.startswith(f"{server.url}/api/v1/tables/deep/thumbnails?version=")
    assert not requested(page, "/thumbnail?")
    for name in ("ramp_uint16.tif", "ramp_float32.tif"):
        page.goto(f"{server.url}/#/t/deep/row/{name}")
        image = page.locator("#row-image")
        image.wait_for()
        assert "/thumbnail?" in image.get_attribute("src") and "size=1024" in image.get_attribute("src")
        page.wait_for_function("document.querySelector('#row-image')?.naturalWidth === 64")
        assert "image/tiff" in page.locator("#row-fields").inner_text()


def test_switching_to_tag_v1_shows_the_older_rows(page: object, server: LiveServer, digits: dict) -> None:
    page.goto(server.url + "/#/t/digits")
    cells(page).first.wait_for()
    page.select_option("#ref-select", "tag=v1")
    page.wait_for_url(re.compile(r"tag=v1"))
    page.wait_for_function("document.querySelector('#grid-status')?.textContent.includes('of 901 rows')")
    assert any(u.endswith("/fetch?version=1") for _, u in page.watch.statuses)  # pinned to the tag's version
    page.reload()
    page.wait_for_function("document.querySelector('#grid-status')?.textContent.includes(' of ')")
    status = page.locator("#grid-status").inner_text()
    assert f"of {digits['v1_rows']} rows" in status
    assert page.locator("#ref-select").input_value() == "tag=v1"


def test_search_by_upload_finds_the_near_duplicate_first(page: object, server: LiveServer, digits: dict,
                                                         tmp_path: Path) -> None:
    target = "7/00007.png"
    pixels = Image.open(Path(digits["digits"]) / target).point(lambda v: min(255, v + 4))  # a near duplicate
    upload = tmp_path / "query.png"
    pixels.save(upload)
    page.goto(server.url + "/#/t/digits/search")
    page.locator("#search-file").set_input_files(str(upload))
    first = page.locator("#results a.cell").first
    first.wait_for()
    assert first.get_attribute("data-id") == target
    assert "distance" in first.inner_text()
    assert page.locator("#results a.cell").count() == 48
    # more like this, from the row page, with the filter applied
    page.goto(server.url + "/#/t/digits/row/" + target.replace("/", "%2F") + "?filter=label%20%3D%207")
    page.click("#more-like-this")
    page.locator("#results a.cell").first.wait_for()
    labels = page.locator("#results .cell .meta").filter(has_text="label:").all_inner_texts()
    assert labels and set(labels) == {"label: 7"}


def test_keyword_search_box_on_a_table_with_a_full_text_index(page: object, server: LiveServer) -> None:
    """``deep`` has no vector column: with a full-text index on ``id`` its search page offers keywords."""
    made = httpx.post(f"{server.url}/api/v1/tables/deep/indexes", json={"column": "id", "type": "FTS"}, timeout=60)
    assert made.status_code in (201, 409), made.text
    page.goto(server.url + "/#/t/deep/search")
    assert page.locator("#search-mode").input_value() == "keywords"
    page.fill('#search-box input[name="q"]', "uint16 -float32")
    page.click('#search-box button[type="submit"]')
    first = page.locator("#results a.cell").first
    first.wait_for()
    assert first.get_attribute("data-id") == "ramp_uint16.tif"
    assert "score" in first.inner_text()
    assert page.locator("#results a.cell").count() == 1
    assert "keywords" in page.locator("#search-status").inner_text()


def test_history_lists_versions_and_diffs_two_refs(page: object, server: LiveServer, digits: dict) -> None:
    page.goto(server.url + "/#/t/digits/history")
    log = page.locator("#log tbody tr")
    log.first.wait_for()
    assert log.count() == 3
    assert "digits 0-4" in page.locator('#log tr[data-version="1"]').inner_text()
    assert "v1" in page.locator('#log tr[data-version="1"]').inner_text()
    page.fill('#diff-form input[name="from"]', "v1")
    page.fill('#diff-form input[name="to"]', "main")
    page.click('#diff-form button[type="submit"]')
    summary = page.locator("#diff-summary")
    summary.wait_for()
    added = int(digits["rows"]) - int(digits["v1_rows"])
    assert f"{added} added, 0 removed, 1 changed" in summary.inner_text()
    changed = page.locator(f'#diff-changed .card[data-id="{CHANGED_ID}"]')
    assert changed.locator("a.cell").count() == 2  # before and after
    befores = changed.locator("img").evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))")
    assert any("version=1" in s for s in befores) and any("version=3" in s for s in befores)
    page.wait_for_function("[...document.querySelectorAll('#diff-changed img')].every(i => i.naturalWidth > 0)")
    assert page.locator("#diff-added a.cell").count() == 60


def test_keys_prompt_and_a_read_only_key_cannot_write(browser: object, digits: dict) -> None:
    keyed = LiveServer(str(digits["uri"]), api_keys=f"{RW_KEY},{RO_KEY}:ro").start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    watch = Watch(page, keyed.url)
    watch.allowed.update({401, 403})
    try:
        page.goto(keyed.url + "/#/t/digits")
        dialog = page.locator("#key-dialog")
        dialog.wait_for()
        page.fill("#key-input", "wrong")
        page.click('#key-form button[type="submit"]')
        page.wait_for_function("document.querySelector('#key-reason').textContent.includes('not accepted')")
        page.fill("#key-input", RO_KEY)
        page.click('#key-form button[type="submit"]')
        page.wait_for_function("document.querySelectorAll('#grid a.cell').length === 100")
        page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.naturalWidth > 0)")
        # a first screen's thumbnails come in one request that carries the key (a TIFF has no small original)
        page.goto(keyed.url + "/#/t/deep")
        page.wait_for_function("[...document.querySelectorAll('#grid img')].filter(i => i.naturalWidth).length === 2")
        assert page.locator("#grid img").first.get_attribute("src").startswith("data:image/")
        [batch] = requested(page, "/thumbnails")
        assert batch.startswith(f"{keyed.url}/api/v1/tables/deep/thumbnails?version=")
        # an image by URL cannot carry the key on <img>: it comes as a blob
        page.goto(keyed.url + "/#/t/deep/row/ramp_uint16.tif")
        page.wait_for_function("document.querySelector('#row-image')?.naturalWidth === 64")
        assert page.locator("#row-image").get_attribute("src").startswith("blob:")
        page.goto(keyed.url + "/#/t/digits/history")
        page.fill('#tag-form input[name="name"]', "mine")
        page.click('#tag-form button[type="submit"]')
        error = page.locator("#tag-result .error")
        error.wait_for()
        assert "read-only" in error.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "test_keys_read_only.png"))
        # another key, from the header button: a read-write key can tag
        page.click("#key-button")
        page.fill("#key-input", RW_KEY)
        page.click('#key-form button[type="submit"]')
        page.locator('#log tr[data-version="1"]').wait_for()
        page.fill('#tag-form input[name="version"]', "2")
        page.fill('#tag-form input[name="name"]', "reviewed")
        page.click('#tag-form button[type="submit"]')
        page.locator("#tag-result .notice").wait_for()
        assert "tagged v2 as reviewed" in page.locator("#tag-result").inner_text()
        watch.check()
    finally:
        context.close()
        keyed.stop()


def test_the_grid_shows_a_saved_view_and_the_curate_columns(browser: object, digits: dict,
                                                          tmp_path: Path) -> None:
    """``#/t/<table>?view=NAME``: the grid's query and count go through the saved view (its filter and sort),
    and the curate columns are ordinary columns the grid can show."""
    import shutil

    import httpx

    shutil.copytree(str(digits["uri"]), tmp_path / "data")  # its own copy: these writes add versions
    live = LiveServer(str(tmp_path / "data")).start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    try:
        with httpx.Client(base_url=live.url, timeout=60) as http:
            assert http.post("/api/v1/tables/digits/curate", json={"label": "label"}).status_code == 201
            assert http.put("/api/v1/tables/digits/views/threes",
                            json={"filter": "label = 3", "order_by": ["uniqueness desc"]}).status_code == 200
            threes = http.get("/api/v1/tables/digits/count", params={"filter": "label = 3"}).json()["count"]
        pg = context.new_page()
        watch = Watch(pg, live.url)
        pg.goto(live.url + "/#/t/digits?view=threes&cols=label,label_issue,uniqueness")
        pg.locator("#grid a.cell").first.wait_for()
        pg.wait_for_function("document.querySelector('#grid-status').textContent.includes(' of ')")
        assert f"of {threes} rows in view threes" in pg.locator("#grid-status").inner_text()
        labels = pg.locator("#grid .cell .meta").filter(has_text="label:").all_inner_texts()
        assert labels and all(t == "label: 3" for t in labels)
        assert pg.locator("#grid .cell .meta").filter(has_text="uniqueness:").count() > 0
        watch.check()
    finally:
        context.close()
        live.stop()
