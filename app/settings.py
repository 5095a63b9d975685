"""Service settings, read from ``LIGHTBOX_*`` environment variables."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be tuned by; built once and handed to ``create_app``."""

    model_config = SettingsConfigDict(env_prefix="LIGHTBOX_", extra="ignore")

    uri: str = "./lightbox-data"
    # "KEY" (read-write) or "KEY:ro", comma-separated; unset: no auth (and the default bind is loopback).
    api_keys: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # How stale "latest" may be when another process writes; local writes refresh at once.
    latest_refresh_seconds: float = 1.0
    # Pinned (table, version) handles and id maps kept open; each costs a manifest and an id map.
    handle_cache_size: int = 64
    id_index_cache_size: int = 8
    thumbnail_cache_bytes: int = 64 * 1024**2
    # ANN indexes kept in memory, one per (table, version, vector column) searched recently.
    ann_cache_size: int = 4
    # Below this many vectors a search is exact (flat); above it an IVF index answers.
    ann_exact_below: int = 20_000
    # Uploads (multipart, Arrow IPC: search by image, writes) larger than this answer 413.
    max_upload_bytes: int = 64 * 1024**2
    # Every other body (JSON) larger than this answers 413, checked before it is read.
    max_json_bytes: int = 8 * 1024**2
    # Slow or stalled clients: the request line and headers must arrive within header_timeout_seconds
    # (and be at most max_header_bytes); a body that stalls for body_timeout_seconds answers 408; an idle
    # keep-alive connection closes after keep_alive_seconds; past max_connections new requests answer 503.
    header_timeout_seconds: float = 10.0
    max_header_bytes: int = 64 * 1024
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: int = 5
    max_connections: int | None = 1000
    # optimize prunes untagged versions older than this; tagged ones are kept forever.
    retention_days: float = 7.0
    # Read each table's recent version log and id map in the background at start-up.
    warm_on_start: bool = True
