"""The gallery at ``/`` and the API docs at ``/docs`` and ``/redoc``, all served from files in the package.

The gallery is static HTML, CSS and ES modules (``app/ui``) that talk to the public API like any
other client, with the same keys; nothing here reads a table. The docs pages load Swagger UI and
ReDoc from ``app/ui/vendor`` rather than a CDN, so they work on a machine with no internet.
These paths answer without an API key (see ``app.auth.OPEN_PATHS``): they hold no data.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
ASSETS = "/ui"
VENDOR = f"{ASSETS}/vendor"


def install(app: FastAPI) -> None:
    """Mount the gallery's files and the offline docs pages on ``app`` (built with docs_url=None)."""
    router = APIRouter(include_in_schema=False)
    openapi_url = app.openapi_url or "/openapi.json"

    @router.get("/")
    def gallery() -> FileResponse:
        # revalidated on every load so a new release shows at once; the modules it loads carry ETags
        return FileResponse(UI_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @router.get("/docs")
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - API docs",
                                   swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png")

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - API reference",
                              redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
                              redoc_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png", with_google_fonts=False)

    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=UI_DIR), name="ui")
