"""Where images come from: folders, manifests of paths/URIs, Parquet files of image bytes, WebDataset tars.

Every source yields ``Item``s lazily (a Parquet file of bytes is read batch by batch), and says up
front which extra columns its items carry, so the table schema is known before the first write.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from ingest.tables import SideFileError, read_table

SMALL_READ = 64 * 1024  # below the allocator's mmap threshold: no mmap/munmap per file
PATH_COLUMNS = ("path", "uri", "file", "filename", "file_name", "image_path", "filepath")


@dataclass(slots=True)
class Item:
    """One image to ingest: where it is, how it is named, and what it carries."""

    rel: str  # path relative to its source root, with '/'; the default id
    source: str  # what the `source` column records
    path: str | None = None  # a local path or URI to read, or
    data: bytes | None = None  # the bytes themselves (Parquet sources)
    label: str | None = None  # parent folder name, for --labels-from-dirs
    extra: dict[str, Any] = field(default_factory=dict)


class Source:
    """Base of every source: items plus the schema of their extra columns."""

    extra_fields: list[pa.Field]

    def items(self) -> Iterator[Item]:
        raise NotImplementedError

    def count(self) -> int | None:
        """How many items, when known cheaply (for the progress bar)."""
        return None


class FolderSource(Source):
    """Every file under a folder, recursively, in sorted order."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.extra_fields = []
        self._files: list[str] | None = None
        self._dirs: list[tuple[int, str | None]] = []  # (index of its first file, label): per folder, not per file
        # where the listing comes from when another process makes it (``ingest.columnar.Prefetch``): the
        # files, and each folder holding files as (index of its first file, its path under the root)
        self.listed: Callable[[], tuple[list[str], list[tuple[int, str]]] | None] | None = None

    def files(self) -> list[str]:
        """Every file's path under the folder, with '/', sorted folder by folder (listed once)."""
        if self._files is None and self.listed is not None and (given := self.listed()) is not None:
            self._files = given[0]
            self._dirs = [(start, parent_name(f"{rel}/x") if rel != "." else None) for start, rel in given[1]]
        if self._files is None:
            found: list[str] = []
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames.sort()
                rel_dir = os.path.relpath(dirpath, self.root)
                if not filenames:
                    continue
                self._dirs.append((len(found), parent_name(f"{rel_dir}/x") if rel_dir != "." else None))
                if rel_dir == ".":
                    found.extend(sorted(filenames))
                else:
                    prefix = f"{rel_dir}/".replace(os.sep, "/")
                    found.extend([prefix + name for name in sorted(filenames)])
            self._files = found
        return self._files

    def count(self) -> int:
        return len(self.files())

    def dirs(self) -> list[tuple[int, str | None]]:
        """Each folder that directly holds files: the index of its first file in ``files()``, and its label."""
        self.files()
        return self._dirs

    def labels(self) -> set[str]:
        """Names of the folders that directly hold files (``--labels-from-dirs``)."""
        return {label for _, label in self.dirs() if label}

    def items(self) -> Iterator[Item]:
        return self.items_between(0, len(self.files()))

    def items_between(self, first: int, end: int) -> Iterator[Item]:
        """The items of ``files()[first:end]``."""
        base = self.root.rstrip("/") + "/"
        files = self.files()
        ends = [start for start, _ in self.dirs()[1:]] + [len(files)]
        for (start, label), stop in zip(self.dirs(), ends, strict=True):
            for rel in files[max(start, first):min(stop, end)]:
                path = base + rel
                yield Item(rel, path, path, None, label, {})


