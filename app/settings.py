"""Service settings, read from ``LIGHTBOX_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
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
    # A vector column with at least this many rows gets a Lance vector index (IVF_FLAT), built and
    # folded forward in the background; smaller ones are searched exactly.
    index_min_rows: int = Field(default=10_000, ge=1)
    # The recall@10 each vector index is tuned to (nprobes chosen on a held-out sample of its vectors).
    recall_target: float = Field(default=0.95, gt=0, le=1)
    # Query vectors in that held-out sample.
    recall_sample: int = Field(default=200, ge=10, le=10_000)
    # Bytes of index partitions Lance keeps in memory per table (unset: Lance's default, 6 GiB);
    # past it, partitions are read again from the table's files.
    index_cache_bytes: int | None = Field(default=None, ge=1)
    # Uploads (search by image, writes) larger than this answer 413.
    max_upload_bytes: int = 64 * 1024**2
    # optimize prunes untagged versions older than this; tagged ones are kept forever.
    retention_days: float = 7.0
    # Read each table's recent version log and id map in the background at start-up.
    warm_on_start: bool = True
