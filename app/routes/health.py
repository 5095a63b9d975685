"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import StoreDep
from app.responses import JSON

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> JSON:
    return JSON({"status": "ok"})


@router.get("/readyz")
def readyz(store: StoreDep) -> JSON:
    store.names()  # the data root answers
    return JSON({"status": "ready", "uri": store.uri})
