"""The gallery's files and the docs pages: served from the package, open without a key, no CDN.

(The gallery's behaviour in a browser is tests/test_gallery.py.)
"""

from __future__ import annotations

import re

import pytest

from app.routes.ui import UI_DIR


def test_pages_and_assets_are_open_and_local_while_data_needs_a_key(data_uri: str, in_process) -> None:
    with in_process(data_uri, api_keys="secret,peek:ro").http() as client:
        assert client.get("/api/v1/tables").status_code == 401
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        for src in re.findall(r'(?:src|href)="(/ui/[^"]+)"', page.text):
            asset = client.get(src)
            assert asset.status_code == 200, src
            assert asset.headers.get("etag"), src  # revalidated, not refetched
        module = client.get("/ui/js/main.js")
        assert "javascript" in module.headers["content-type"]
        for escape in ("/ui/%2e%2e/routes/ui.py", "/ui/..%2froutes%2fui.py"):
            assert client.get(escape).status_code == 404, escape  # only the gallery's own files
        assert client.get("/openapi.json").json()["info"]["title"] == "Lightbox"
        for path in ("/docs", "/redoc"):
            html = client.get(path).text
            urls = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert urls and all(u.startswith("/ui/vendor/") for u in urls), urls
            for url in urls:
                assert client.get(url).status_code == 200, url
            assert "http://" not in html and "https://" not in html


def test_vendored_docs_assets_name_no_cdn() -> None:
    """Swagger UI and ReDoc would fetch from the internet if their bundles named a CDN."""
    for path in (UI_DIR / "vendor").rglob("*.js"):
        text = path.read_text(errors="replace")
        assert "cdn.redoc.ly" not in text and "unpkg.com" not in text and "jsdelivr" not in text, path
    for package in ("swagger-ui", "redoc"):
        assert (UI_DIR / "vendor" / package / "LICENSE").exists()


def test_the_router_is_built_at_start_not_by_the_first_page(data_uri: str, in_process, access_lines,
                                                            monkeypatch) -> None:
    """FastAPI builds a router's matching state on the first request matched against it (0.16 s for this
    app, paid by a cold server's first page): the service builds it at start, with a request nobody sees."""
    import fastapi.routing

    context = getattr(fastapi.routing, "_EffectiveRouteContext", None)
    if context is None:
        pytest.skip("this FastAPI builds its routes when they are added")
    app = in_process(data_uri)
    with app.http() as client:
        assert client.get("/healthz").status_code == 200  # the service starts (its lifespan runs)
    built: list[str] = []
    original = context.from_api_route.__func__
    monkeypatch.setattr(context, "from_api_route",
                        classmethod(lambda cls, **kw: built.append(kw["original_route"].path) or original(cls, **kw)))
    with app.http() as client:
        assert client.get("/").status_code == 200
        assert client.get("/api/v1/tables").status_code == 200
    assert built == []  # nothing left to build
    assert not [line for line in access_lines.lines if "warm-routes" in line]
    assert "warm-routes" not in app.http().get("/metrics").text
