"""Folders of small local files as batches built column by column, with no Python object per file.

The common small-file ingest (100,000 PNGs in label folders, a CSV of metadata) is bound by the
interpreter's time per file: an ``Item``, a ``Read``, a row appended to half a dozen lists. Here a
folder's sorted listing is cut into chunks; the helper process (``ingest.reader_process``) reads each
chunk's files relative to the folder and answers with their sizes and bytes back to back; the batch is
then built from those buffers as they are: ``image`` over the helper's bytes (offsets from the sizes,
no copy), ``id`` from the listing in one conversion, ``source`` by one string join, the folder labels
by repeating each folder's, the metadata by a vectorised join (``ingest.metadata``). Files that cannot
be read are skipped with their reason, as on the general path.

``plan`` says whether a run qualifies (folders only, ids from paths, small local files, a helper that
starts); anything else, or a chunk whose names are not valid UTF-8, takes the general path of
``ingest.walk``. Standard library, numpy and pyarrow only: the SDK runs it.
"""

from __future__ import annotations

import array
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ingest.pool import THREADS_FROM_BYTES
from ingest.reader_process import FileReader, refusal
from ingest.report import Skip
from ingest.sources import FolderSource, Item, Source

if TYPE_CHECKING:
    from ingest.walk import Batch, Walker

__all__ = ["Plan", "Prefetch", "plan", "prefetch"]

General = Callable[[list[Item], "array.array[int]", bytes], "Iterator[Batch]"]
SAMPLE = 128  # files whose sizes tell whether a folder's files are small
AHEAD = 4  # chunks the helper reads ahead of the run
FIRST = 1024  # files in the first chunk


