"""Export one ref of a table as Parquet (Hugging Face image column), WebDataset tar or an ImageFolder tree.

Everything is a stream of bytes built batch by batch: rows are scanned a few hundred at a time
without the image column, their bytes are then read with the blob API for just those rows, and
each batch leaves as a Parquet row group or as tar/zip members before the next is read. Memory
stays at about one batch of images whatever the table size.

``open_export`` checks everything it can (table, ref, filter, columns, label column) before the
first byte is produced, so bad input is a 4xx and never a half-sent body.

Names inside archives (see README "Export"):

- WebDataset: a sample's key is its id percent-encoded with every character except letters,
  digits, ``-``, ``_`` and ``~`` escaped (so ``/`` becomes ``%2F`` and ``.`` becomes ``%2E``:
  WebDataset splits a key from its extension at the first dot and treats ``/`` as a folder).
  ``urllib.parse.unquote(key)`` gives the id back, and ``{key}.json`` holds it as ``"id"``.
- ImageFolder: ``{label}/{id with "/" and "%" percent-encoded}``, plus the image's extension
  when the id does not already end with one.

Each path component stays within ``MAX_NAME_BYTES`` (255, what ext4, APFS and NTFS allow): a longer
one (a 404-byte id is 1,210 bytes percent-encoded) becomes a prefix of itself, ``-`` and 16 hex
digits of the sha256 of what it names, so names stay unique and every extractor can write them. The
full id is then in a sidecar: the sample's ``{key}.json`` (WebDataset), or ``{label}/{file stem}.json``
beside a shortened ImageFolder file (``{"id", label column}``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import pyarrow as pa

from app.chunks import Chunks
from app.errors import BadRequest
from app.services.query import MAX_POSITION, check_columns, check_filter, filter_errors
from app.store import Ref, RowReader, Snapshot, Store
from app.store.schema import STANDARD_NAMES, is_blob, is_image_table, is_vector

Format = Literal["parquet", "webdataset", "imagefolder"]
Archive = Literal["tar", "zip"]
FORMATS = ("parquet", "webdataset", "imagefolder")
BATCH_ROWS = 256
BATCH_BYTES = 32 * 1024**2  # images held at once while exporting
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
              "image/tiff": "tiff", "image/bmp": "bmp", "image/x-icon": "ico", "image/avif": "avif",
              "image/heic": "heic", "image/jp2": "jp2", "image/x-portable-pixmap": "ppm"}
IMAGE_SUFFIXES = frozenset({"jpg", "jpeg", "png", "gif", "webp", "tif", "tiff", "bmp", "ico", "avif", "heic",
                            "jp2", "ppm", "pgm", "pbm", "pnm"})
MAX_NAME_BYTES = 255  # one path component
HASH_CHARS = 16
HF_IMAGE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])


class UnsupportedExport(BadRequest):
    code = "unsupported_export"


@dataclass
class ExportSpec:
    format: Format
    filter: str | None = None
    columns: list[str] | None = None  # besides id (and image); default: the table's own metadata columns
    label_column: str = "label"  # imagefolder: the folder of each image
    archive: Archive = "tar"  # imagefolder over HTTP: one tar or zip of the tree
    offset: int = 0
    limit: int | None = None
    batch_rows: int = BATCH_ROWS
    batch_bytes: int = BATCH_BYTES


@dataclass
class Export:
    """A checked export of one snapshot, ready to stream."""

    snap: Snapshot
    spec: ExportSpec
    columns: list[str]
    predicate: str | None
    media_type: str
    filename: str
    schema: pa.Schema = field(repr=False)

    def chunks(self) -> Iterator[bytes]:
        """The export's bytes, a batch of rows at a time."""
        writer = {"parquet": _parquet, "webdataset": _webdataset, "imagefolder": _imagefolder}[self.spec.format]
        yield from writer(self)

    def batches(self) -> Iterator[tuple[pa.RecordBatch, list[bytes | None]]]:
        """Scalar columns of a few hundred rows, then those rows' image bytes (blob reads by row id),
        cut so that no batch holds more than ``batch_bytes`` of images (one large image alone at most)."""
        has_sizes = "size_bytes" in self.snap.schema.names  # not every image table records sizes
        extra = [] if "size_bytes" in self.columns or not has_sizes else ["size_bytes"]
        with filter_errors(self.predicate):
            scan = self.snap.scan([*self.columns, *extra], filter=self.predicate, with_row_id=True,
                                  batch_size=self.spec.batch_rows, offset=self.spec.offset, limit=self.spec.limit)
            for batch in scan:
                for part in _by_bytes(batch, self.spec.batch_bytes):
                    row_ids = part.column("_rowid").to_pylist()
                    yield part.drop_columns(["_rowid", *extra]), RowReader.blobs(self.snap, row_ids)


