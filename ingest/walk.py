"""Sources as batches of upload rows: the client's half of an ingest run.

Walks the sources (folders, manifests, Parquet files of image bytes, WebDataset shards), reads each
file's bytes once (``ingest.pool``: inline for small files, threads for large ones), derives each
row's id, joins its metadata and its folder's label, and cuts the rows into Arrow record batches of
``id``, ``image``, ``source`` and the metadata columns, every batch with the same schema. Probing,
hashing, deduplication and embedding are the service's half (``app.services.uploads``).

Standard library and pyarrow only: the SDK runs it.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import itertools
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np
import pyarrow as pa

from ingest import columnar
from ingest.metadata import Metadata
from ingest.pool import THREADS_FROM_BYTES, run_chunks
from ingest.reader_process import FileReader, refusal, too_large
from ingest.report import Skip
from ingest.sources import FolderSource, Item, Source, open_source, read_bytes
from ingest.tables import SideFileError

# Columns the service computes (or that a row is): a side file's column of one of these names is not sent.
STANDARD_NAMES = frozenset({"id", "image", "mime", "width", "height", "mode", "frames", "size_bytes", "sha256",
                            "source", "ingested_at"})
BATCH_SLACK = 1024**2  # room in a request for a batch's ids, sources and metadata besides its image bytes
FIRST_CHUNK = 128  # files read here first, to learn whether they are small
CHILD_CHUNK = 512  # files a chunk of the helper process's reading
TEXT_TYPES = frozenset({"string", "large_string", "utf8", "large_utf8", "string_view"})


class IngestError(SideFileError):
    """The run cannot start (bad options, a side file that cannot be used); nothing was written."""


@dataclass(slots=True)
class Read:
    item: Item
    data: bytes | None
    reason: str | None = None
    message: str | None = None


@dataclass
class Batch:
    """Rows to send, and what the walk itself learned about the files they came from."""

    rows: pa.RecordBatch
    files: int  # files walked for this batch: its rows and ``skipped``
    skipped: list[tuple[int, Skip]] = field(default_factory=list)  # (position among the files, why)
    positions: Sequence[int] = field(default_factory=list)  # each row's position among the batch's files
    unmatched: list[int] = field(default_factory=list)  # rows with no metadata row (when metadata is joined)


def check_sources(sources: Sequence[str | PathLike[str] | Source], metadata: str | PathLike[str] | None,
                  key: str | None) -> None:
    """What can be told before a session begins: the sources and the side file exist, a key names it."""
    if metadata and not key:
        raise IngestError("--metadata needs --key: the column that names each file")
    named = [("source", os.fspath(s)) for s in sources if not isinstance(s, Source)]
    for kind, spec in [*named, *([("metadata file", os.fspath(metadata))] if metadata else [])]:
        if "://" not in spec and not os.path.exists(spec):  # a URL is for its reader to find
            raise IngestError(f"{kind} {spec!r} does not exist")


class Walker:
    """The rows of an ingest run. ``columns`` are the table's (``[{"name", "type"}]``, None for a new table):
    side-file columns it keeps as text are read as text, folder labels too when its ``label`` is text."""

    def __init__(self, sources: Sequence[str | Source], *, metadata: str | None = None, key: str | None = None,
                 labels_from_dirs: bool = False, id_mode: str = "path",
                 columns: Sequence[Mapping[str, Any]] | None = None, batch_rows: int = 8192,
                 batch_bytes: int = 32 * 1024**2, workers: int = 4, max_file_bytes: int = 2 * 1024**3,
                 max_batch_bytes: int | None = None, prefetch: columnar.Prefetch | None = None) -> None:
        check_sources(sources, metadata, key)
        text = [str(c["name"]) for c in columns or [] if str(c.get("type")) in TEXT_TYPES
                and c["name"] not in STANDARD_NAMES]
        self.sources = [s if isinstance(s, Source) else open_source(os.fspath(s), text) for s in sources]
        self.prefetch = prefetch  # the run's helper process, already listing its folders
        if prefetch is not None:
            prefetch.attach(self.sources)
        self.metadata = Metadata.load(os.fspath(metadata), key or "id", text) if metadata else None
        self.labels_from_dirs, self.id_mode = labels_from_dirs, id_mode
        self.batch_rows, self.batch_bytes = max(1, batch_rows), max(1, batch_bytes)
        self.workers, self.max_file_bytes = workers, max_file_bytes
        # a service's limit on a request's body: every batch stays under it, a larger file is skipped
        self.batch_cap = max(1, max_batch_bytes - BATCH_SLACK) if max_batch_bytes else None
        self.source_fields = {f.name for s in self.sources for f in s.extra_fields}
        self.schema = self._schema("label" in text)

    @classmethod
    def of_items(cls, items: list[Item], like: Walker) -> Walker:
        """The rows of some of ``like``'s items (one shard of a run), with its schema and metadata."""
        walker = cls.__new__(cls)
        walker.__dict__.update(like.__dict__)
        walker.sources = [_Listed(items)]
        return walker

    @property
    def total(self) -> int | None:
        return sum((s.count() or 0) for s in self.sources) or None

    def _schema(self, text_labels: bool) -> pa.Schema:
        """id, image, source, then the label, the metadata columns and the sources' own columns."""
        extra: dict[str, pa.Field] = {}
        if self.labels_from_dirs:
            extra["label"] = pa.field("label", pa.string() if text_labels else self._label_type())
        for f in [*(self.metadata.fields if self.metadata else []), *(f for s in self.sources for f in s.extra_fields)]:
            extra.setdefault(f.name, f)
        fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                  for n, f in extra.items() if n not in STANDARD_NAMES]
        return pa.schema([pa.field("id", pa.string()), pa.field("image", pa.large_binary()),
                          pa.field("source", pa.string()), *fields])

    def _label_type(self) -> pa.DataType:
        """Folder names as labels: integers when every one is digits, else text."""
        labels = set().union(*(s.labels() for s in self.sources if isinstance(s, FolderSource)))
        return pa.int64() if labels and all(lbl.isdigit() for lbl in labels) else pa.string()

    def batches(self) -> Iterator[Batch]:
        """The run's rows, ``batch_rows`` rows or ``batch_bytes`` image bytes at a time: folders of small local
        files column by column (``ingest.columnar``), anything else file by file."""
        cap = self.batch_cap
        largest = min(self.max_file_bytes, cap) if cap else self.max_file_bytes
        prefetch = self.prefetch
        by_columns = columnar.plan(self, largest, prefetch.reader if prefetch is not None else file_reader)
        if by_columns is None and prefetch is not None:
            prefetch.close()
        if by_columns is not None:
            yield from by_columns.batches(lambda items, sizes, data: self._gather(
                [_reads_of(items, sizes, data, largest, cap)], cap))
            return
        items = itertools.chain.from_iterable(s.items() for s in self.sources)
        yield from self._gather(self._reads(items, largest, cap), cap)

    def _gather(self, reads: Iterable[list[Read]], cap: int | None) -> Iterator[Batch]:
        """Read files as batches, cut at ``batch_rows``, ``batch_bytes`` and the service's ``cap``."""
        rows = _Rows(self)
        for chunk in reads:
            for read in chunk:
                if cap and rows.count and rows.nbytes + len(read.data or b"") > cap:
                    yield rows.flush()
                rows.add(read)
                if rows.count >= self.batch_rows or rows.nbytes >= self.batch_bytes:
                    yield rows.flush()
        if rows.files:
            yield rows.flush()


    def _reads(self, items: Iterator[Item], largest: int, cap: int | None) -> Iterator[list[Read]]:
        """Every item read, in order, a chunk at a time: the first chunk here; the rest by a helper process when
        the files are small and local (``ingest.reader_process``: the reading takes the other core), else
        here (large files on threads)."""
        first = list(itertools.islice(items, FIRST_CHUNK))
        head = _read_chunk(first, largest, cap)
        yield head
        sizes = [len(r.data) for r in head if r.data]
        small = bool(sizes) and sum(sizes) < THREADS_FROM_BYTES * len(sizes)
        reader = file_reader() if small and self.workers > 1 and len(first) == FIRST_CHUNK else None
        if reader is None:
            yield from run_chunks(lambda chunk: _read_chunk(chunk, largest, cap), items, self.workers,
                                  lambda r: len(r.data or b""))
            return
        chunks = ((chunk, [_local_path(i) or "" for i in chunk if _local_path(i)])
                  for chunk in iter(lambda: list(itertools.islice(items, CHILD_CHUNK)), []))
        for chunk, sizes, data in reader.chunks(chunks, largest):
            yield _reads_of(chunk, sizes, data, largest, cap)