@dataclass
class Plan:
    """How a run's folders are read as columns: ``chunk`` files a chunk, by ``reader``."""

    walker: Walker
    folders: list[FolderSource]
    reader: FileReader
    chunk: int
    largest: int  # a file above this many bytes is skipped as too large

    def batches(self, general: General) -> Iterator[Batch]:
        """Every folder's rows; ``general(items, sizes, data)`` turns a chunk this path cannot take into batches."""
        try:
            for folder in self.folders:
                yield from self._folder(folder, general)
        finally:
            self.reader.close()

    def _folder(self, folder: FolderSource, general: General) -> Iterator[Batch]:
        files = folder.files()
        base = folder.root.rstrip("/") + "/"
        labels = _labels(self.walker, folder)
        try:  # every id, and its metadata row, at once
            every: pa.Array | None = pa.array(files, pa.string())
        except (UnicodeEncodeError, pa.ArrowInvalid):  # a name that is not UTF-8: chunk by chunk
            every = None
        metadata = self.walker.metadata
        places = metadata.match_column(every) if metadata is not None and every is not None else None
        spans = _spans(len(files), self.chunk)
        answers = self.reader.chunks(((span, files[span[0]:span[1]]) for span in spans), self.largest,
                                     ahead=AHEAD, root=folder.root)
        for (a, b), sizes, data in answers:
            rels = files[a:b]
            try:
                ids = every.slice(a, b - a) if every is not None else pa.array(rels, pa.string())
            except (UnicodeEncodeError, pa.ArrowInvalid):  # a name that is not UTF-8: the general path says which
                yield from general(list(folder.items_between(a, b)), sizes, data)
                continue
            yield from self._batches(base, rels, ids, labels.slice(a, b - a) if labels is not None else None,
                                     places.slice(a, b - a) if places is not None else None,
                                     np.frombuffer(sizes, np.int64), data)

    def _batches(self, base: str, rels: list[str], ids: pa.Array, labels: pa.Array | None, places: pa.Array | None,
                 sizes: np.ndarray, data: bytes) -> Iterator[Batch]:
        """A chunk's rows, cut where a batch reaches ``batch_bytes`` or would pass the service's cap."""
        walker = self.walker
        sources = pc.binary_join_element_wise(pa.scalar(base), ids, "")
        bad = np.flatnonzero(sizes < 0)
        kept = sizes.clip(min=0)
        offsets = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(kept, out=offsets[1:])
        images = pa.Array.from_buffers(pa.large_binary(), len(sizes),
                                       [None, pa.py_buffer(offsets), pa.py_buffer(data)])
        for a, b in _cuts(offsets, walker.batch_bytes, walker.batch_cap):
            skip = bad[(bad >= a) & (bad < b)] - a
            yield self._batch(rels[a:b], ids.slice(a, b - a), images.slice(a, b - a), sources.slice(a, b - a),
                              labels.slice(a, b - a) if labels is not None else None,
                              places.slice(a, b - a) if places is not None else None, sizes[a:b], skip)

    def _batch(self, rels: list[str], ids: pa.Array, images: pa.Array, sources: pa.Array, labels: pa.Array | None,
               places: pa.Array | None, sizes: np.ndarray, bad: np.ndarray) -> Batch:
        from ingest.walk import Batch

        walker, files = self.walker, len(ids)
        skipped: list[tuple[int, Skip]] = []
        positions: range | list[int] = range(files)
        if len(bad):
            skipped = [(int(i), self._skip(sources[i].as_py(), int(sizes[i]))) for i in bad]
            if walker.metadata is not None and places is None:  # a row naming a real file is never "unmatched"
                for i in bad.tolist():
                    walker.metadata.lookup(rels[i])
            keep = np.setdiff1d(np.arange(files), bad, assume_unique=True)
            positions = keep.tolist()
            rels = [rels[i] for i in positions]
            at = pa.array(keep)
            ids, images, sources = ids.take(at), images.take(at), sources.take(at)
            labels = labels.take(at) if labels is not None else None
            places = places.take(at) if places is not None else None
        columns: dict[str, pa.Array] = {"id": ids, "image": images, "source": sources}
        if labels is not None:
            columns["label"] = labels
        unmatched: list[int] = []
        if walker.metadata is not None:
            if places is None:
                places = walker.metadata.match(rels, rels)
            unmatched = np.flatnonzero(np.asarray(places.is_null())).tolist() if places.null_count else []
            for f in walker.metadata.fields:
                if f.name in walker.schema.names and f.name not in columns:
                    columns[f.name] = walker.metadata.take(f.name, places)
        rows = pa.RecordBatch.from_arrays([columns[f.name] for f in walker.schema], schema=walker.schema)
        return Batch(rows, files, skipped, positions, unmatched)

    def _skip(self, source: str, size: int) -> Skip:
        return Skip(source, *refusal(size, self.largest, self.walker.batch_cap))


class Prefetch:
    """A run's helper process, started before its session begins so that its folders are listed there (on the
    other core) while this process begins the session and reads the side file. The listings are taken by the
    run's ``FolderSource``s (``attach``); the reader then reads their files (``reader``), or is closed."""

    def __init__(self, reader: FileReader, roots: list[str]) -> None:
        self._reader: FileReader | None = reader
        self.roots = roots
        self.answers: list[tuple[list[str], list[tuple[int, str]]] | None] = []
        for root in roots:
            reader.ask_listing(root)

    def attach(self, sources: list[Source]) -> None:
        """Give each of ``sources`` that is one of the prefetched folders its listing (taken when first needed)."""
        for source in sources:
            if type(source) is FolderSource and source.root in self.roots:
                source.listed = lambda root=source.root: self._listing(root)  # type: ignore[misc]

    def _listing(self, root: str) -> tuple[list[str], list[tuple[int, str]]] | None:
        """``root``'s listing (None if the helper failed: the folder is then listed here)."""
        self._take_all()
        return self.answers[self.roots.index(root)]

    def _take_all(self) -> None:
        """Read every listing asked for (in order: they come before any chunk the reader is asked to read)."""
        while self._reader is not None and len(self.answers) < len(self.roots):
            try:
                self.answers.append(self._reader.listing())
            except OSError:
                self.close()
        self.answers.extend([None] * (len(self.roots) - len(self.answers)))

    def reader(self) -> FileReader | None:
        """The helper, to read the run's files (once its listings are taken); None once closed."""
        self._take_all()
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close(kill=True)