def _by_bytes(batch: pa.RecordBatch, limit: int) -> Iterator[pa.RecordBatch]:
    """Slices of ``batch`` whose images (``size_bytes``) add up to at most ``limit``."""
    if "size_bytes" not in batch.schema.names:  # no sizes recorded: the row count alone cuts batches
        yield batch
        return
    sizes = batch.column("size_bytes").to_pylist()
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + (size or 0) > limit:
            yield batch.slice(start, i - start)
            start, total = i, 0
        total += size or 0
    if start < len(sizes):
        yield batch.slice(start)


def open_export(store: Store, name: str, ref: Ref, spec: ExportSpec) -> Export:
    """Resolve and check an export; raises 4xx errors before anything is streamed."""
    if spec.format not in FORMATS:
        raise UnsupportedExport(f"format must be one of {', '.join(FORMATS)}, got {spec.format!r}")
    if spec.archive not in ("tar", "zip"):
        raise UnsupportedExport(f"archive must be 'tar' or 'zip', got {spec.archive!r}")
    if not 0 <= spec.offset <= MAX_POSITION or (spec.limit is not None and not 0 <= spec.limit <= MAX_POSITION):
        raise BadRequest(f"offset and limit must be between 0 and {MAX_POSITION}")
    snap = store.snapshot(name, ref)
    schema = snap.schema
    if not is_image_table(schema):
        raise UnsupportedExport(f"table {name!r} is not an image table (no image/mime/sha256 columns)")
    if spec.columns:
        wanted = check_columns(schema, spec.columns)
    else:
        wanted = [f.name for f in schema if f.name not in STANDARD_NAMES and not is_blob(f) and not is_vector(f)]
    blobs = [c for c in wanted if is_blob(schema.field(c))]
    if blobs:
        raise UnsupportedExport(f"blob column(s) {blobs} cannot be exported as metadata")
    if spec.format == "imagefolder":
        if spec.label_column not in schema.names:
            raise UnsupportedExport(f"table {name!r} has no column {spec.label_column!r} to name the folders; "
                                    f"give label_column (columns: {schema.names})")
        wanted.append(spec.label_column)
    columns = list(dict.fromkeys(["id", "mime", *[c for c in wanted if c != "id"]]))
    predicate = check_filter(snap, spec.filter)
    kind, media = _media(spec)
    filename = f"{snap.name}-v{snap.version}.{kind}"
    out_schema = _parquet_schema(schema, columns, wanted) if spec.format == "parquet" else schema
    return Export(snap, spec, columns, predicate, media, filename, out_schema)


def _media(spec: ExportSpec) -> tuple[str, str]:
    if spec.format == "parquet":
        return "parquet", "application/vnd.apache.parquet"
    if spec.format == "imagefolder" and spec.archive == "zip":
        return "zip", "application/zip"
    return "tar", "application/x-tar"


# -- Parquet with a Hugging Face image column ------------------------------------------------
def _parquet_schema(schema: pa.Schema, columns: list[str], wanted: list[str]) -> pa.Schema:
    """id, image {bytes, path}, then the asked columns; the ``huggingface`` key makes ``datasets``
    decode ``image`` as an ``Image`` feature."""
    fields = [schema.field("id").remove_metadata(), pa.field("image", HF_IMAGE)]
    for name in dict.fromkeys(wanted):
        if name in ("id", "image"):
            continue
        f = schema.field(name)
        fields.append(f.with_metadata({k: v for k, v in (f.metadata or {}).items() if not k.startswith(b"lance")}))
    features = {"image": {"_type": "Image"}}
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})


def _parquet(export: Export) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    sink = Chunks()
    names = export.schema.names
    with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), export.schema) as writer:
        for batch, blobs in export.batches():
            ids = batch.column("id")
            image = pa.StructArray.from_arrays([pa.array(blobs, pa.binary()), ids.cast(pa.string())],
                                               fields=list(HF_IMAGE))
            arrays = [image if n == "image" else batch.column(n) for n in names]
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=export.schema))
            yield sink.drain()
    yield sink.drain()


# -- WebDataset ------------------------------------------------------------------------------
def sample_key(row_id: str) -> str:
    """A WebDataset key for an id: no ``.`` (WebDataset's extension separator) and no ``/``."""
    return quote(row_id, safe="").replace(".", "%2E")


