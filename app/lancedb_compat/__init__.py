"""LanceDB's remote protocol on Lightbox's services, so the official clients work unchanged."""

from app.lancedb_compat.routes import router

__all__ = ["router"]