class ManifestSource(Source):
    """A CSV/TSV/Parquet/JSONL list of paths or URIs; its other columns become metadata."""

    def __init__(self, manifest: str, text_columns: Sequence[str] = ()) -> None:
        self.manifest = Path(manifest)
        self.table = read_table(manifest, text_columns=text_columns)
        names = self.table.column_names
        lower = {n.lower(): n for n in names}
        self.path_column = next((lower[c] for c in PATH_COLUMNS if c in lower), names[0] if names else None)
        if self.path_column is None:
            raise SideFileError(f"manifest {manifest} has no columns")
        self.extra_fields = [f for f in self.table.schema if f.name != self.path_column]

    def count(self) -> int:
        return self.table.num_rows

    def items(self) -> Iterator[Item]:
        base = self.manifest.parent
        paths = self.table.column(self.path_column).to_pylist()
        extras = {f.name: self.table.column(f.name).to_pylist() for f in self.extra_fields}
        for i, raw in enumerate(paths):
            extra = {name: values[i] for name, values in extras.items()}
            if raw is None or str(raw).strip() == "":
                yield Item(rel=f"{self.manifest.name}#{i}", source=str(self.manifest), extra=extra)
                continue
            text = str(raw).strip()
            if "://" in text:
                rel = text.split("://", 1)[1].lstrip("/")
                location = text
            else:
                # PurePosixPath drops './' components; lstrip("./") would also eat the dot of '.hidden/'.
                rel = PurePosixPath(text).as_posix() if not os.path.isabs(text) else text.lstrip("/")
                location = text if os.path.isabs(text) else str(base / text)
            yield Item(rel=rel, source=text, path=location, label=PurePosixPath(rel).parent.name or None,
                       extra=extra)


class ParquetImagesSource(Source):
    """A Parquet file whose column holds image bytes (a Hugging Face image dataset, say)."""

    def __init__(self, path: str, image_column: str) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.file = pq.ParquetFile(path)
        self.image_column = image_column
        schema = self.file.schema_arrow
        self.extra_fields = [f for f in schema if f.name != image_column]

    def count(self) -> int:
        return self.file.metadata.num_rows

    def items(self) -> Iterator[Item]:
        stem = Path(self.path).stem
        row = 0
        for batch in self.file.iter_batches(batch_size=512):
            images = batch.column(self.image_column).to_pylist()
            extras = {f.name: batch.column(f.name).to_pylist() for f in self.extra_fields}
            for i, cell in enumerate(images):
                data, name = _image_cell(cell)
                rel = name or f"{stem}/{row:08d}"
                extra = {k: v[i] for k, v in extras.items()}
                yield Item(rel=rel, source=f"{self.path}#{row}", data=data if data is not None else b"",
                           extra=extra)
                row += 1


