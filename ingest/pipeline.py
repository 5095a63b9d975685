"""An ingest run against a data root, in this process: ``run_ingest(store, opts)``.

The run is the one every door runs (``ingest.upload``: the sources walked, batches of rows sent to
one upload session, one commit), with the upload service (``app.services.uploads``) called
directly instead of over HTTP. ``lightbox ingest --uri`` goes through the SDK over the service in
this process; this entry point is for code that already holds a ``Store`` (tests, benchmarks, the
demo). A refusal of the service raises its own error (``app.errors``: a 409 conflict, a 422 for
rows that cannot be stored); a side file that cannot be used raises ``IngestError``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from app.services.uploads import UploadOptions, Uploads
from app.store import Store
from embeddings.registry import Registry
from ingest.report import IngestReport
from ingest.upload import Dedup, IdMode, IngestOptions, run
from ingest.walk import IngestError

__all__ = ["Dedup", "IdMode", "IngestError", "IngestOptions", "ServiceEndpoint", "run_ingest"]


class ServiceEndpoint:
    """An upload session's four calls, made on the upload service itself."""

    def __init__(self, uploads: Uploads) -> None:
        self.uploads = uploads

    def begin(self, table: str, options: dict[str, Any]) -> dict[str, Any]:
        return self.uploads.begin(table, UploadOptions.parse(options))

    def send(self, table: str, upload_id: str, rows: pa.RecordBatch) -> dict[str, Any]:
        return self.uploads.add(table, upload_id, pa.Table.from_batches([rows]))

    def commit(self, table: str, upload_id: str, tag: str | None = None) -> dict[str, Any]:
        return self.uploads.commit(table, upload_id, tag)

    def abort(self, table: str, upload_id: str) -> None:
        self.uploads.abort(table, upload_id)


def run_ingest(store: Store, opts: IngestOptions, registry: Registry | None = None) -> IngestReport:
    """Ingest every source into ``opts.table`` as one version (or one per ``commit_every`` rows)."""
    uploads = Uploads(store, registry or opts.registry or Registry(), ttl_seconds=3600.0)
    try:
        return run(ServiceEndpoint(uploads), opts)
    finally:
        uploads.close()
