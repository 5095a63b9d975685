"""The ingest run: read, probe and hash files in parallel; stream batches into one commit.

Memory stays flat: items are produced lazily, a bounded number of chunks is in flight in the
thread pool, and finished rows leave as Arrow record batches that Lance writes as they come.
File reads and hashing release the GIL, so threads overlap I/O with probing on the 2 cores
without any BLAS/OpenMP work that could oversubscribe them.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa

from app.errors import Conflict
from app.store import Store
from app.store.column_fit import fit_values, is_text, plan_columns
from app.store.ids import id_problem, shown
from app.store.schema import (
    STANDARD_NAMES,
    blob_values,
    default_column,
    image_schema,
    is_blob,
    is_image_table,
    is_vector,
    vector_array,
    vector_field,
    vector_meta,
)
from app.store.upserts import keyed_write
from app.store.writes import (
    append_stream,
    check_tag_name,
    default_author,
    existing_values,
    stored_digests,
    tag_version,
)
from embeddings.base import Embedder
from embeddings.batch import embed_values
from embeddings.registry import Registry, UnknownModel
from ingest.metadata import Metadata
from ingest.probe import DEFAULT_MAX_PIXELS, Verify
from ingest.progress import Progress
from ingest.report import IngestReport, Skip
from ingest.sources import FolderSource, Item, Source, open_source
from ingest.tables import SideFileError
from ingest.work import Limits, Probed, probe_items, run_chunks

IdMode = Literal["path", "name", "sha256"]
Dedup = Literal["id", "content", "none"]


class IngestError(SideFileError):
    """The run cannot start (bad options, a schema that does not fit); nothing was written."""


class RowsRefused(IngestError):
    """A strict run met files it cannot store; it stopped before writing anything."""

    def __init__(self, message: str, refused: list[Skip]) -> None:
        super().__init__(message)
        self.refused = refused


# Skips that are a write's own rules (ids kept unique, content deduplicated), not bad input.
DEDUP_REASONS = frozenset({"duplicate_id", "duplicate_content"})


@dataclass
class IngestOptions:
    table: str
    sources: list[str | Source]  # paths/URIs, or ready Source objects (uploads)
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
    batch_bytes: int = 32 * 1024**2  # a batch is also cut at this many image bytes (flat memory)
    commit_every: int | None = None
    verify: Verify = "header"
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = 2 * 1024**3
    progress: bool | None = None  # None: a bar on a terminal, quiet in a pipe
    branch: str | None = None  # write to this branch (created from main's latest when new)
    embed: str | None = None  # model for a new vector column ("builtin", "sentence-transformers:...")
    embed_text: str | None = None  # embed this text column instead of the image
    mode: Literal["insert", "upsert"] = "insert"  # upsert replaces rows whose id exists
    skip_unchanged: bool = False  # upsert: a file whose bytes equal its stored row's is skipped as "unchanged"
    registry: Registry | None = None  # where models are loaded and kept (one per process)
    # All or nothing: a file that cannot be stored (not a dedup skip) refuses the whole run, before
    # anything is written. The LanceDB protocol's writes are strict, like LanceDB's own.
    strict: bool = False
    # Rows this run removes in its own version, given the ids it writes (an overwrite's other ids,
    # merge_insert's delete-by-source); called while the table's write turn is held.
    delete_ids: Callable[[set[str]], list[str]] | None = None


@dataclass(frozen=True)
class VectorSpec:
    """A vector column filled during ingest: from the image (in the workers) or a text column."""

    field: pa.Field
    embedder: Embedder
    source: str

    @property
    def from_image(self) -> bool:
        return self.source == "image"


def run_ingest(store: Store, opts: IngestOptions) -> IngestReport:
    """Ingest every source into ``opts.table`` as one version (or one per ``commit_every`` rows)."""
    with _fewer_gc_passes():
        return _run(store, opts)


@contextlib.contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """A run allocates a handful of short-lived, acyclic objects per file; Python's default
    collector thresholds make it re-scan them every 700 allocations, which cost 10-30% of a
    small-file ingest (measured). Collect 100x less often during the run, then restore."""
    before = gc.get_threshold()
    gc.set_threshold(70_000, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _begin(store: Store, opts: IngestOptions) -> tuple[IngestReport, list[Source], Metadata | None]:
    """What every engine starts a run with: its report, the opened sources and the metadata side file.

    Side-file columns the table already stores as text are read as text, as written (a CSV's ``007``
    for a text column stays ``007``; inferred, it would be the integer 7 and a type conflict)."""
    report = IngestReport(table=opts.table)
    if opts.metadata and not opts.key:
        raise IngestError("--metadata needs --key: the column that names each file")
    text = _text_columns(store, opts)
    sources = [s if isinstance(s, Source) else open_source(s, text) for s in opts.sources]
    metadata = Metadata.load(opts.metadata, opts.key or "id", text) if opts.metadata else None
    return report, sources, metadata


def _text_columns(store: Store, opts: IngestOptions) -> list[str]:
    """The non-standard columns the table (its branch, once that exists) stores as text."""
    if not store.exists(opts.table):
        return []
    head = store.latest(opts.table)
    if opts.branch and opts.branch in head.branches.list():
        head = store.latest(opts.table, opts.branch)
    return [f.name for f in head.schema if f.name not in STANDARD_NAMES and is_text(f.type)]


def _finish(store: Store, opts: IngestOptions, report: IngestReport, metadata: Metadata | None,
            started: float) -> IngestReport:
    """What every engine ends a committed run with: the metadata side file's leftovers, the tag, the time."""
    if metadata is not None:
        report.unmatched_metadata = metadata.unmatched()
        report.duplicate_metadata_keys = metadata.duplicates
    if opts.tag and store.exists(opts.table):
        _apply_tag(store, opts, report)
    report.seconds = time.perf_counter() - started
    return report