class _Listed(Source):
    """Items already listed (a shard of a run)."""

    def __init__(self, items: list[Item]) -> None:
        self.listed, self.extra_fields = items, []

    def items(self) -> Iterator[Item]:
        return iter(self.listed)

    def count(self) -> int:
        return len(self.listed)


def _read_chunk(items: list[Item], max_bytes: int, service_cap: int | None) -> list[Read]:
    return [_read_one(item, max_bytes, service_cap) for item in items]


def _read_one(item: Item, max_bytes: int, service_cap: int | None) -> Read:
    try:
        return Read(item, read_bytes(item, max_bytes))
    except ValueError as exc:
        return _too_large(item, str(exc), max_bytes, service_cap)
    except OSError as exc:
        return Read(item, None, "unreadable", exc.strerror or str(exc))


def _too_large(item: Item, why: str, max_bytes: int, service_cap: int | None) -> Read:
    return Read(item, None, "too_large", too_large(why, max_bytes, service_cap))


def _local_path(item: Item) -> str | None:
    """The local file an item is read from (None: its bytes are given, or it is a URL)."""
    if item.data is not None or item.path is None or ("://" in item.path and not item.path.startswith("file://")):
        return None
    return item.path.removeprefix("file://")


def file_reader() -> FileReader | None:
    if os.name != "posix" or not os.path.basename(sys.executable).startswith("python"):
        return None  # no interpreter of our own to start (an embedded Python): the run reads in-process
    try:
        return FileReader()
    except OSError:  # no interpreter to start (an embedded Python): the run reads in-process
        return None


