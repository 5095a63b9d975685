"""``POST /api/v1/tables/{t}/thumbnails``: a page of thumbnails in one answer (the gallery's first screen)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import Field

from app.deps import RefDep, StoreDep
from app.models import RequestBody
from app.responses import JSON, version_headers
from app.services import pixels
from app.services import thumbnails as svc

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["rows"])


class ThumbnailsBody(RequestBody):
    ids: list[str] = Field(description=f"the rows, at most {svc.MAX_BATCH}")
    size: int = Field(default=256, description="the long side in pixels, 8 to 2048 (as GET .../thumbnail)")
    format: pixels.ThumbFormat | None = Field(default=None, description="jpeg, png or webp; by default JPEG, "
                                                                        "or PNG for an image with alpha")


@router.post("/thumbnails")
def post_thumbnails(table: str, body: ThumbnailsBody, request: Request, store: StoreDep, ref: RefDep) -> JSON:
    """``{"thumbnails": [{"id", "mime", "data" (base64)}], "missing": [{"id", "error"}]}``: each the bytes
    ``GET .../rows/{id}/thumbnail?size=`` answers at this ref, in the order asked; a read (a read-only key
    may call it)."""
    snap = store.snapshot(table, ref)
    out = svc.batch(request.app.state.thumbnailer, snap, body.ids, body.size, body.format)
    return JSON(out, headers=version_headers(snap))
