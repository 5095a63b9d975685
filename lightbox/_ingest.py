"""``Table.ingest``: folders, manifests, Parquet files and WebDataset shards into a table as one version.

The sources are walked here, on the client (``ingest.walk``: files read with a small thread pool, ids
derived, metadata and folder labels joined), and streamed as Arrow batches into one upload session
(``POST .../uploads``, ``.../batches``, ``.../commit``), the next batch read while the service checks
this one; the service probes, hashes, deduplicates and embeds every row and commits them all as
one version (``ingest.upload``). The same run whether the client is on a URL or on a data root
served in this process (``lightbox.connect``).
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lightbox._ids import segment
from lightbox._inprocess import ARROW_ROWS
from lightbox._wire import ARROW_STREAM, Call, read_json, read_none

if TYPE_CHECKING:
    from ingest.report import IngestReport
    from lightbox.client import Table

__all__ = ["HttpEndpoint", "ingest"]
UPLOAD_SECONDS = 600.0  # a batch (probed, hashed, embedded) or a commit may take this long to answer


class HttpEndpoint:
    """An upload session's four calls as requests of one table handle's client."""

    def __init__(self, table: Table, branch: str | None) -> None:
        from lightbox._inprocess import InProcessTransport

        self.table, self.branch = table, branch
        self.in_process = isinstance(table.client._http._transport, InProcessTransport)

    def _path(self, suffix: str) -> str:
        return f"/api/v1/tables/{segment(self.table.name)}/uploads{suffix}"

    def begin(self, table: str, options: dict[str, Any]) -> dict[str, Any]:
        body = {**options, **({"branch": self.branch} if self.branch else {})}
        begun = self.table._run(Call("POST", self._path(""), read_json, json=body))
        if self.in_process:  # the rows are handed over, not sent: no body for the upload limit to bound
            begun["max_batch_bytes"] = None
        return begun

    def send(self, table: str, upload_id: str, rows: pa.RecordBatch) -> dict[str, Any]:
        path = self._path(f"/{segment(upload_id)}/batches")
        if self.in_process:  # the same request, its rows handed over as Arrow: no wire to serialize them for
            return self.table._run(Call("POST", path, read_json, headers={"content-type": ARROW_STREAM},
                                        extensions={ARROW_ROWS: rows}, timeout=UPLOAD_SECONDS))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, rows.schema) as writer:
            writer.write_batch(rows)
        return self.table._run(Call("POST", path, read_json, content=sink.getvalue().to_pybytes(),
                                    headers={"content-type": ARROW_STREAM}, timeout=UPLOAD_SECONDS))

    def commit(self, table: str, upload_id: str, tag: str | None = None) -> dict[str, Any]:
        return self.table._run(Call("POST", self._path(f"/{segment(upload_id)}/commit"), read_json,
                                    json={"tag": tag} if tag else None, timeout=UPLOAD_SECONDS))

    def abort(self, table: str, upload_id: str) -> None:
        self.table._run(Call("DELETE", self._path(f"/{segment(upload_id)}"), read_none, idempotent=True))


def ingest(table: Table, sources: Sequence[str | PathLike[str]], *, metadata: str | PathLike[str] | None = None,
           key: str | None = None, labels_from_dirs: bool = False, id_mode: str = "path", mode: str = "insert",
           dedup: str = "id", embed: str | None = None, embed_text: str | None = None, tag: str | None = None,
           message: str | None = None, author: str | None = None, branch: str | None = None,
           batch_rows: int | None = None, batch_bytes: int | None = None, workers: int | None = None,
           commit_every: int | None = None, verify: str = "header", max_pixels: int | None = None,
           progress: bool | None = False) -> IngestReport:
    """What ``Table.ingest`` does (its docstring says how)."""
    from ingest.upload import IngestOptions, run

    table._calls.check_writable("ingest")
    if isinstance(sources, str | PathLike):
        sources = [sources]
    opts = IngestOptions(table=table.name, sources=[str(s) for s in sources],
                         metadata=str(metadata) if metadata is not None else None, key=key,
                         labels_from_dirs=labels_from_dirs, id_mode=id_mode, dedup=dedup,  # type: ignore[arg-type]
                         mode=mode, embed=embed, embed_text=embed_text, tag=tag, message=message,  # type: ignore[arg-type]
                         author=author, commit_every=commit_every, verify=verify, max_pixels=max_pixels,  # type: ignore[arg-type]
                         progress=progress)
    _set(opts, batch_rows=batch_rows, batch_bytes=batch_bytes, workers=workers)
    report = run(HttpEndpoint(table, branch or table._calls.branch), opts)
    report.server = table.client.url
    return report


def _set(target: Any, **values: Any) -> None:
    for name, value in values.items():
        if value is not None:
            setattr(target, name, value)

