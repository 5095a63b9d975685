"""``GET /api/v1/tables/{t}/export``: one ref of a table as Parquet, WebDataset tar or an ImageFolder archive.

The body is streamed as it is built (see ``app.services.export``); everything that can be wrong
with the request is checked first, so errors are ordinary 4xx answers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app.deps import RefDep, StoreDep
from app.responses import version_headers
from app.services import export as svc

router = APIRouter(prefix="/api/v1/tables/{table}", tags=["export"])


@router.get("/export")
def export(table: str, store: StoreDep, ref: RefDep,
           format: Annotated[svc.Format, Query(description="parquet, webdataset or imagefolder")] = "parquet",
           filter: Annotated[str | None, Query()] = None,
           columns: Annotated[list[str] | None, Query(description="metadata columns (repeat or comma-separate)")]
           = None,
           label_column: Annotated[str, Query(description="imagefolder: the column naming each folder")] = "label",
           archive: Annotated[svc.Archive, Query(description="imagefolder: tar or zip")] = "tar",
           offset: Annotated[int, Query(ge=0)] = 0,
           limit: Annotated[int | None, Query(ge=0)] = None) -> StreamingResponse:
    names = [c.strip() for value in columns or [] for c in value.split(",") if c.strip()] or None
    spec = svc.ExportSpec(format=format, filter=filter, columns=names, label_column=label_column, archive=archive,
                          offset=offset, limit=limit)
    job = svc.open_export(store, table, ref, spec)
    headers = {**version_headers(job.snap), "Content-Disposition": f'attachment; filename="{job.filename}"'}
    return StreamingResponse(job.chunks(), media_type=job.media_type, headers=headers)