def _run(store: Store, opts: IngestOptions) -> IngestReport:
    started = time.perf_counter()
    report, sources, metadata = _begin(store, opts)
    exists = store.exists(opts.table)
    if opts.branch:
        _ensure_branch(store, opts.table, opts.branch, exists, report)
    report.previous_version = store.latest(opts.table, opts.branch).version if exists else None
    if opts.tag:
        check_tag_name(opts.tag)
        if exists:
            _check_tag(store, opts.table, opts.tag, opts.branch)
    schema, vectors = _schema(store, opts, sources, metadata, exists)
    upsert = opts.mode == "upsert"
    ids = set() if upsert else existing_values(store, opts.table, "id", opts.branch)
    digests = existing_values(store, opts.table, "sha256", opts.branch) if opts.dedup == "content" else set()
    rows = _RowBuilder(schema, opts, report, metadata, ids, digests, vectors)
    if upsert and opts.skip_unchanged:
        rows.stored = stored_digests(store, opts.table, opts.branch)
    total = sum((s.count() or 0) for s in sources) or None
    image_vectors = [v for v in vectors if v.from_image]
    with Progress(total, bool(image_vectors), opts.progress) as progress:
        items = itertools.chain.from_iterable(s.items() for s in sources)
        probed = run_chunks(_probe_chunk(opts, image_vectors, ids, progress.embedded), items, opts.workers,
                            heavy=bool(image_vectors))
        batches = rows.batches(probed, progress.probed)
        if opts.strict or opts.delete_ids is not None:  # every file is checked before anything is written
            held = list(batches)
            _refuse_bad_files(report)
            batches = iter(held)
        if opts.delete_ids is not None:
            _commit_keyed(store, opts, schema, batches, report)
        elif upsert:
            _commit_upsert(store, opts, schema, batches, report)
        else:
            _commit_appends(store, opts, schema, batches, report)
    return _finish(store, opts, report, metadata, started)


def _commit_appends(store: Store, opts: IngestOptions, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
                    report: IngestReport) -> None:
    segments = _Segments(batches, opts.commit_every) if opts.commit_every else None
    while True:
        segment = segments.next() if segments else batches
        version = append_stream(store, opts.table, schema, segment, message=opts.message,
                                author=opts.author or default_author(), branch=opts.branch)
        if version is None:
            return
        report.versions.append(version)
        report.version = version
        if not opts.commit_every:
            return


