"""Base paths: where a version's shared files live, kept pointing into the root that is open.

A Lance manifest lists the locations of files it shares with another dataset in ``base_paths``
(``BasePath{id, name, is_dataset_root, path}``): a branch's parent (``<table>.lance`` or
``<table>.lance/tree/<parent>``) and a shallow clone's source. The path is recorded as the writer
named it, and pylance 14.0.2 has no way to read a dataset with other locations for its bases
(``base_store_params`` carries storage options per base, not a path; a relative path is resolved
against the reading process's current directory, not the table). So a root that is moved, copied,
mounted elsewhere or copied between local disk and an object store reads its branches and clones
from where they were made, or fails with "Not found".

In a Lightbox root a table shares files only with tables of the same root, so a recorded base
``<anywhere>/<name>.lance[/tree/<branch>]`` means ``<this root>/<name>.lance[/tree/<branch>]``.
``relocate`` rewrites the ``path`` of each such base in every manifest of the table whose recorded
path is not that place, in place: the manifest's other bytes (schema, fragments, index section,
version, commit time) are kept as they were, so the version keeps its number and identity and every
tag, note and cache that names it still does. This is the porting step Lance's format describes
("copy the base paths ... and update the manifest's ``base_paths``"); a new commit would not do, as
tags and time travel read the old versions' manifests. Each manifest is replaced whole (a rename on
local disk, one PUT on an object store), so a reader sees the old or the new one, never a part; the
rewrite is idempotent, so two processes doing it at once write the same bytes.

The manifest file is ``[index and transaction sections][u32 length][Manifest protobuf][u64 position,
u16 major, u16 minor, "LANC"]``; only the ``base_paths`` entries (field 18) of the protobuf are
re-encoded, every other field is copied byte for byte.
"""

from __future__ import annotations

import os
import re
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.store.files import filesystem

if TYPE_CHECKING:
    import lance

    from app.store.catalog import Store

MAGIC = b"LANC"
FOOTER = 16  # u64 manifest position, u16 major, u16 minor, magic
BASE_PATHS = 18  # Manifest.base_paths
BASE_PATH_PATH = 4  # BasePath.path
LENGTH_DELIMITED = 2
# "<prefix>/<table>.lance" or ".../<table>.lance/tree/<branch>"; the shortest prefix that fits, so a
# branch named like a table ("tree/x.lance") is read as a branch
TABLE_PART = re.compile(r"^(?:.*?/)?(?P<table>[^/]+\.lance)(?P<branch>/tree/[^/]+)?/?$")


class ManifestUnreadable(ValueError):
    """A manifest file that is not a whole Lance manifest (truncated, overwritten, another layout)."""


@dataclass(frozen=True)
class Base:
    id: int
    path: str
    is_dataset_root: bool


@dataclass(frozen=True)
class ManifestFile:
    branch: str | None
    version: int
    path: str  # as the table's filesystem names it


@dataclass(frozen=True)
class Moved:
    branch: str | None
    version: int
    old: str
    new: str


# -- the manifest's bytes ----------------------------------------------------------------------------
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ManifestUnreadable("the manifest ends inside a field")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(buf: bytes) -> Iterator[tuple[int, bytes | int | None, bytes]]:
    """``(number, value, the field's raw bytes)``: an int for a varint, bytes for a length-delimited
    field, None for fixed-width ones (which base paths do not use)."""
    i = 0
    while i < len(buf):
        start = i
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: bytes | int | None = None
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == LENGTH_DELIMITED:
            size, i = _varint(buf, i)
            value = buf[i:i + size]
            i += size
        else:
            raise ManifestUnreadable(f"the manifest has a field of wire type {wire}")
        if i > len(buf):
            raise ManifestUnreadable("the manifest ends inside a field")
        yield number, value, buf[start:i]


def _delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _proto(data: bytes) -> tuple[int, bytes]:
    """``(position, protobuf)`` of the Manifest message in a manifest file."""
    if len(data) < FOOTER + 4 or data[-4:] != MAGIC:
        raise ManifestUnreadable(f"not a Lance manifest ({len(data)} bytes, no footer)")
    position = struct.unpack("<Q", data[-FOOTER:-FOOTER + 8])[0]
    if position + 4 > len(data) - FOOTER:
        raise ManifestUnreadable("the manifest's footer points past its end")
    size = struct.unpack("<I", data[position:position + 4])[0]
    if position + 4 + size != len(data) - FOOTER:
        raise ManifestUnreadable("the manifest message is not where its footer says")
    return position, data[position + 4:position + 4 + size]


def _base(payload: bytes) -> Base:
    values = {number: value for number, value, _ in _fields(payload)}
    path = values.get(BASE_PATH_PATH)
    return Base(int(values.get(1) or 0), path.decode() if isinstance(path, bytes) else "", bool(values.get(3)))


def read_bases(data: bytes) -> list[Base]:
    """The base paths a manifest file records."""
    return [_base(value) for number, value, _ in _fields(_proto(data)[1])
            if number == BASE_PATHS and isinstance(value, bytes)]


def with_paths(data: bytes, paths: dict[int, str]) -> bytes:
    """The manifest file with the bases of these ids at these paths, every other byte kept."""
    position, proto = _proto(data)
    parts = []
    for number, value, raw in _fields(proto):
        if number == BASE_PATHS and isinstance(value, bytes) and _base(value).id in paths:
            kept = b"".join(r for n, _, r in _fields(value) if n != BASE_PATH_PATH)
            raw = _delimited(BASE_PATHS, kept + _delimited(BASE_PATH_PATH, paths[_base(value).id].encode()))
        parts.append(raw)
    body = b"".join(parts)
    return data[:position] + struct.pack("<I", len(body)) + body + data[-FOOTER:]


