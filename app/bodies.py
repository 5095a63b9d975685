"""Request bodies read under the service's upload limit: a 413 before anything large is buffered."""

from __future__ import annotations

from fastapi import Request

from app.errors import PayloadTooLarge


def upload_limit(request: Request) -> int:
    """The limit, checked against a declared Content-Length first (a 413 without reading)."""
    limit: int = request.app.state.settings.max_upload_bytes
    if int(request.headers.get("content-length") or 0) > limit:
        raise PayloadTooLarge(f"the body exceeds the upload limit of {limit} bytes", limit=limit)
    return limit


async def read_body(request: Request) -> bytes:
    """The whole body, streamed and refused (413) as soon as it passes the limit (chunked uploads too)."""
    limit = upload_limit(request)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the upload limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)
