"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.deps import StoreDep
from app.responses import JSON
from app.storage import redact

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> JSON:
    return JSON({"status": "ok"})


@router.get("/readyz")
def readyz(request: Request, store: StoreDep) -> JSON:
    store.names()  # the data root answers
    warnings = getattr(request.app.state, "warnings", [])
    return JSON({"status": "ready", "uri": redact(store.uri, store.storage_options),
                 **({"warnings": warnings} if warnings else {})})