# -- where a base should point --------------------------------------------------------------------
def expected_path(root: str, recorded: str) -> str | None:
    """Where a recorded base is in this root: the same table (and branch) under ``root``."""
    found = TABLE_PART.match(recorded.removeprefix("file://"))
    if found is None:
        return None
    return f"{root}/{found['table']}{found['branch'] or ''}"


def is_placed(recorded: str, expected: str) -> bool:
    """Whether Lance, reading ``recorded`` from any directory, reads ``expected``."""
    if recorded == expected:
        return True
    recorded = recorded.removeprefix("file://")
    if "://" in recorded or "://" in expected:
        return recorded.rstrip("/") == expected
    if not os.path.isabs(recorded):  # resolved against the reader's current directory
        return False
    try:
        return os.path.samefile(recorded, expected)
    except OSError:
        return False


def misplaced(store: Store, name: str, main: lance.LanceDataset) -> list[tuple[str | None, str, str]]:
    """``(branch, recorded, expected)`` for each base of the newest version of ``name``'s main and
    branches that does not point into this root (cheap: manifests Lance already read)."""
    heads: list[tuple[str | None, Any]] = [(None, main)]
    for branch in main.branches.list():
        try:
            heads.append((branch, main.checkout_version((branch, None))))
        except (OSError, ValueError):  # a damaged branch (doctor reports it) does not keep the others here
            continue
    out = []
    for branch, ds in heads:
        for base in ds.base_paths().values():
            expected = expected_path(store.uri, base.path)
            if expected is not None and not is_placed(base.path, expected):
                out.append((branch, base.path, expected))
    return out


# -- the table's manifests ------------------------------------------------------------------------
def _version_of(file_name: str) -> int | None:
    stem = file_name.removesuffix(".manifest")
    if not stem.isdigit():
        return None
    number = int(stem)
    return 2**64 - 1 - number if number >= 2**63 else number  # Lance's V2 names count down from u64::MAX


def manifest_files(store: Store, name: str) -> list[ManifestFile]:
    """Every manifest of a table and of its branches, oldest first within each."""
    from pyarrow import fs as pafs

    filesystem_, table = filesystem(store.table_uri(name), store.storage_options)
    lineages: list[tuple[str | None, str]] = [(None, table)]
    tree = filesystem_.get_file_info(pafs.FileSelector(f"{table}/tree", allow_not_found=True))
    lineages += [(info.base_name, info.path) for info in tree if info.type == pafs.FileType.Directory]
    out = []
    for branch, folder in lineages:
        listed = filesystem_.get_file_info(pafs.FileSelector(f"{folder}/_versions", allow_not_found=True))
        found = [(v, info.path) for info in listed if info.base_name.endswith(".manifest")
                 and (v := _version_of(info.base_name)) is not None]
        out += [ManifestFile(branch, v, path) for v, path in sorted(found)]
    return out


def read_manifest(store: Store, name: str, file: ManifestFile) -> bytes:
    filesystem_, _ = filesystem(store.table_uri(name), store.storage_options)
    with filesystem_.open_input_stream(file.path) as handle:
        return handle.read()


def exists_here(store: Store, location: str) -> bool:
    """Whether a table (or branch) location in the root holds versions."""
    from pyarrow import fs as pafs

    filesystem_, path = filesystem(location, store.storage_options)
    return filesystem_.get_file_info(f"{path}/_versions").type == pafs.FileType.Directory


def _replace(store: Store, name: str, file: ManifestFile, data: bytes) -> None:
    """Replace one manifest file whole: a rename beside it on local disk (its time kept), a PUT elsewhere."""
    filesystem_, _ = filesystem(store.table_uri(name), store.storage_options)
    if store.is_local:
        folder, base = os.path.split(file.path)
        temporary = os.path.join(folder, f".{base}.{uuid.uuid4().hex}.relocating")  # not a *.manifest
        stat = os.stat(file.path)
        with open(temporary, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, stat.st_mode & 0o7777)
        os.utime(temporary, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        os.replace(temporary, file.path)
        return
    with filesystem_.open_output_stream(file.path) as out:
        out.write(data)


def relocate(store: Store, name: str) -> list[Moved]:
    """Point every base of every manifest of ``name`` that names a table of this root at that table
    here. Bases whose table is not in this root are left as they are (``doctor`` reports them).

    The newest manifest of each lineage is rewritten last, so the cheap check (``misplaced``, which
    reads only those) still sees the table as misplaced until every older manifest is done.
    """
    files = manifest_files(store, name)
    newest = {f.branch: f for f in files}
    present: dict[str, bool] = {}
    moved: list[Moved] = []
    for file in sorted(files, key=lambda f: newest[f.branch] is f):
        try:
            data = read_manifest(store, name, file)
            bases = read_bases(data)
        except (OSError, ManifestUnreadable):
            continue  # doctor reports it; nothing here can make it readable
        paths = {}
        for base in bases:
            expected = expected_path(store.uri, base.path)
            if expected is None or is_placed(base.path, expected):
                continue
            if expected not in present:
                present[expected] = exists_here(store, expected)
            if present[expected]:
                paths[base.id] = expected
                moved.append(Moved(file.branch, file.version, base.path, expected))
        if paths:
            _replace(store, name, file, with_paths(data, paths))
    return moved
