"""Service settings, read from ``LIGHTBOX_*`` environment variables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.arrow_pool import PoolName
from app.storage import normalise, root_uri


class Settings(BaseSettings):
    """Everything the service can be tuned by; built once and handed to ``create_app``."""

    # hide_input_in_errors: a refused value is never quoted back (it may be a credential, in any shape)
    model_config = SettingsConfigDict(env_prefix="LIGHTBOX_", extra="ignore", hide_input_in_errors=True)

    # The data root: a local folder (made absolute, see ``root_uri``) or any Lance URI (s3://, gs://, az://).
    uri: str = Field(default="./lightbox-data", validate_default=True)
    # Options for the data root's object store (any Lance key: aws_endpoint, region, allow_http, ...), as a
    # JSON object in LIGHTBOX_STORAGE_OPTIONS. Hidden from repr: it usually holds credentials.
    storage_options: dict[str, str | bool | int | float] = Field(default_factory=dict, repr=False)
    # The common keys one by one (LIGHTBOX_STORAGE_ENDPOINT, ...); they win over the JSON object.
    storage_endpoint: str | None = None
    storage_region: str | None = None
    storage_access_key_id: str | None = None
    storage_secret_access_key: SecretStr | None = None
    storage_session_token: SecretStr | None = None
    storage_allow_http: bool | None = None
    # Set on a read replica: every write request is forwarded to this writer (e.g. http://writer:8000).
    writer_url: str | None = None
    # How long a replica waits on its writer for a forwarded write (then a 504; the write may still apply).
    writer_timeout_seconds: float = Field(default=120.0, gt=0)
    # How long the writer remembers its answer to a write sent with an Idempotency-Key (0: not at all).
    idempotency_seconds: float = Field(default=86400.0, ge=0)
    # "KEY" (read-write) or "KEY:ro", comma-separated; unset: no auth (and the default bind is loopback).
    api_keys: str | None = Field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    # How stale "latest" may be when another process writes; local writes refresh at once.
    latest_refresh_seconds: float = 1.0
    # Pinned (table, version) handles and id maps kept open; each costs a manifest and an id map.
    handle_cache_size: int = 64
    id_index_cache_size: int = 8
    # ...and at most about this many bytes of id maps in all (each grows with its table).
    id_index_cache_bytes: int = Field(default=512 * 1024**2, ge=1024**2)
    thumbnail_cache_bytes: int = 64 * 1024**2
    # Memory that image renders (thumbnails, resizes, /array frames) may hold at once, estimated from each
    # image's header before it is decoded. A render that needs more than all of it answers 422; one that
    # does not fit beside the others waits up to decode_wait_seconds, then answers 503 with Retry-After.
    decode_budget_bytes: int = Field(default=2 * 1024**3, ge=1024**2)
    decode_wait_seconds: float = Field(default=10.0, ge=0)
    # GET .../array answers at most this many bytes (past it: 422, and ?frame= asks for one frame or page).
    max_array_bytes: int = Field(default=256 * 1024**2, ge=1024)
    # A vector column with at least this many rows gets a Lance vector index (IVF_FLAT), built and
    # folded forward in the background; smaller ones are searched exactly.
    index_min_rows: int = Field(default=10_000, ge=1)
    # The recall@10 each vector index is tuned to (nprobes chosen on a held-out sample of its vectors).
    recall_target: float = Field(default=0.95, gt=0, le=1)
    # Query vectors in that held-out sample.
    recall_sample: int = Field(default=200, ge=10, le=10_000)
    # Bytes of index partitions Lance keeps in memory per table; past it, partitions are read again from
    # the table's files. Lance's own default (6 GiB a table) let a soak grow ~60 MB/min: each fold of new
    # rows into a vector index is a new index version whose partitions are cached again. Raise it for
    # large vector tables on object storage, where a partition read again is a GET.
    index_cache_bytes: int = Field(default=128 * 1024**2, ge=1)
    # Bytes of manifests and file metadata Lance keeps in memory per table. Each version's manifest lists
    # every fragment, so caching every version read grows with versions x fragments: bounded here.
    metadata_cache_bytes: int = Field(default=32 * 1024**2, ge=1024**2)
    # glibc only: malloc arenas (0: glibc's default, 8 per core) and how often free heap pages go back to
    # the system (0: never); see app/heap.py.
    malloc_arena_max: int = Field(default=2, ge=0)
    # BLAS threads for numpy's products in the request path (0: the library's default, a thread per
    # core that spins after each small product; see app/blas.py).
    blas_threads: int = Field(default=1, ge=0)
    # The allocator of Arrow's buffers (system: glibc's, which Lance uses too; "default" leaves pyarrow's,
    # mimalloc, whose huge-page arena made small-file ingest 1.28x slower here; see app/arrow_pool.py).
    arrow_memory_pool: PoolName = "system"
    heap_trim_seconds: float = Field(default=10.0, ge=0)
    # Bytes the background index work may hold at once: a build goes by segments of fragments whose
    # vectors fit it, and the recall measurement's batches are sized by it.
    index_memory_bytes: int = Field(default=1024**3, ge=64 * 1024**2)
    # Bytes of a column's vectors up to which the keeper indexes it with IVF_FLAT (exact distances, a
    # second copy of the vectors); past them, IVF_RQ (RaBitQ codes, about a sixth of the bytes a probe
    # reads, with a tuned refine step).
    flat_index_max_bytes: int = Field(default=1024**3, ge=0)
    # A table whose vector index is quantized (IVF_RQ, IVF_PQ, ...) gets an index cache holding it whole
    # (index_cache_bytes above is too small for one: its partitions are decoded as they are read, and
    # decoding them again at every search made them 20x slower), up to this many bytes.
    quantized_index_cache_bytes: int = Field(default=4 * 1024**3, ge=0)
    # IVF_FLAT indexes are searched from a copy of their lists in memory, up to this many bytes for all
    # tables together (0: every search goes through Lance's planner, 1.5-2 CPU-ms of fixed cost a call;
    # the copy answers in a few hundredths of that: app/store/resident.py).
    resident_index_bytes: int = Field(default=512 * 1024**2, ge=0)
    # A burst of writes is one index build: the keeper waits until a table's writes have been quiet
    # this long (but no longer than index_max_wait_seconds after the first) before it builds or folds.
    index_quiet_seconds: float = Field(default=2.0, ge=0)
    index_max_wait_seconds: float = Field(default=30.0, ge=0)
    # Uploads (search by image, writes) larger than this answer 413; an upload session's batches each.
    max_upload_bytes: int = 64 * 1024**2
    # An upload session idle this long is abandoned: its staged files are removed, nothing is committed.
    upload_ttl_seconds: float = Field(default=3600.0, gt=0)
    # A session gathers accepted rows up to this many image bytes (or 65,536 rows) before writing them as
    # a data file: bounded memory per session, and files the size one write would make.
    upload_stage_bytes: int = Field(default=32 * 1024**2, ge=1)
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
    # Build, fold and tune vector indexes on a background thread after writes (off for a short-lived
    # process such as the command line: POST .../optimize still does that work when asked).
    background_indexing: bool = True
    # A line per request (app/access_log.py): "text", uvicorn's line on stdout (what `lightbox serve`
    # writes when this is unset); "json", a JSON object on stderr (logger lightbox.access); "off": none.
    # Unset in a process that hosts the app itself (the command line on a data root): none.
    access_log: Literal["text", "json", "off"] | None = None
    # true: GET /metrics needs no API key even when keys are set (a scraper on a private network).
    metrics_public: bool = False

    @field_validator("storage_options", mode="before")
    @classmethod
    def _options_json(cls, value: object) -> object:
        if isinstance(value, str):  # given directly (not through the environment, which pydantic decodes)
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"storage_options must be a JSON object: {exc.msg}") from None
        return value

    @field_validator("uri")
    @classmethod
    def _root(cls, value: str) -> str:
        return root_uri(value)

    @field_validator("writer_url")
    @classmethod
    def _writer(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("writer_url must be an http:// or https:// URL")
        return value.rstrip("/") if value else None

    def resolved_storage_options(self) -> dict[str, str]:
        """The dict Lance gets: the JSON object, then the per-key settings over it (string values)."""
        options = normalise(self.storage_options)
        single = {
            "endpoint": self.storage_endpoint,
            "region": self.storage_region,
            "access_key_id": self.storage_access_key_id,
            "secret_access_key": self.storage_secret_access_key.get_secret_value()
            if self.storage_secret_access_key else None,
            "session_token": self.storage_session_token.get_secret_value() if self.storage_session_token else None,
            "allow_http": self.storage_allow_http,
        }
        options.update(normalise(single))
        return options

    def with_storage_options(self, extra: Mapping[str, object] | None) -> Settings:
        """These settings with ``extra`` storage options over every configured one (``--storage-option``
        flags win over ``LIGHTBOX_STORAGE_*``); unchanged when there are none."""
        if not extra:
            return self
        merged = {**self.resolved_storage_options(), **normalise(extra)}
        return self.model_copy(update={"storage_options": merged, "storage_endpoint": None, "storage_region": None,
                                       "storage_access_key_id": None, "storage_secret_access_key": None,
                                       "storage_session_token": None, "storage_allow_http": None})