def _reads_of(items: list[Item], sizes: list[int], data: bytes, max_bytes: int, service_cap: int | None) -> list[Read]:
    """A chunk's items with what the helper process read for the local ones (the others are read here)."""
    out, at, pos = [], 0, 0
    view = memoryview(data)
    for item in items:
        if _local_path(item) is None:
            out.append(_read_one(item, max_bytes, service_cap))
            continue
        size, at = sizes[at], at + 1
        if size >= 0:
            out.append(Read(item, bytes(view[pos:pos + size])))
            pos += size
        else:
            out.append(Read(item, None, *refusal(size, max_bytes, service_cap)))
    return out


class _Rows:
    """One batch being gathered: plain lists per column, turned into Arrow once per batch."""

    def __init__(self, walker: Walker) -> None:
        self.walker = walker
        self.meta_names = {f.name for f in walker.metadata.fields} if walker.metadata else set()
        names = walker.schema.names[3:]
        self.label = "label" if walker.labels_from_dirs and "label" not in self.meta_names else None
        self.label_numbers = self.label is not None and pa.types.is_integer(walker.schema.field("label").type)
        self.extra_names = [n for n in names if n not in self.meta_names and n != self.label]
        self.both = [n for n in names if n in self.meta_names and n in walker.source_fields]  # metadata, else source
        self.label_values: dict[Any, Any] = {}
        self._reset()

    def _reset(self) -> None:
        self.ids: list[str] = []
        self.datas: list[bytes] = []
        self.sources: list[str] = []
        self.labels: list[Any] = []
        self.rels: list[str] = []  # each row's path, for its metadata row (matched a batch at a time)
        self.extras: dict[str, list[Any]] = {n: [] for n in {*self.extra_names, *self.both}}
        self.skipped: list[tuple[int, Skip]] = []
        self.positions: list[int] = []
        self.nbytes = 0
        self.files = 0

    @property
    def count(self) -> int:
        return len(self.ids)

    def add(self, read: Read) -> None:
        item, walker = read.item, self.walker
        position, self.files = self.files, self.files + 1
        if read.data is None:
            if walker.metadata is not None:  # a metadata row naming a real file is never "unmatched"
                walker.metadata.lookup(item.rel)
            self.skipped.append((position, Skip(item.source, read.reason or "unreadable", read.message or "")))
            return
        row_id = item.rel if walker.id_mode == "path" else _row_id(item, read.data, walker.id_mode)
        if not row_id.isascii() and not _utf8(row_id):  # a file name that is not UTF-8 (surrogate escapes)
            self.skipped.append((position, Skip(item.source, "invalid_id", f"id {row_id!a} is not valid UTF-8")))
            return
        self.positions.append(position)
        self.ids.append(row_id)
        self.datas.append(read.data)
        source = item.source
        self.sources.append(source if source.isascii() or _utf8(source)
                            else source.encode("utf-8", "backslashreplace").decode())
        self.nbytes += len(read.data)
        if walker.metadata is not None:
            self.rels.append(item.rel)
        if self.label is not None:
            label = item.extra.get(self.label, item.label) if item.extra else item.label
            self.labels.append(self._label(label) if self.label_numbers else label)
        if self.extras:
            for name, values in self.extras.items():
                values.append(item.extra.get(name) if item.extra else None)

    def _label(self, label: Any) -> Any:
        """A folder name as an integer label (digits), else as it is; once per distinct name."""
        try:
            return self.label_values[label]
        except (KeyError, TypeError):
            value = int(label) if label is not None and str(label).isdigit() else label
            with contextlib.suppress(TypeError):
                self.label_values[label] = value
            return value

    def flush(self) -> Batch:
        walker = self.walker
        places = walker.metadata.match(self.ids, self.rels) if walker.metadata is not None else None
        columns: dict[str, pa.Array] = {"id": pa.array(self.ids, pa.string()),
                                        "image": binary_array(self.datas),
                                        "source": pa.array(self.sources, pa.string())}
        for f in walker.schema:
            if f.name in columns:
                continue
            if f.name in self.meta_names:
                assert walker.metadata is not None and places is not None
                values = walker.metadata.take(f.name, places)
                if f.name in self.both:  # no metadata row: the source's own value
                    fallback = _column(f, self.extras[f.name])
                    values = pa.array([v if v is not None else fallback[i].as_py()
                                       for i, v in enumerate(values.to_pylist())], f.type)
                columns[f.name] = values
            elif f.name == self.label:
                columns[f.name] = _column(f, self.labels)
            else:
                columns[f.name] = _column(f, self.extras[f.name])
        rows = pa.RecordBatch.from_arrays([columns[f.name] for f in walker.schema], schema=walker.schema)
        unmatched = np.flatnonzero(np.asarray(places.is_null())).tolist() if places is not None else []
        batch = Batch(rows, self.files, self.skipped, self.positions, unmatched)
        self._reset()
        return batch


def binary_array(values: list[bytes]) -> pa.Array:
    """Bytes as one large-binary array, copied once (``pa.array`` converts them one Python object at a time,
    which costs a small-file ingest several times more)."""
    offsets = array.array("q", itertools.accumulate(map(len, values), initial=0))
    return pa.Array.from_buffers(pa.large_binary(), len(values), [None, pa.py_buffer(offsets),
                                                                 pa.py_buffer(b"".join(values))])


def _column(f: pa.Field, values: list[Any]) -> pa.Array:
    """Values in the column's type (every batch of a run has the same schema)."""
    try:
        return pa.array(values, f.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        raise IngestError(f"column {f.name!r}: a value does not fit {f.type} like the others ({exc}); "
                            "nothing was written") from exc


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _row_id(item: Item, data: bytes, mode: str) -> str:
    if mode == "sha256":
        return hashlib.sha256(data).hexdigest()
    if mode == "name":
        return item.rel.rpartition("/")[2]
    return item.rel
