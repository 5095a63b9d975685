"""What the gallery's browser tests share: Debian's Chromium (driven by Playwright), a watch on each
page for console errors, failed or off-site requests and error statuses, and axe-core's
accessibility check. Screenshots go to ``tests/artifacts/`` (gitignored)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LIGHTBOX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
AXE = Path(__file__).resolve().parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"


@contextmanager
def chromium() -> Iterator[object]:
    """One headless Chromium for a module's tests (skipped where there is none)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium package)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def watched_page(browser: object, base: str, name: str) -> Iterator[object]:
    """A page in a new context (empty cache) whose problems fail the test; screenshotted at the end."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.watch = Watch(page, base)
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    context.close()
    page.watch.check()


def serious_axe_violations(page: object) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (axe is injected from the
    npm-installed copy, so the check runs offline)."""
    assert AXE.exists(), f"{AXE} is missing: `make test` (or `npm install` in tests/a11y) installs axe-core"
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => {
      const r = await axe.run(document, { resultTypes: ["violations"] });
      return r.violations.filter(v => ["serious", "critical"].includes(v.impact))
        .map(v => ({ id: v.id, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")) }));
    }""")
    return [json.dumps(v) for v in found]


class Watch:
    """What went wrong in the browser: console errors, failed or off-site requests, error statuses."""

    def __init__(self, page: object, base: str) -> None:
        self.problems: list[str] = []
        self.allowed: set[int] = set()
        self.statuses: list[tuple[int, str]] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self._console(m.text))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self._failed(r))
        page.on("request", lambda r: self._request(r.url, base))
        page.on("response", lambda r: self._status(r.status, r.url))

    def _console(self, text: str) -> None:
        found = re.search(r"status of (\d{3})", text)
        if not (found and int(found.group(1)) in self.allowed):
            self.problems.append(f"console error: {text}")

    def _failed(self, request: object) -> None:
        failure = request.failure or ""
        if request.url.startswith("blob:") or "ERR_ABORTED" in failure:  # a page left mid-load; not an error
            return
        self.problems.append(f"request failed: {request.url} {failure}")

    def _request(self, url: str, base: str) -> None:
        self.requests.append(url)
        if not url.startswith((base, "blob:", "data:")):
            self.problems.append(f"request leaves the server: {url}")

    def _status(self, status: int, url: str) -> None:
        self.statuses.append((status, url))
        if status >= 400 and status not in self.allowed:
            self.problems.append(f"HTTP {status} {url}")

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)




def requested(page: object, fragment: str) -> list[str]:
    """The URLs the page has requested that contain ``fragment``, from its own resource timing (in step
    with the page, unlike the watch's response events, which may arrive after the page has moved on)."""
    return page.evaluate("f => performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes(f))",
                         fragment)
