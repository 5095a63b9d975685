"""Point reads: id -> stable row id, then ``take`` for columns and the blob API for bytes.

An ``IdIndex`` maps every id of one snapshot to its stable row id (and, for image tables, keeps
each row's mime type and sha256 beside it, so an image request or a 304 costs no extra read).
It is built once per snapshot from a scan of just those columns and cached; a snapshot never
changes, so the index never goes stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import lance

from app.errors import BadRequest, NoImage, RowNotFound
from app.store.catalog import Snapshot
from app.store.schema import is_image_table, scalar_columns


@dataclass(frozen=True)
class ImageRef:
    """What serving one image needs before reading its bytes."""

    row_id: int
    mime: str
    sha256: str
    size: int


class IdIndex:
    """Ids of one snapshot, in table order, with their row ids (and image facts)."""

    def __init__(self, ds: lance.LanceDataset) -> None:
        schema = ds.schema
        if "id" not in schema.names:
            raise BadRequest("this table has no 'id' column, so rows cannot be read by id")
        self.has_images = is_image_table(schema)
        columns = ["id", "mime", "sha256", "size_bytes"] if self.has_images else ["id"]
        table = ds.to_table(columns=columns, with_row_id=True)
        ids = table.column("id").to_pylist()
        self.row_ids: list[int] = table.column("_rowid").to_pylist()
        self.positions: dict[str, int] = {key: i for i, key in enumerate(ids)}
        if self.has_images:
            self.mimes: list[str | None] = table.column("mime").to_pylist()
            self.digests: list[str | None] = table.column("sha256").to_pylist()
            self.sizes: list[int | None] = table.column("size_bytes").to_pylist()

    def __len__(self) -> int:
        return len(self.row_ids)

    def row_id(self, key: str) -> int | None:
        pos = self.positions.get(key)
        return None if pos is None else self.row_ids[pos]

    def image(self, key: str) -> ImageRef | None:
        pos = self.positions.get(key)
        if pos is None or not self.has_images or self.digests[pos] is None:
            return None
        return ImageRef(self.row_ids[pos], self.mimes[pos] or "application/octet-stream",
                        self.digests[pos] or "", self.sizes[pos] or 0)


class RowReader:
    """Reads rows and images by id from snapshots, keeping a few id indexes warm."""

    def __init__(self, cache_size: int = 8) -> None:
        self._indexes: OrderedDict[tuple[str, str | None, int], IdIndex] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._building: dict[tuple[str, str | None, int], threading.Lock] = {}

    def index(self, snap: Snapshot) -> IdIndex:
        with self._lock:
            found = self._indexes.get(snap.key)
            if found is not None:
                self._indexes.move_to_end(snap.key)
                return found
            build_lock = self._building.setdefault(snap.key, threading.Lock())
        with build_lock:  # one build per snapshot, however many requests arrive at once
            with self._lock:
                found = self._indexes.get(snap.key)
            if found is None:
                found = IdIndex(snap.ds)
                with self._lock:
                    self._indexes[snap.key] = found
                    while len(self._indexes) > self._cache_size:
                        self._indexes.popitem(last=False)
                    self._building.pop(snap.key, None)
        return found

    def row(self, snap: Snapshot, key: str) -> dict:
        """One row as a dict of its scalar columns (no blobs, no vectors)."""
        row_id = self.index(snap).row_id(key)
        if row_id is None:
            raise RowNotFound(f"no row with id {key!r} in table {snap.name!r}", table=snap.name, id=key)
        table = snap.ds._take_rows([row_id], columns=scalar_columns(snap.ds.schema))
        return table.to_pylist()[0]

    def image_ref(self, snap: Snapshot, key: str) -> ImageRef:
        index = self.index(snap)
        ref = index.image(key)
        if ref is None:
            if index.row_id(key) is None:
                raise RowNotFound(f"no row with id {key!r} in table {snap.name!r}", table=snap.name, id=key)
            raise NoImage(f"row {key!r} of table {snap.name!r} has no image", table=snap.name, id=key)
        return ref

    @staticmethod
    def image_bytes(snap: Snapshot, ref: ImageRef) -> bytes:
        (_, data), = snap.ds.read_blobs("image", ids=[ref.row_id])
        return data or b""

    @staticmethod
    def blobs(snap: Snapshot, row_ids: list[int], column: str = "image") -> list[bytes | None]:
        """Blob bytes for row ids, in the order given.

        ``read_blobs`` answers with row *addresses*, which differ from stable row ids once a table
        has more than one fragment, so results are matched by position (``preserve_order``).
        """
        if not row_ids:
            return []
        return [data for _, data in snap.ds.read_blobs(column, ids=row_ids, preserve_order=True)]

    @staticmethod
    def image_range(snap: Snapshot, ref: ImageRef, start: int, length: int) -> bytes:
        """Bytes ``[start, start+length)`` of one image, without reading the rest."""
        blob = snap.ds.take_blobs("image", ids=[ref.row_id])[0]
        if blob is None:
            return b""
        with blob:
            return blob.read_range(start, length)
