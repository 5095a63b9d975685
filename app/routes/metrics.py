"""``GET /metrics``: Prometheus text format (see ``app.metrics``). Behind the API-key check like any
read, unless ``LIGHTBOX_METRICS_PUBLIC`` lets the middleware answer it first."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