def _commit_upsert(store: Store, opts: IngestOptions, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
                   report: IngestReport) -> None:
    """Insert new ids and replace existing ones, as one version (the batch is held in memory)."""
    table = pa.Table.from_batches(list(batches), schema=schema)
    if not table.num_rows:
        return
    if not store.exists(opts.table):
        _commit_appends(store, opts, schema, iter(table.to_batches()), report)
        return
    version, counts = keyed_write(store, opts.table, table, mode="upsert", branch=opts.branch,
                                  message=opts.message, author=opts.author)
    report.updated, report.unchanged = counts.get("updated", 0), counts.get("unchanged", 0)
    if version is not None:
        report.versions.append(version)
        report.version = version


def _refuse_bad_files(report: IngestReport) -> None:
    refused = [s for s in report.skipped if s.reason not in DEDUP_REASONS]
    if refused:
        first = refused[0]
        raise RowsRefused(f"{len(refused)} row(s) refused, nothing written; first: {first.file}: "
                          f"{first.reason} ({first.message})", refused)


def _commit_keyed(store: Store, opts: IngestOptions, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
                  report: IngestReport) -> None:
    """Write the rows (upsert or insert) and delete ``opts.delete_ids`` as one version."""
    assert opts.delete_ids is not None
    if not store.exists(opts.table):
        raise IngestError(f"table {opts.table!r} does not exist")
    table = pa.Table.from_batches(list(batches), schema=schema)
    stale = opts.delete_ids({str(i) for i in table.column("id").to_pylist()})
    version, counts = keyed_write(store, opts.table, table, mode=opts.mode, branch=opts.branch,
                                  delete_ids=stale, message=opts.message, author=opts.author)
    report.updated, report.unchanged = counts.get("updated", 0), counts.get("unchanged", 0)
    report.deleted = counts.get("deleted", 0)
    if version is not None:
        report.versions.append(version)
        report.version = version


def _apply_tag(store: Store, opts: IngestOptions, report: IngestReport) -> None:
    assert opts.tag is not None
    try:
        tag_version(store, opts.table, opts.tag, branch=opts.branch)
    except Conflict as exc:  # the tag names the previous version and this run added a new one
        report.warnings.append(f"{exc.message}; the new version is not tagged")
        return
    report.tag = opts.tag  # only a tag that exists is reported


def _ensure_branch(store: Store, table: str, branch: str, exists: bool, report: IngestReport) -> None:
    if not exists:
        raise IngestError(f"table {table!r} does not exist yet, so it has no branches: ingest into main first")
    if branch not in store.latest(table).branches.list():
        from app.store import Ref
        from app.store.writes import create_branch

        created = create_branch(store, table, branch, Ref())
        report.warnings.append(f"created branch {branch!r} from version {created['parent_version']} of main")


def _check_tag(store: Store, table: str, tag: str, branch: str | None = None) -> None:
    """Fail before writing when ``tag`` names an older version: tagging the new one would conflict."""
    head = store.latest(table, branch)
    info = store.latest(table).tags.list().get(tag)
    if info is not None and (info.get("branch") != branch or int(info["version"]) != head.version):
        raise IngestError(
            f"tag {tag!r} already points at version {info['version']} of {table!r}; nothing was written"
        )


def _schema(
    store: Store, opts: IngestOptions, sources: list[Source], metadata: Metadata | None, exists: bool
) -> tuple[pa.Schema, list[VectorSpec]]:
    extra: dict[str, pa.Field] = {}
    stored = store.latest(opts.table, opts.branch).schema if exists else None
    if opts.labels_from_dirs:
        extra["label"] = pa.field("label", _label_type(sources, stored))
    for f in (metadata.fields if metadata else []):
        extra.setdefault(f.name, f)
    for source in sources:
        for f in source.extra_fields:
            extra.setdefault(f.name, f)
    extra = {n: f.with_type(pa.string()) if pa.types.is_null(f.type) else f for n, f in extra.items()}
    if not exists:
        vectors = _new_vectors(opts, list(extra.values()))
        schema = image_schema([*extra.values(), *(v.field for v in vectors)])
        return schema, vectors
    assert stored is not None
    if not is_image_table(stored):  # rows of any other schema are added as Arrow, not as image files
        raise IngestError(f"table {opts.table!r} is not an image table (it has no image/mime/sha256 columns); "
                          "add rows to it as an Arrow stream")
    # columns the table lacks are added (older rows read null) in the run's version; the others must fit
    schema = plan_columns(opts.table, stored, [f for n, f in extra.items() if n not in STANDARD_NAMES])
    return schema, _recorded_vectors(opts, schema)


