"""The ingest run: read, probe and hash files in parallel; stream batches into one commit.

Memory stays flat: items are produced lazily, a bounded number of chunks is in flight in the
thread pool, and finished rows leave as Arrow record batches that Lance writes as they come.
File reads and hashing release the GIL, so threads overlap I/O with probing on the 2 cores
without any BLAS/OpenMP work that could oversubscribe them.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, Literal

import pyarrow as pa

from app.store import Store
from app.store.schema import STANDARD_NAMES, image_schema
from app.store.writes import append_stream, default_author, existing_values, tag_version
from ingest.metadata import Metadata
from ingest.probe import DEFAULT_MAX_PIXELS, ImageInfo, ProbeError, Verify, probe
from ingest.report import IngestReport
from ingest.sources import FolderSource, Item, Source, open_source, read_bytes
from ingest.tables import SideFileError

IdMode = Literal["path", "name", "sha256"]
Dedup = Literal["id", "content", "none"]
CHUNK = 128


class IngestError(SideFileError):
    """The run cannot start (bad options, a schema that does not fit); nothing was written."""


@dataclass
class IngestOptions:
    table: str
    sources: list[str]
    metadata: str | None = None
    key: str | None = None
    labels_from_dirs: bool = False
    id_mode: IdMode = "path"
    dedup: Dedup = "id"
    tag: str | None = None
    message: str | None = None
    author: str | None = None
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    batch_rows: int = 4096
    commit_every: int | None = None
    verify: Verify = "header"
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = 2 * 1024**3
    progress: bool | None = None  # None: a bar on a terminal, quiet in a pipe


@dataclass(slots=True)
class Probed:
    item: Item
    data: bytes | None = None
    info: ImageInfo | None = None
    digest: str | None = None
    reason: str | None = None
    message: str | None = None


def run_ingest(store: Store, opts: IngestOptions) -> IngestReport:
    """Ingest every source into ``opts.table`` as one version (or one per ``commit_every`` rows)."""
    started = time.perf_counter()
    report = IngestReport(table=opts.table)
    if opts.metadata and not opts.key:
        raise IngestError("--metadata needs --key: the column that names each file")
    sources = [open_source(s) for s in opts.sources]
    metadata = Metadata.load(opts.metadata, opts.key or "id") if opts.metadata else None
    exists = store.exists(opts.table)
    report.previous_version = store.latest(opts.table).version if exists else None
    if opts.tag and exists:
        _check_tag(store, opts.table, opts.tag)
    schema = _schema(store, opts, sources, metadata, exists)
    ids = existing_values(store, opts.table, "id")
    digests = existing_values(store, opts.table, "sha256") if opts.dedup == "content" else set()
    rows = _RowBuilder(schema, opts, report, metadata, ids, digests)
    total = sum((s.count() or 0) for s in sources) or None
    with _progress(total, opts.progress) as bar, ThreadPoolExecutor(opts.workers) as pool:
        probed = _parallel(pool, _probe_chunk(opts), _chunks(itertools.chain.from_iterable(
            s.items() for s in sources)), ahead=opts.workers * 2)
        batches = rows.batches(probed, bar.update)
        segments = _Segments(batches, opts.commit_every) if opts.commit_every else None
        while True:
            segment = segments.next() if segments else batches
            version = append_stream(store, opts.table, schema, segment,
                                    message=opts.message, author=opts.author or default_author())
            if version is None:
                break
            report.versions.append(version)
            report.version = version
            if not opts.commit_every:
                break
    if metadata is not None:
        report.unmatched_metadata = metadata.unmatched()
        report.duplicate_metadata_keys = metadata.duplicates
    if opts.tag and store.exists(opts.table):
        tag_version(store, opts.table, opts.tag)
        report.tag = opts.tag  # only a tag that exists is reported
    report.seconds = time.perf_counter() - started
    return report


def _check_tag(store: Store, table: str, tag: str) -> None:
    """Fail before writing when ``tag`` names an older version: tagging the new one would conflict."""
    ds = store.latest(table)
    info = ds.tags.list().get(tag)
    if info is not None and (info.get("branch") is not None or int(info["version"]) != ds.version):
        raise IngestError(
            f"tag {tag!r} already points at version {info['version']} of {table!r}; nothing was written"
        )


def _schema(
    store: Store, opts: IngestOptions, sources: list[Source], metadata: Metadata | None, exists: bool
) -> pa.Schema:
    extra: dict[str, pa.Field] = {}
    if opts.labels_from_dirs:
        extra["label"] = pa.field("label", _label_type(sources))
    for f in (metadata.fields if metadata else []):
        extra.setdefault(f.name, f)
    for source in sources:
        for f in source.extra_fields:
            extra.setdefault(f.name, f)
    extra = {n: f.with_type(pa.string()) if pa.types.is_null(f.type) else f for n, f in extra.items()}
    if not exists:
        return image_schema(list(extra.values()))
    schema = store.latest(opts.table).schema
    unknown = [n for n in extra if n not in schema.names and n not in STANDARD_NAMES]
    if unknown:
        raise IngestError(
            f"table {opts.table!r} has no column(s) {unknown}; existing columns: {schema.names}"
        )
    return schema


def _label_type(sources: list[Source]) -> pa.DataType:
    labels = {
        PurePosixPath(rel).parent.name
        for s in sources if isinstance(s, FolderSource)
        for rel in s._walk()
    }
    labels.discard("")
    return pa.int64() if labels and all(lbl.isdigit() for lbl in labels) else pa.string()


def _probe_chunk(opts: IngestOptions) -> Callable[[list[Item]], list[Probed]]:
    def work(items: list[Item]) -> list[Probed]:
        out = []
        for item in items:
            try:
                data = read_bytes(item, opts.max_file_bytes)
            except ValueError as exc:
                out.append(Probed(item, reason="too_large", message=str(exc)))
                continue
            except OSError as exc:
                out.append(Probed(item, reason="unreadable", message=exc.strerror or str(exc)))
                continue
            try:
                info = probe(data, max_pixels=opts.max_pixels, verify=opts.verify)
            except ProbeError as exc:
                out.append(Probed(item, reason=exc.reason, message=exc.message))
                continue
            except Exception as exc:  # a decoder bug must cost one file, not the run
                out.append(Probed(item, reason="corrupt", message=f"{type(exc).__name__}: {exc}"))
                continue
            out.append(Probed(item, data, info, hashlib.sha256(data).hexdigest()))
        return out

    return work


class _RowBuilder:
    """Turns probed files into record batches, applying ids, dedup and the metadata join."""

    def __init__(self, schema: pa.Schema, opts: IngestOptions, report: IngestReport,
                 metadata: Metadata | None, ids: set[str], digests: set[str]) -> None:
        self.schema, self.opts, self.report, self.metadata = schema, opts, report, metadata
        self.ids, self.digests = ids, digests
        self.now = datetime.now(UTC)
        self._reset()

    def _reset(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}

    def batches(self, probed: Iterable[list[Probed]], tick: Callable[[int], Any]) -> Iterator[pa.RecordBatch]:
        for chunk in probed:
            for p in chunk:
                self._add(p)
            tick(len(chunk))
            if len(self.cols["id"]) >= self.opts.batch_rows:
                yield self._flush()
        if self.cols["id"]:
            yield self._flush()

    def _add(self, p: Probed) -> None:
        item, report = p.item, self.report
        # Looked up for skipped files too: a metadata row naming a real file is never "unmatched".
        meta_pos = self._metadata_row(item, p.digest)
        if p.reason is not None:
            report.skip(item.source, p.reason, p.message or "")
            return
        assert p.info is not None and p.data is not None and p.digest is not None
        row_id = _row_id(item, p.digest, self.opts.id_mode)
        if row_id in self.ids:
            report.skip(item.source, "duplicate_id", f"id {row_id!r} is already in the table or this run")
            return
        if self.opts.dedup == "content" and p.digest in self.digests:
            report.skip(item.source, "duplicate_content", f"the same bytes (sha256 {p.digest[:12]}) are already stored")
            return
        self.ids.add(row_id)
        self.digests.add(p.digest) if self.opts.dedup == "content" else None
        if self.metadata is not None and meta_pos is None:
            report.missing_metadata.append(row_id)
        info, cols = p.info, self.cols
        values = {
            "id": row_id, "image": p.data, "mime": info.mime, "width": info.width, "height": info.height,
            "mode": info.mode, "frames": info.frames, "size_bytes": len(p.data), "sha256": p.digest,
            "source": item.source, "ingested_at": self.now,
        }
        for name, column in cols.items():
            if name in values:
                column.append(values[name])
            elif self.metadata is not None and name in self.metadata.columns and meta_pos is not None:
                column.append(self.metadata.value(name, meta_pos))
            elif name in item.extra:
                column.append(item.extra[name])
            elif name == "label" and self.opts.labels_from_dirs:
                column.append(item.label)
            else:
                column.append(None)
        report.added += 1
        report.bytes += len(p.data)

    def _metadata_row(self, item: Item, digest: str | None) -> int | None:
        if self.metadata is None:
            return None
        if digest is None:
            return self.metadata.lookup(item.rel)
        return self.metadata.lookup(_row_id(item, digest, self.opts.id_mode), item.rel)

    def _flush(self) -> pa.RecordBatch:
        arrays = [_to_array(self.cols[f.name], f) for f in self.schema]
        self._reset()
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def _to_array(values: list[Any], f: pa.Field) -> pa.Array:
    from lance.blob import blob_array

    from app.store.schema import is_blob

    if is_blob(f):
        return blob_array(values)
    if f.name == "label" and pa.types.is_integer(f.type):
        values = [None if v is None else int(v) for v in values]
    try:
        return pa.array(values, type=f.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        try:
            return pa.array(values).cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise IngestError(f"column {f.name!r}: values do not fit type {f.type}: {exc}") from exc


def _row_id(item: Item, digest: str, mode: IdMode) -> str:
    if mode == "sha256":
        return digest
    if mode == "name":
        return PurePosixPath(item.rel).name
    return item.rel


def _chunks(items: Iterator[Item]) -> Iterator[list[Item]]:
    while chunk := list(itertools.islice(items, CHUNK)):
        yield chunk


def _parallel(pool: ThreadPoolExecutor, fn: Callable[[list[Item]], list[Probed]],
              chunks: Iterator[list[Item]], ahead: int) -> Iterator[list[Probed]]:
    """``pool.map`` in order, but with at most ``ahead`` chunks in flight (flat memory)."""
    pending: deque[Future[list[Probed]]] = deque()
    for chunk in chunks:
        pending.append(pool.submit(fn, chunk))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class _Segments:
    """Cuts one stream of batches into runs of exactly ``limit`` rows (the last may be shorter).

    Batches hold up to ``batch_rows`` rows, so counting whole batches would put 4,096 rows in
    every version of a ``--commit-every 1000`` run; a batch that straddles a boundary is split.
    """

    def __init__(self, batches: Iterator[pa.RecordBatch], limit: int) -> None:
        self.batches, self.limit = batches, max(1, limit)
        self.left: pa.RecordBatch | None = None

    def next(self) -> Iterator[pa.RecordBatch]:
        count = 0
        while count < self.limit:
            if self.left is not None:
                batch, self.left = self.left, None
            else:
                batch = next(self.batches, None)
            if batch is None:
                return
            room = self.limit - count
            if batch.num_rows > room:
                batch, self.left = batch.slice(0, room), batch.slice(room)
            count += batch.num_rows
            yield batch


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress(total: int | None, enabled: bool | None) -> Any:
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)
