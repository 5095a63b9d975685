"""pyarrow's filesystem for a location of the data root, built from the storage options Lance gets.

Lightbox keeps a few small objects of its own beside Lance's (version notes) and reads some of
Lance's own (manifests, for their base paths) through the same storage, a local folder or an
object store alike.
"""

from __future__ import annotations

import os
from typing import Any


def filesystem(uri: str, storage_options: dict[str, str] | None = None) -> tuple[Any, str]:
    """``(filesystem, path)`` for ``uri``: the path as that filesystem names it (no scheme)."""
    from pyarrow import fs

    if "://" not in uri:
        uri = os.path.abspath(uri)
    if uri.startswith(("s3://", "s3a://")) and storage_options:
        return _s3(storage_options), uri.split("://", 1)[1]
    return fs.FileSystem.from_uri(uri)


def _s3(options: dict[str, str]) -> Any:
    """An ``S3FileSystem`` from Lance's S3 option names (short or ``aws_``-prefixed)."""
    from pyarrow import fs

    def get(name: str) -> str | None:
        value = options.get(name, options.get(f"aws_{name}"))
        return str(value) if value is not None else None

    endpoint = get("endpoint")
    kwargs: dict[str, Any] = {
        "access_key": get("access_key_id"), "secret_key": get("secret_access_key"),
        "session_token": get("session_token"), "region": get("region") or "us-east-1",
    }
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        kwargs.update(endpoint_override=host or endpoint, scheme=scheme or "https")
    if str(get("allow_http") or "").lower() == "true" and not endpoint:
        kwargs["scheme"] = "http"
    return fs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None})
