"""One ingest run, one version: the sources walked here, sent as batches of one upload session, committed once.

The same run whoever serves the session: the service over HTTP (``lightbox.Table.ingest``), the service
in this process (``lightbox.connect(root)``: what ``lightbox ingest --uri`` runs), or the upload
service called directly (``ingest.pipeline.run_ingest``). An ``Endpoint`` is the four calls of a
session. Reading batch N+1 overlaps the service's work on batch N (one batch is read ahead, so
memory holds about two batches); a run that fails or is interrupted aborts its session, and nothing
of it is committed. ``commit_every`` commits every that many rows written (a session each).

Standard library and pyarrow only: the SDK runs it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pyarrow as pa

from ingest import columnar
from ingest.pool import received
from ingest.progress import Progress
from ingest.report import IngestReport, Skip
from ingest.sources import Source
from ingest.walk import Batch, Walker, check_sources, file_reader

IdMode = Literal["path", "name", "sha256"]
Dedup = Literal["id", "content", "none"]


class Endpoint(Protocol):
    """The four calls of an upload session (the HTTP routes, or the upload service itself)."""

    def begin(self, table: str, options: dict[str, Any]) -> dict[str, Any]: ...

    def send(self, table: str, upload_id: str, rows: pa.RecordBatch) -> dict[str, Any]: ...

    def commit(self, table: str, upload_id: str, tag: str | None = None) -> dict[str, Any]: ...

    def abort(self, table: str, upload_id: str) -> None: ...


@dataclass
class IngestOptions:
    table: str
    sources: list[str | Source]  # paths/URIs, or ready Source objects
    metadata: str | None = None
    key: str | None = None
    labels_from_dirs: bool = False
    id_mode: IdMode = "path"
    dedup: Dedup = "id"
    tag: str | None = None
    message: str | None = None
    author: str | None = None
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    batch_rows: int = 8192
    batch_bytes: int = 16 * 1024**2  # a batch is also cut at this many image bytes (flat memory)
    commit_every: int | None = None
    verify: Literal["header", "decode"] = "header"
    max_pixels: int | None = None
    max_file_bytes: int = 2 * 1024**3
    progress: bool | None = None  # None: a bar on a terminal, quiet in a pipe
    branch: str | None = None  # write to this branch (created from main's latest when new)
    embed: str | None = None  # model for a new vector column ("builtin", "sentence-transformers:...")
    embed_text: str | None = None  # embed this text column instead of the image
    mode: Literal["insert", "upsert"] = "insert"  # upsert replaces rows whose id exists (unchanged ones are skipped)
    registry: Any = None  # ``run_ingest`` only: the embeddings registry models are loaded into (one per process)

    def session_options(self) -> dict[str, Any]:
        """What the service is asked to do with the rows (the rest is the walk's, here)."""
        wanted = {"mode": self.mode, "dedup": self.dedup, "branch": self.branch, "embed": self.embed,
                  "embed_text": self.embed_text, "message": self.message, "author": self.author,
                  "verify": self.verify, "max_pixels": self.max_pixels}
        return {k: v for k, v in wanted.items() if v is not None}


def run(endpoint: Endpoint, opts: IngestOptions) -> IngestReport:
    """Walk, send and commit; the report says what was written and what was skipped, with why."""
    with fewer_gc_passes():
        return _Run(endpoint, opts).go()


@contextlib.contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """A run allocates a handful of short-lived, acyclic objects per file; Python's default
    collector thresholds make it re-scan them every 700 allocations, which cost 10-30% of a
    small-file ingest (measured). Collect 100x less often during the run, then restore. The objects
    that existed before the run (the imported libraries, the app: millions of them) are frozen for
    its length, so that a full collection, when one comes, scans only the run's own (one cost a
    100k-file ingest 0.1 s, measured)."""
    before = gc.get_threshold()
    gc.set_threshold(70_000, before[1], before[2])
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class _Run:
    def __init__(self, endpoint: Endpoint, opts: IngestOptions) -> None:
        self.endpoint, self.opts = endpoint, opts
        self.report = IngestReport(table=opts.table)
        self.upload_id: str | None = None
        self.accepted = 0  # rows the open session wrote
        self.last: dict[str, Any] | None = None  # the last committed session's result

    def go(self) -> IngestReport:
        started = time.perf_counter()
        check_sources(self.opts.sources, self.opts.metadata, self.opts.key)  # before the session begins
        prefetch = columnar.prefetch(self.opts.sources, self.opts.workers, file_reader)  # folders listed meanwhile
        try:
            return self._go(started, prefetch)
        finally:
            if prefetch is not None:
                prefetch.close()

    def _go(self, started: float, prefetch: columnar.Prefetch | None) -> IngestReport:
        begun = self._begin(first=True)
        try:
            walker = Walker(self.opts.sources, metadata=self.opts.metadata, key=self.opts.key,
                            labels_from_dirs=self.opts.labels_from_dirs, id_mode=self.opts.id_mode,
                            columns=begun.get("columns"), batch_rows=self.opts.batch_rows,
                            batch_bytes=self.opts.batch_bytes, workers=self.opts.workers,
                            max_file_bytes=self.opts.max_file_bytes, max_batch_bytes=begun.get("max_batch_bytes"),
                            prefetch=prefetch)
            embedding = bool(self.opts.embed) or bool(begun.get("embeds"))
            with Progress(walker.total, embedding, self.opts.progress) as progress:
                for batch in _ahead(walker.batches()):
                    self._send(batch)
                    progress.probed(batch.files)
                    if embedding:
                        progress.embedded(batch.rows.num_rows)
                self._commit(last=True)
        except BaseException:
            self._abort()
            raise
        self._finish(walker)
        self.report.seconds = time.perf_counter() - started
        return self.report

    def _begin(self, first: bool = False) -> dict[str, Any]:
        options = self.opts.session_options()
        if self.opts.tag and not self.opts.commit_every:
            options["tag"] = self.opts.tag  # checked now, so a taken tag fails before anything is read
        begun = self.endpoint.begin(self.opts.table, options)
        self.upload_id, self.accepted = begun["upload_id"], 0
        if first:
            self.report.previous_version = begun.get("read_version")
        self.report.warnings.extend(begun.get("warnings") or [])
        return begun

    def _send(self, batch: Batch) -> None:
        """Send a batch (in slices, so each ``commit_every`` version gets exactly that many rows)."""
        rows, skips = batch.rows, list(batch.skipped)
        missing: list[int] = []
        start = 0
        while start < rows.num_rows:
            size = rows.num_rows - start
            if self.opts.commit_every:
                size = min(size, self.opts.commit_every - self.accepted)
            assert self.upload_id is not None
            out = self.endpoint.send(self.opts.table, self.upload_id, rows.slice(start, size))
            dropped = {start + s["row"] for s in out["skipped"]}
            skips.extend((batch.positions[start + s["row"]], Skip(s["file"], s["reason"], s["message"]))
                         for s in out["skipped"])
            missing.extend(i for i in batch.unmatched if start <= i < start + size and i not in dropped)
            self._count(out)
            start += size
            if self.opts.commit_every and self.accepted >= self.opts.commit_every:
                self._commit()
                self._begin()
        self.report.skipped.extend(skip for _, skip in sorted(skips, key=lambda s: s[0]))
        ids = rows.column("id")
        self.report.missing_metadata.extend(ids[i].as_py() for i in missing)

    def _count(self, out: dict[str, Any]) -> None:
        self.accepted += out["accepted"]
        self.report.added += out["accepted"]
        self.report.updated += out["updated"]
        self.report.unchanged += out["unchanged"]
        self.report.bytes += out["bytes"]

    def _commit(self, last: bool = False) -> None:
        """Commit the open session; a ``commit_every`` run's tag goes on its last version only."""
        assert self.upload_id is not None
        upload_id, self.upload_id = self.upload_id, None
        tag = self.opts.tag if last and self.opts.commit_every else None
        done = self.endpoint.commit(self.opts.table, upload_id, tag)
        result = done.get("result") or {}
        self.last = result
        if result.get("version") is not None:
            self.report.versions.append(result["version"])
            self.report.version = result["version"]
        self.report.deleted += result.get("deleted") or 0
        self.report.warnings.extend(w for w in result.get("warnings") or [] if w not in self.report.warnings)

    def _abort(self) -> None:
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            with contextlib.suppress(Exception):
                self.endpoint.abort(self.opts.table, upload_id)

    def _finish(self, walker: Walker) -> None:
        """The last session's tag; the metadata side file's leftovers."""
        if self.opts.tag:
            self.report.tag = (self.last or {}).get("tag")
        if walker.metadata is not None:
            self.report.unmatched_metadata = walker.metadata.unmatched()
            self.report.duplicate_metadata_keys = walker.metadata.duplicates


def _ahead(batches: Iterator[Batch]) -> Iterator[Batch]:
    """``batches`` with the next one read on a thread while the caller sends this one; an error of the
    reader is raised here, and the reader stops when the caller does."""
    slot: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def read() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        slot.put(("batch", batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slot.put(("end", None))
        except BaseException as exc:  # handed to the caller, who raises it
            slot.put(("error", exc))

    reader = threading.Thread(target=read, daemon=True, name="lightbox-ingest-read")
    reader.start()
    try:
        yield from received(slot)
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            slot.get_nowait()
        reader.join(timeout=5)
