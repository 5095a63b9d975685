"""The gallery as a viewer, in Chromium: real photos of several shapes under long folder names, COCO
boxes, a relabel, a re-embedding, a branch and a clone (``tests.gallery_data.build_photos``).

Tiles draw each image at its own aspect ratio; annotations are drawn where they belong on tiles and
on the row page; the facet counts are the count API's; the diff shows values and summarises
re-embeddings; a branch page shows what the branch changed; search shows its query; internal tags
stay hidden; axe-core finds no serious accessibility problem. One server and one browser serve the
module; every page fails its test on a console error or an unexpected error status (``tests.browser``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import ARTIFACTS, requested, serious_axe_violations
from tests.conftest import LiveServer
from tests.gallery_data import LOGO_ID, RELABELLED, build_photos

pytestmark = pytest.mark.browser
DRAWN = """imgs => imgs.map(img => {
  // the rectangle the picture occupies inside its element (object-fit: contain letterboxes it)
  const r = img.getBoundingClientRect();
  const nw = img.naturalWidth, nh = img.naturalHeight;
  let w = r.width, h = r.height;
  if (getComputedStyle(img).objectFit === "contain") {
    const s = Math.min(r.width / nw, r.height / nh);
    w = nw * s; h = nh * s;
  }
  return { id: img.closest("[data-id]")?.dataset.id, left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2,
           width: w, height: h, natural: nw / nh, srcset: img.getAttribute("srcset") || "" };
})"""
RECTS = "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return build_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def server(photos: dict[str, object]) -> Iterator[LiveServer]:
    live = LiveServer(str(photos["uri"])).start()
    yield live
    live.stop()



def all_images_loaded(page: object, selector: str) -> None:
    page.wait_for_function(f"[...document.querySelectorAll({selector!r})].every(i => i.complete && i.naturalWidth > 0)")


def count_api(page: object, server: LiveServer, predicate: str) -> int:
    return page.request.get(f"{server.url}/api/v1/tables/photos/count", params={"filter": predicate}).json()["count"]


def assert_box_at(rect: list[float], drawn: dict, box: list[float], image_width: int) -> None:
    """An overlay rectangle sits where the box falls on the drawn picture (within a pixel or two)."""
    scale = drawn["width"] / image_width
    expected = [drawn["left"] + box[0] * scale, drawn["top"] + box[1] * scale, box[2] * scale, box[3] * scale]
    assert all(abs(a - b) <= 2.5 for a, b in zip(rect, expected, strict=True)), (rect, expected)


def test_tiles_keep_their_aspect_ids_shorten_in_the_middle_and_boxes_are_drawn(page: object, server: LiveServer,
                                                                               photos: dict) -> None:
    page.goto(server.url + "/#/t/photos")
    page.wait_for_function("document.querySelectorAll('#grid a.cell').length === 6")
    all_images_loaded(page, "#grid img")
    page.locator("#facets section").first.wait_for()  # what fills in after the images, moving the layout
    page.locator("#ref-select").wait_for()
    drawn = {d["id"]: d for d in page.locator("#grid img").evaluate_all(DRAWN)}
    for row_id, (w, h) in photos["sizes"].items():
        d = drawn[row_id]
        assert abs(d["natural"] - w / h) / (w / h) < 0.03, (row_id, d)  # the thumbnail kept the shape
        assert abs(d["width"] / d["height"] - w / h) / (w / h) < 0.03, (row_id, d)  # and so does the tile
        assert d["width"] <= 128 and d["height"] <= 128, d  # sized to the tile
    assert drawn[LOGO_ID]["width"] > 4 * drawn[LOGO_ID]["height"]
    # the first screen's thumbnails came in one request, at the tile's size, pinned to the version
    assert page.locator(f'#grid a.cell[data-id="{LOGO_ID}"] img').get_attribute("src").startswith("data:image/")
    batches = requested(page, "/thumbnails")
    assert len(batches) == 1 and "version=" in batches[0]
    assert not requested(page, "/thumbnail?")
    # a long id keeps its file name; the whole id is on hover and on the row page
    caption = page.locator(f'#grid a.cell[data-id="{LOGO_ID}"] .meta.mono')
    assert caption.get_attribute("title") == LOGO_ID
    shown = caption.inner_text()
    assert shown.endswith("wide-logo.png") and "…" in shown and shown.startswith("cat") and len(shown) < len(LOGO_ID)
    # boxes over the tiles, in the right place for a thumbnail of the 560x120 logo
    boxes = page.locator(f'#grid a.cell[data-id="{LOGO_ID}"] svg.overlay rect.box')
    assert boxes.count() == 2
    coco = photos["coco"]["annotations"]
    for rect, ann in zip(boxes.evaluate_all(RECTS), coco[:2], strict=True):
        assert_box_at(rect, drawn[LOGO_ID], ann["bbox"], 560)
    assert "cup" in page.locator(f'#grid a.cell[data-id="{LOGO_ID}"] svg.overlay').text_content()
    assert page.locator('#grid a.cell[data-id="photos/coffee.jpg"] svg.overlay').count() == 0  # no annotations
    page.screenshot(path=str(ARTIFACTS / "gallery_photos.png"))
    page.click("#show-boxes")  # the toggle
    page.wait_for_url(re.compile(r"boxes=0"))
    page.wait_for_function("document.querySelectorAll('#grid a.cell').length === 6")
    assert page.locator("#grid svg.overlay").count() == 0


def test_row_page_draws_boxes_and_segmentation_over_the_image(page: object, server: LiveServer, photos: dict) -> None:
    page.goto(server.url + "/#/t/photos/row/photos%2Fastronaut.jpg")
    image = page.locator("#row-image")
    image.wait_for()
    all_images_loaded(page, "#row-image")
    page.locator("#ref-select").wait_for()  # the header fills in after the view: measure after it
    assert page.locator("h1").inner_text() == "photos/astronaut.jpg"
    drawn = image.evaluate_all(DRAWN)[0]
    rects = page.locator(".row-page svg.overlay rect.box")
    assert rects.count() == 2
    for rect, ann in zip(rects.evaluate_all(RECTS), photos["coco"]["annotations"][2:], strict=True):
        assert_box_at(rect, drawn, ann["bbox"], 512)
    polygon = page.locator(".row-page svg.overlay polygon.segment")
    assert polygon.count() == 1
    width = polygon.evaluate_all(RECTS)[0][2]
    xs = photos["coco"]["annotations"][2]["segmentation"][0][0::2]
    assert abs(width - (max(xs) - min(xs)) * drawn["width"] / 512) < 3
    names = page.locator(".row-page svg.overlay text").evaluate_all("ts => ts.map(t => t.textContent)")
    assert sorted(names) == ["flag", "person"]


def test_facet_counts_are_the_count_apis_and_a_click_filters(page: object, server: LiveServer) -> None:
    page.goto(server.url + "/#/t/photos")
    page.locator('#facets section[data-facet="label"]').wait_for()
    buttons = page.locator("#facets button[data-count]")
    checked = 0
    for i in range(buttons.count()):
        b = buttons.nth(i)
        column, count = b.get_attribute("data-column"), int(b.get_attribute("data-count"))
        if b.get_attribute("data-lo") is not None:
            continue
        value = b.get_attribute("data-value")
        kind = page.locator(f'#facets section[data-facet="{column}"]').get_attribute("data-type")
        literal = "'" + value + "'" if kind == "string" else value
        assert count == count_api(page, server, f"{column} = {literal}"), (column, value)
        checked += 1
    assert checked >= 8
    labels = {b.get_attribute("data-value"): int(b.get_attribute("data-count"))
              for b in page.locator('#facets section[data-facet="label"] button').all()}
    assert labels == {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "8": 1}  # coffee reads 8 since its relabel
    page.locator('#facets section[data-facet="split"] button[data-value="test"]').click()
    page.wait_for_url(re.compile(r"filter=split"))
    page.wait_for_function("document.querySelector('#grid-status')?.textContent.includes(' of 3 rows')")
    assert page.locator("#grid a.cell").count() == 3
    # the facets follow the filter: under split = 'test', labels count only those rows
    page.locator('#facets section[data-facet="label"] button').first.wait_for()
    label_buttons = page.locator('#facets section[data-facet="label"] button').all()
    under = sum(int(b.get_attribute("data-count")) for b in label_buttons)
    assert under == 3 == count_api(page, server, "split = 'test'")
    # a filter whose value does not fit its column speaks of the table's types
    page.watch.allowed.add(400)
    page.fill("#filter", "label = 'x'")
    page.press("#filter", "Enter")
    error = page.locator("#grid-errors .error")
    error.wait_for()
    text = error.inner_text()
    assert "column 'label' holds int64 values" in text and "Int64" not in text and "Utf8" not in text


def test_diff_shows_old_and_new_values_and_counts_reembedded_rows(page: object, server: LiveServer,
                                                                   photos: dict) -> None:
    v = photos["versions"]
    page.goto(server.url + f"/#/t/photos/history?from={v['annotate']}&to={v['embed']}")
    card = page.locator(f'#diff-changed .card[data-id="{RELABELLED}"]')
    card.wait_for()
    assert "3 → 8" in card.locator('.values tr[data-column="label"]').inner_text()
    assert card.locator("img").count() == 1  # the bytes did not change: one image, not a before/after pair
    assert card.get_attribute("data-bytes") == "false"
    assert page.locator("#diff-changed .card").count() == 1  # the re-embedded rows are not listed ...
    assert "5 rows changed only in vector columns" in page.locator("#diff-vectors-only").inner_text()  # ... but counted
    # an annotation import changes the rows it annotates, not every row
    page.goto(server.url + f"/#/t/photos/history?from={v['ingest']}&to={v['annotate']}")
    page.locator("#diff-summary").wait_for()
    assert "0 added, 0 removed, 2 changed" in page.locator("#diff-summary").inner_text()
    ids = page.locator("#diff-changed .card").evaluate_all("cs => cs.map(c => c.dataset.id).sort()")
    assert ids == [LOGO_ID, "photos/astronaut.jpg"]


def test_branch_page_shows_what_the_branch_changes_since_its_fork(page: object, server: LiveServer) -> None:
    page.goto(server.url + "/#/t/photos/history?branch=review")
    section = page.locator("#branch-changes")
    card = section.locator('.card[data-id="scans/page.png"]')
    card.wait_for()
    assert "train → test" in card.locator(".values").inner_text()
    assert "0 added, 0 removed, 1 changed" in section.locator("#diff-summary").inner_text()
    assert "What branch review adds and changes" in page.locator("h2").first.inner_text()


def test_search_shows_the_query_image_or_row_above_results_with_distances(page: object, server: LiveServer,
                                                                          photos: dict, tmp_path: Path) -> None:
    query = tmp_path / "query.jpg"
    shutil.copyfile(Path(photos["sources"]) / "photos" / "chelsea.jpg", query)
    page.goto(server.url + "/#/t/photos/search")
    page.locator("#search-file").set_input_files(str(query))
    page.locator("#results a.cell").first.wait_for()
    all_images_loaded(page, "#query-image")
    assert page.locator("#query-image").get_attribute("src").startswith("blob:")
    assert "query.jpg" in page.locator("#search-query").inner_text()
    first = page.locator("#results a.cell").first
    assert first.get_attribute("data-id") == "photos/chelsea.jpg" and "distance 0.0000" in first.inner_text()
    # more like this: the row is the query, shown above its neighbours
    page.goto(server.url + "/#/t/photos/search?like=photos%2Fastronaut.jpg")
    page.locator("#results a.cell").first.wait_for()
    all_images_loaded(page, "#query-image")
    assert "/rows/photos/astronaut.jpg/thumbnail" in page.locator("#query-image").get_attribute("src")
    assert "photos/astronaut.jpg" in page.locator("#search-query").inner_text()
    assert all("distance" in t for t in page.locator("#results .cell").all_inner_texts())
    # a result tile by URL: a thumbnail pinned to the version (cached for good), sized to the tile, 2x for HiDPI
    tile = page.locator(f'#results a.cell[data-id="{LOGO_ID}"] img')
    thumb, srcset = tile.get_attribute("src"), tile.get_attribute("srcset")
    assert "version=" in thumb and "size=128" in thumb and "size=256 2x" in srcset
    assert page.request.get(server.url + thumb).headers["cache-control"] == "public, max-age=31536000, immutable"
    assert page.locator(f'#results a.cell[data-id="{LOGO_ID}"] svg.overlay rect.box').count() == 2  # as on the grid


def test_tables_page_hides_clone_guard_tags_unless_asked(page: object, server: LiveServer) -> None:
    page.goto(server.url + "/")
    card = page.locator('article.card[data-table="photos"]')
    card.wait_for()
    assert "lightbox-clone" not in card.inner_text()
    page.click("#show-internal")
    page.wait_for_url(re.compile(r"internal=1"))
    page.locator('article.card[data-table="photos"] a.pill', has_text="lightbox-clone-photos_copy").wait_for()
    page.goto(server.url + "/#/t/photos")
    page.locator("#ref-select option").first.wait_for(state="attached")
    assert "lightbox-clone" not in page.locator("#ref-select").inner_text()
    page.goto(server.url + "/#/t/photos/history")
    page.locator("#log tbody tr").first.wait_for()
    assert "lightbox-clone" not in page.locator("#log").inner_text()


def test_no_serious_accessibility_violations(page: object, server: LiveServer, photos: dict) -> None:
    v = photos["versions"]
    views = {
        "tables": ("/", "article.card"),
        "grid": ("/#/t/photos", "#facets section"),
        "row": ("/#/t/photos/row/photos%2Fastronaut.jpg", "#row-history table"),
        "search": ("/#/t/photos/search?like=photos%2Fastronaut.jpg", "#results a.cell"),
        "diff": (f"/#/t/photos/history?from={v['annotate']}&to={v['embed']}", "#diff-changed .card"),
    }
    found = {}
    for name, (path, ready) in views.items():
        page.goto(server.url + path)
        page.locator(ready).first.wait_for()
        page.wait_for_timeout(100)  # the ref switcher fills in after the view
        found[name] = serious_axe_violations(page)
    assert not any(found.values()), "\n".join(f"{k}: {v}" for k, vs in found.items() for v in vs)