def _embedder(opts: IngestOptions, model: str) -> Embedder:
    registry = opts.registry or Registry()
    opts.registry = registry
    try:
        return registry.get(model)
    except UnknownModel as exc:
        raise IngestError(str(exc)) from exc


def _new_vectors(opts: IngestOptions, fields: list[pa.Field]) -> list[VectorSpec]:
    """The vector column ``--embed`` asks for on a new table."""
    if not opts.embed:
        if opts.embed_text:
            raise IngestError("--embed-text needs --embed MODEL")
        return []
    source = opts.embed_text or "image"
    embedder = _embedder(opts, opts.embed)
    kind = "image" if source == "image" else "text"
    if kind not in embedder.modalities:
        raise IngestError(f"model {opts.embed!r} does not embed {kind}s; it embeds {sorted(embedder.modalities)}")
    if source != "image" and source not in {f.name for f in fields}:
        raise IngestError(f"--embed-text {source!r}: no such column in the metadata")
    field = vector_field(default_column(source, embedder.name), embedder.dim, model=embedder.name, source=source,
                         metric=embedder.metric)
    return [VectorSpec(field, embedder, source)]


def _recorded_vectors(opts: IngestOptions, schema: pa.Schema) -> list[VectorSpec]:
    """Vector columns of an existing table, filled with the model each one records."""
    specs = []
    for f in schema:
        meta = vector_meta(f) if is_vector(f) else {}
        if meta.get("model") and meta.get("source"):
            specs.append(VectorSpec(f, _embedder(opts, meta["model"]), meta["source"]))
    if opts.embed:
        wanted = opts.embed_text or "image"
        if not any(s.embedder.name == _embedder(opts, opts.embed).name and s.source == wanted for s in specs):
            raise IngestError(f"table {opts.table!r} has no vector column made by {opts.embed!r} from {wanted!r}; "
                              f"add one with `lightbox embed {opts.table} --model {opts.embed}`")
    return specs


def _label_type(sources: list[Source], stored: pa.Schema | None = None) -> pa.DataType:
    """Folder names as labels: integers when every one is digits, else text; text as written when the
    table already keeps its labels as text."""
    if stored is not None and "label" in stored.names and is_text(stored.field("label").type):
        return pa.string()
    labels = set().union(*(s.labels() for s in sources if isinstance(s, FolderSource)))
    return pa.int64() if labels and all(lbl.isdigit() for lbl in labels) else pa.string()


def _probe_chunk(opts: IngestOptions, vectors: list[VectorSpec], known: set[str],
                 embedded: Callable[[int], None] = lambda n: None) -> Callable[[list[Item]], list[Probed]]:
    limits = Limits(opts.max_file_bytes, opts.max_pixels, opts.verify)
    if not vectors:
        return functools.partial(probe_items, limits=limits)

    def work(items: list[Item]) -> list[Probed]:
        out = probe_items(items, limits)
        # rows the table already has are skipped later: don't embed them
        fresh = [p for p in out if p.reason is None and _row_id(p.item, p.digest or "", opts.id_mode) not in known]
        for spec in vectors:
            _embed_images(fresh, spec)
        embedded(len(fresh))
        return out

    return work


def _embed_images(probed: list[Probed], spec: VectorSpec) -> None:
    """Image vectors for a chunk, in the worker; an image the model cannot decode is skipped."""
    ok = [p for p in probed if p.reason is None]
    for p, vector in zip(ok, embed_values(spec.embedder, [p.data for p in ok], True), strict=True):
        if vector is None:
            p.reason, p.message = "undecodable", f"the image could not be decoded to embed it with {spec.embedder.name}"
        else:
            p.vectors[spec.field.name] = vector


