"""What a table's versions read, in Lance's terms, for ``doctor``: which files, where, and the sampled
rows' bytes. The walk itself (what counts as a problem, what to repair) is ``app.services.doctor``.

Every version is opened from one readable version of main (``entry``), since a branch's versions are
reached through the table (Lance does not open ``tree/<branch>`` as a dataset of its own), and a
damaged newest manifest must not hide the versions before it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import lance

from app.store.catalog import Store
from app.store.commits import write_turn
from app.store.files import filesystem
from app.store.handles import own, share
from app.store.notes import NOTES_DIR
from app.store.snapshot import Snapshot, stamp_of


@dataclass(frozen=True)
class FileUse:
    """One file a version reads: a data file, a deletion file or an index's folder."""

    kind: str
    path: str  # as the root's filesystem names it
    size: int | None = None  # what the manifest says, when it says


class Root:
    """The data root's filesystem, and the conversion of locations under it to its paths."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.fs, self.path = filesystem(store.uri, store.storage_options)

    def path_of(self, location: str) -> str | None:
        """The filesystem path of a location under this root; None for one elsewhere."""
        location = location.removeprefix("file://").rstrip("/")
        if location == self.store.uri or location.startswith(self.store.uri + "/"):
            return self.path + location[len(self.store.uri):]
        return None

    def exists(self) -> bool:
        from pyarrow import fs as pafs

        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def table_dirs(self) -> list[str]:
        """Names of the ``*.lance`` folders in the root, tables or not."""
        from pyarrow import fs as pafs

        listed = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        return sorted(i.base_name.removesuffix(".lance") for i in listed
                      if i.type == pafs.FileType.Directory and i.base_name.endswith(".lance"))

    def missing(self, uses: list[FileUse]) -> dict[FileUse, str]:
        """The files of ``uses`` that are gone or shorter or longer than their manifest says: why."""
        from pyarrow import fs as pafs

        out: dict[FileUse, str] = {}
        files = [u for u in uses if u.kind != "index"]
        for use, info in zip(files, self.fs.get_file_info([u.path for u in files]), strict=True):
            if info.type == pafs.FileType.NotFound:
                out[use] = "is missing"
            elif use.size and info.size is not None and info.size != use.size:
                out[use] = f"has {info.size} bytes, its manifest says {use.size}"
        for use in (u for u in uses if u.kind == "index"):
            if not self.fs.get_file_info(pafs.FileSelector(use.path, allow_not_found=True)):
                out[use] = "is missing"
        return out

    def notes(self, name: str) -> Iterator[tuple[str, bool]]:
        """Each version note of a table, and whether it is a readable note."""
        from pyarrow import fs as pafs

        folder = f"{self.path}/{name}.lance/{NOTES_DIR}"
        for info in self.fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True)):
            if info.type == pafs.FileType.File and info.base_name.endswith(".json"):
                yield info.path, _readable_note(self.fs, info.path)

    def delete(self, path: str) -> None:
        self.fs.delete_file(path)

    def relative(self, path: str) -> str:
        return path[len(self.path):].lstrip("/")


def _readable_note(fs: Any, path: str) -> bool:
    try:
        with fs.open_input_stream(path) as handle:
            body = json.loads(handle.read())
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and isinstance(body.get("stamp"), str) and isinstance(body.get("properties"), dict)


def open_version(store: Store, name: str, entry: int, branch: str | None, version: int) -> Snapshot:
    """One version of main or of a branch, reached through the readable main version ``entry``."""
    ds = lance.dataset(store.table_uri(name), version=entry, storage_options=store.storage_options)
    if branch is not None or version != entry:
        ds = ds.checkout_version((branch, version) if branch else version)
    return Snapshot(name, share(ds), ds.version, branch, stamp_of(ds))


def refs_of(snap: Snapshot) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The table's tags and branches, listed through ``snap`` (a readable version: the newest may not be)."""
    return snap._ds.tags.list(), snap._ds.branches.list()


def delete_tag_at(store: Store, snap: Snapshot, tag: str) -> None:
    """Delete a tag through ``snap`` (a readable version), under the table's write turn."""
    with write_turn(store, snap.name):
        own(snap._ds).tags.delete(tag)


def files_of(root: Root, store: Store, name: str, branch: str | None, snap: Snapshot,
             placed: Callable[[str], str]) -> list[FileUse]:
    """Every file one version reads that lies in this root, each base's files taken where ``placed``
    puts that base (where they will be read once recorded bases are pointed at the root)."""
    ds = snap._ds
    home = store.table_uri(name) + (f"/tree/{branch}" if branch else "")
    bases = ds.base_paths()

    def place(base_id: int | None, folder: str, file: str) -> str | None:
        base = bases.get(base_id) if base_id is not None else None
        if base_id is not None and base is None:
            return None
        at = home if base is None else placed(base.path).rstrip("/")
        path = root.path_of(at)
        if path is None:
            return None
        return f"{path}/{folder}/{file}" if base is None or base.is_dataset_root else f"{path}/{file}"

    uses = []
    for fragment in ds.get_fragments():
        meta = fragment.metadata
        for data in meta.files:
            where = place(data.base_id, "data", data.path)
            if where:
                uses.append(FileUse("data", where, data.file_size_bytes))
        if meta.deletion_file is not None:
            relative = fragment.deletion_file()
            where = place(meta.deletion_file.base_id, relative.rsplit("/", 1)[0], relative.rsplit("/", 1)[-1])
            if where:
                uses.append(FileUse("deletion", where))
    for index in ds.list_indices():
        where = place(index.get("base_id"), "_indices", str(index["uuid"]))
        if where:
            uses.append(FileUse("index", where))
    return uses


def sampled_images(snap: Snapshot, count: int) -> Iterator[tuple[str, str, bytes | None]]:
    """``(id, sha256, bytes)`` of up to ``count`` rows spread evenly over the version (all when 0);
    a table without ``image`` and ``sha256`` columns yields nothing."""
    ds = snap._ds
    if not {"id", "image", "sha256"} <= set(ds.schema.names):
        return
    table = ds.to_table(columns=["id", "sha256"], with_row_id=True)
    rows = table.num_rows
    picks = sorted({i * rows // count for i in range(count)}) if count and rows > count else list(range(rows))
    ids, digests = table.column("id").to_pylist(), table.column("sha256").to_pylist()
    row_ids = table.column("_rowid").to_pylist()
    for start in range(0, len(picks), 64):
        chunk = picks[start:start + 64]
        blobs = ds.read_blobs("image", ids=[row_ids[i] for i in chunk], preserve_order=True)
        for i, (_, data) in zip(chunk, blobs, strict=True):
            yield ids[i], digests[i], data
