"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import StoreDep
from app.responses import JSON
from app.storage import redact

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> JSON:
    return JSON({"status": "ok"})


@router.get("/readyz")
def readyz(store: StoreDep) -> JSON:
    store.names()  # the data root answers
    return JSON({"status": "ready", "uri": redact(store.uri, store.storage_options)})