class WebDatasetSource(Source):
    """A WebDataset tar shard: members grouped by key (``{key}.{ext}``), one image each, and an
    optional ``{key}.json`` whose fields become metadata (its ``"id"``, if any, is the row's id;
    otherwise the key, percent-decoded, as ``lightbox export`` writes it).

    The shard is read as a stream, once for the items; the metadata columns are inferred from the
    JSON of the first ``SCHEMA_SAMPLES`` samples (a later sample's unknown fields are not kept).
    """

    SCHEMA_SAMPLES = 1000
    META_EXTENSIONS = frozenset({"json", "txt", "cls", "cls2", "index", "id"})

    def __init__(self, path: str) -> None:
        self.path = path
        rows = [meta for _, _, _, meta in itertools.islice(self._samples(), self.SCHEMA_SAMPLES)]
        self.extra_fields = [f for f in inferred_fields(rows) if f.name != "id"]

    def _samples(self) -> Iterator[tuple[str, str, bytes | None, dict[str, Any]]]:
        """(key, image member name, image bytes, metadata) per sample, in tar order."""
        import tarfile

        key: str | None = None
        image: tuple[str, bytes] | None = None
        meta: dict[str, Any] = {}
        with tarfile.open(self.path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, base = member.name.rpartition("/")
                stem, _, ext = base.partition(".")
                this = f"{folder}/{stem}" if folder else stem
                if this != key:
                    if key is not None:
                        yield key, *(image or ("", None)), meta
                    key, image, meta = this, None, {}
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if ext.lower() == "json":
                    parsed = json.loads(data or b"{}")
                    meta = parsed if isinstance(parsed, dict) else {"json": parsed}
                elif ext.lower() not in self.META_EXTENSIONS and image is None:
                    image = (member.name, data)
            if key is not None:
                yield key, *(image or ("", None)), meta

    def items(self) -> Iterator[Item]:
        for key, name, data, meta in self._samples():
            row_id = str(meta.get("id") or unquote(key))
            extra = {k: v for k, v in meta.items() if k != "id"}
            yield Item(rel=row_id, source=f"{self.path}#{name or key}", data=data if data is not None else b"",
                       extra=extra)


def inferred_fields(rows: list[dict[str, Any]]) -> list[pa.Field]:
    """The columns of per-file metadata objects, typed from their values; a field whose values mix
    kinds (a number here, text there) stops the run, naming it."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    fields = []
    for name in names:
        try:
            fields.append(pa.field(name, pa.array([row.get(name) for row in rows]).type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise SideFileError(f"metadata field {name!r} mixes kinds of values ({exc}); nothing was written") from exc
    return fields


def parent_name(rel: str) -> str:
    """``"train/3/x.png"`` -> ``"3"``; string splitting, since this runs once per file."""
    head, _, _ = rel.rpartition("/")
    return head.rpartition("/")[2]


def image_bytes_column(schema: pa.Schema) -> str | None:
    """The column of a Parquet schema that holds image bytes, if any."""
    for f in schema:
        t = f.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return f.name
        if pa.types.is_struct(t) and any(t.field(i).name == "bytes" for i in range(t.num_fields)):
            return f.name
    return None


def _image_cell(cell: Any) -> tuple[bytes | None, str | None]:
    if isinstance(cell, dict):
        return cell.get("bytes"), cell.get("path") or None
    return cell, None


def open_source(spec: str, text_columns: Sequence[str] = ()) -> Source:
    """A folder, a Parquet file of image bytes, or a manifest, decided by what ``spec`` is; a CSV
    manifest's ``text_columns`` are read as text, as written."""
    if os.path.isdir(spec):
        return FolderSource(spec)
    if not os.path.exists(spec):
        raise SideFileError(f"source {spec!r} does not exist")
    if spec.lower().endswith((".tar", ".tar.gz", ".tgz")):
        return WebDatasetSource(spec)
    if spec.lower().endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        column = image_bytes_column(pq.read_schema(spec))
        if column is not None:
            return ParquetImagesSource(spec, column)
    return ManifestSource(spec, text_columns)


def read_bytes(item: Item, max_bytes: int) -> bytes:
    """The item's bytes; ``OSError``/``ValueError`` when they cannot or should not be read."""
    if item.data is not None:
        if len(item.data) > max_bytes:
            raise ValueError(f"{len(item.data)} bytes exceeds the limit of {max_bytes}")
        return item.data
    if item.path is None:
        raise FileNotFoundError("no path given")
    if "://" in item.path and not item.path.startswith("file://"):
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(item.path)
        size = filesystem.get_file_info(inner).size or 0
        if size > max_bytes:
            raise ValueError(f"{size} bytes exceeds the limit of {max_bytes}")
        with filesystem.open_input_stream(inner) as stream:
            return stream.read()
    return _read_local(item.path.removeprefix("file://"), max_bytes)


def _read_local(path: str, max_bytes: int) -> bytes:
    """Read a local file in as few system calls as possible (ingest is syscall-bound on small files).

    One ``read`` of up to 64 KiB returns a small file whole: a short read of a regular file is its
    end, so open, read, close is all it costs. Larger files are checked with ``fstat`` (a regular
    file, within the size limit) and read whole in one more call. ``O_NONBLOCK``: opening a FIFO must
    not block the run.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        head = os.read(fd, SMALL_READ)
        if 0 < len(head) < SMALL_READ:
            return head
        info = os.fstat(fd)  # nothing read (an empty file, or a FIFO), or a large file
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{info.st_size} bytes exceeds the limit of {max_bytes}")
        if info.st_size <= len(head):
            return head
        return os.pread(fd, info.st_size, 0)  # the whole file in one object: no copy to join its head to the rest
    finally:
        os.close(fd)