def extension(mime: str | None, row_id: str = "") -> str:
    """The file extension an image of this type is written with (the id's own, if it has one)."""
    own = row_id.rpartition(".")[2].lower() if "." in row_id.rpartition("/")[2] else ""
    if own in IMAGE_SUFFIXES:
        return own
    return EXTENSIONS.get(mime or "", "bin")


def fit_name(name: str, full: str, reserve: int = 0) -> tuple[str, bool]:
    """``name`` (percent-encoded, so ASCII) if it and ``reserve`` more bytes fit one path component;
    else its prefix, ``-`` and a hash of ``full`` (what it names). Also says whether it was shortened."""
    if len(name.encode()) + reserve <= MAX_NAME_BYTES:
        return name, False
    room = MAX_NAME_BYTES - reserve - HASH_CHARS - 1
    prefix = name[:room]
    cut = prefix.rfind("%", len(prefix) - 2)  # never split a %XX escape
    if cut >= 0:
        prefix = prefix[:cut]
    return f"{prefix}-{hashlib.sha256(full.encode()).hexdigest()[:HASH_CHARS]}", True


def sample_name(row_id: str, mime: str | None) -> tuple[str, str]:
    """A WebDataset sample's key and image extension, the key short enough for ``{key}.json`` too."""
    ext = extension(mime)
    key, _ = fit_name(sample_key(row_id), row_id, reserve=1 + max(len(ext), len("json")))
    return key, ext


def _webdataset(export: Export) -> Iterator[bytes]:
    sink = Chunks()
    meta_columns = [c for c in export.columns if c != "id"]
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        now = time.time()
        for batch, blobs in export.batches():
            rows = batch.to_pylist()
            for row, data in zip(rows, blobs, strict=True):
                if data is None:
                    continue
                key, ext = sample_name(row["id"], row["mime"])
                meta = {"id": row["id"], **{c: row[c] for c in meta_columns}}
                _add(tar, f"{key}.{ext}", data, now)
                _add(tar, f"{key}.json", json.dumps(meta, default=_json_default).encode(), now)
            yield sink.drain()
    yield sink.drain()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    tar.addfile(info, io.BytesIO(data))


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


# -- ImageFolder -----------------------------------------------------------------------------
def folder_entry(label: Any, row_id: str, mime: str | None) -> tuple[str, str | None]:
    """``label/file`` for one image (the id with ``%`` and ``/`` escaped, plus an extension if it has
    none), and the path of the sidecar naming the id when a component had to be shortened."""
    folder = "unlabeled" if label is None or str(label) == "" else str(label)
    folder = quote(folder, safe=" ").replace(".", "%2E") if folder in (".", "..") else quote(folder, safe=" ")
    folder, short_folder = fit_name(folder, str(label))
    name = quote(row_id, safe=" ")
    ext = extension(mime, row_id)
    if not name.lower().endswith(f".{ext}"):
        name = f"{name}.{ext}"
    stem, short_name = fit_name(name.removesuffix(f".{ext}"), row_id, reserve=1 + max(len(ext), len("json")))
    if short_name:
        name = f"{stem}.{ext}"
    return f"{folder}/{name}", f"{folder}/{stem}.json" if short_folder or short_name else None


def _folder_members(export: Export, row: dict[str, Any], data: bytes) -> Iterator[tuple[str, bytes]]:
    """The image's member, and its sidecar (the full id and label) when its name was shortened."""
    label = export.spec.label_column
    path, sidecar = folder_entry(row[label], row["id"], row["mime"])
    yield path, data
    if sidecar is not None:
        yield sidecar, json.dumps({"id": row["id"], label: row[label]}, default=_json_default).encode()


def _imagefolder(export: Export) -> Iterator[bytes]:
    sink = Chunks()
    label = export.spec.label_column
    now = time.time()
    if export.spec.archive == "zip":
        with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
            stamp = time.localtime(now)[:6]
            for batch, blobs in export.batches():
                for row, data in zip(batch.select(["id", "mime", label]).to_pylist(), blobs, strict=True):
                    if data is not None:
                        for name, member in _folder_members(export, row, data):
                            archive.writestr(zipfile.ZipInfo(name, date_time=stamp), member)
                yield sink.drain()
        yield sink.drain()
        return
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for batch, blobs in export.batches():
            for row, data in zip(batch.select(["id", "mime", label]).to_pylist(), blobs, strict=True):
                if data is not None:
                    for name, member in _folder_members(export, row, data):
                        _add(tar, name, member, now)
            yield sink.drain()
    yield sink.drain()