def prefetch(sources: Sequence[str | PathLike[str] | Source], workers: int,
             start: Callable[[], FileReader | None]) -> Prefetch | None:
    """A prefetch for a run whose sources are all local folders (None otherwise, or without a helper)."""
    roots = [os.fspath(s) for s in sources if not isinstance(s, Source)]
    if workers < 2 or not roots or len(roots) != len(sources) or not all(
            "://" not in root and os.path.isdir(root) for root in roots):
        return None
    reader = start()
    return Prefetch(reader, roots) if reader is not None else None


def plan(walker: Walker, largest: int, start: Callable[[], FileReader | None]) -> Plan | None:
    """The columnar reading of ``walker``'s run, or None when it does not qualify: every source a local folder,
    ids from paths, folder labels or a side file as the only extra columns, at least ``SAMPLE`` files whose
    first ``SAMPLE`` are small, and a helper process (``start``) to read them."""
    folders = walker.sources
    if (walker.id_mode != "path" or walker.workers < 2 or not folders
            or not all(type(s) is FolderSource and "://" not in s.root for s in folders)):
        return None
    names = set(walker.schema.names[3:])
    names.discard("label" if walker.labels_from_dirs else "")
    if names - {f.name for f in (walker.metadata.fields if walker.metadata else [])}:
        return None
    sample = [f for s in folders for f in s.files()[:SAMPLE]][:SAMPLE]
    if len(sample) < SAMPLE or sum(s.count() for s in folders) < 2 * SAMPLE:
        return None
    sizes = _sizes(folders, SAMPLE)
    if sizes is None or sum(sizes) >= THREADS_FROM_BYTES * len(sizes):
        return None
    reader = start()
    if reader is None:
        return None
    average = max(1, sum(sizes) // len(sizes))
    chunk = max(1, min(walker.batch_rows, walker.batch_bytes // average))
    return Plan(walker, list(folders), reader, chunk, largest)  # type: ignore[arg-type]


def _sizes(folders: list[FolderSource], count: int) -> list[int] | None:
    """The sizes of the first ``count`` files (None if one cannot be looked at: the general path reports it)."""
    out: list[int] = []
    for folder in folders:
        for rel in folder.files()[:count - len(out)]:
            try:
                out.append(os.stat(os.path.join(folder.root, rel)).st_size)
            except OSError:
                return None
    return out


def _labels(walker: Walker, folder: FolderSource) -> pa.Array | None:
    """Every file's folder label, in the column's type (None when the run takes no folder labels)."""
    if not walker.labels_from_dirs or (walker.metadata and "label" in {f.name for f in walker.metadata.fields}):
        return None
    kind = walker.schema.field("label").type
    starts = [start for start, _ in folder.dirs()]
    counts = np.diff(np.array([*starts, len(folder.files())], np.int64))
    values = [label if label is None or not pa.types.is_integer(kind) else int(label) for _, label in folder.dirs()]
    return pa.array(values, kind).take(pa.array(np.repeat(np.arange(len(values)), counts)))


def _spans(count: int, chunk: int) -> list[tuple[int, int]]:
    """``count`` files as chunks of ``chunk``, the first one smaller (``FIRST``), so that the service has rows to
    check while the helper reads the next chunk, instead of waiting for a whole one."""
    ends = [min(FIRST, chunk, count)]
    while ends[-1] < count:
        ends.append(min(ends[-1] + chunk, count))
    return list(zip([0, *ends[:-1]], ends, strict=True)) if count else []


def _cuts(offsets: np.ndarray, batch_bytes: int, cap: int | None) -> list[tuple[int, int]]:
    """Row spans of a chunk (``offsets``: its rows' byte offsets) as the general path cuts batches: after the row
    that brings a batch to ``batch_bytes``, and before a row that would take it over ``cap``."""
    n, out, a = len(offsets) - 1, [], 0
    while a < n:
        b = int(np.searchsorted(offsets, offsets[a] + batch_bytes, "left"))
        if cap:
            b = min(b, int(np.searchsorted(offsets, offsets[a] + cap, "right")) - 1)
        b = min(max(b, a + 1), n)
        out.append((a, b))
        a = b
    return out