class _RowBuilder:
    """Turns probed files into record batches, applying ids, dedup and the metadata join."""

    def __init__(self, schema: pa.Schema, opts: IngestOptions, report: IngestReport,
                 metadata: Metadata | None, ids: set[str], digests: set[str], vectors: list[VectorSpec]) -> None:
        self.schema, self.opts, self.report, self.metadata = schema, opts, report, metadata
        self.ids, self.digests = ids, digests
        self.stored: dict[str, str] | None = None  # id -> sha256 of stored rows, to skip unchanged files
        self.vectors = {v.field.name: v for v in vectors}
        self.now = datetime.now(UTC)
        meta_columns = metadata.columns if metadata is not None else {}
        # Where each non-standard column's value comes from, decided once rather than per row.
        self.plan: list[tuple[str, str]] = []
        for name in schema.names:
            if name in STANDARD_NAMES:
                continue
            if name in self.vectors:
                kind = "vector"
            elif name in meta_columns:
                kind = "metadata"
            elif name == "label" and opts.labels_from_dirs:  # folder names, as numbers for an integer column
                kind = "label_number" if pa.types.is_integer(schema.field(name).type) else "label"
            else:
                kind = "extra"
            self.plan.append((name, kind))
        self._reset()

    def _reset(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self.nbytes = 0

    def batches(self, probed: Iterable[list[Probed]], tick: Callable[[int], Any]) -> Iterator[pa.RecordBatch]:
        for chunk in probed:
            for p in chunk:
                self._add(p)
            tick(len(chunk))
            if len(self.cols["id"]) >= self.opts.batch_rows or self.nbytes >= self.opts.batch_bytes:
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
        problem = id_problem(row_id)
        if problem is not None:  # an id that could not be addressed over HTTP is never stored
            report.skip(item.source, "invalid_id", f"id {shown(row_id)} {problem}")
            return
        if row_id in self.ids:
            report.skip(item.source, "duplicate_id", f"id {row_id!r} is already in the table or this run")
            return
        if self.stored is not None and self.stored.get(row_id) == p.digest:
            report.skip(item.source, "unchanged", f"row {row_id!r} already holds these bytes")
            return
        if self.opts.dedup == "content":
            if p.digest in self.digests:
                report.skip(item.source, "duplicate_content",
                            f"the same bytes (sha256 {p.digest[:12]}) are already stored")
                return
            self.digests.add(p.digest)
        self.ids.add(row_id)
        if self.metadata is not None and meta_pos is None:
            report.missing_metadata.append(row_id)
        self._append(p, row_id, meta_pos)
        size = len(p.data)
        report.added += 1
        report.bytes += size
        self.nbytes += size

    def _append(self, p: Probed, row_id: str, meta_pos: int | None) -> None:
        info, cols, item = p.info, self.cols, p.item
        assert info is not None
        cols["id"].append(row_id)
        cols["image"].append(p.data)
        cols["mime"].append(info.mime)
        cols["width"].append(info.width)
        cols["height"].append(info.height)
        cols["mode"].append(info.mode)
        cols["frames"].append(info.frames)
        cols["size_bytes"].append(len(p.data or b""))
        cols["sha256"].append(p.digest)
        cols["source"].append(item.source)
        cols["ingested_at"].append(self.now)
        for name, kind in self.plan:
            if kind == "metadata" and meta_pos is not None:
                value = self.metadata.columns[name][meta_pos]  # type: ignore[union-attr]
            elif kind == "vector":
                value = p.vectors.get(name)
            elif kind == "label" and name not in item.extra:
                value = item.label
            elif kind == "label_number" and name not in item.extra:
                value = int(item.label) if item.label is not None and item.label.isdigit() else item.label
            else:
                value = item.extra.get(name)
            cols[name].append(value)

    def _metadata_row(self, item: Item, digest: str | None) -> int | None:
        if self.metadata is None:
            return None
        if digest is None:
            return self.metadata.lookup(item.rel)
        return self.metadata.lookup(_row_id(item, digest, self.opts.id_mode), item.rel)

    def _flush(self) -> pa.RecordBatch:
        for name, spec in self.vectors.items():
            if not spec.from_image:  # text vectors: one batched call per flush
                self.cols[name] = embed_values(spec.embedder, self.cols[spec.source], False)
        arrays = [vector_array(self.cols[f.name], f) if f.name in self.vectors
                  else _to_array(self.opts.table, self.cols[f.name], f)
                  for f in self.schema]
        self._reset()
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def _to_array(table: str, values: list[Any], f: pa.Field) -> pa.Array:
    """A column of a batch, its values fitted to the column's type by the safe casts only."""
    if is_blob(f):
        return blob_values(values)
    return fit_values(table, f, values)


def _row_id(item: Item, digest: str, mode: IdMode) -> str:
    if mode == "sha256":
        return digest
    if mode == "name":
        return item.rel.rpartition("/")[2]
    return item.rel


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
