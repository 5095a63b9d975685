"""The only package that imports Lance: catalog, handles, reads and writes.

Services reach the engine through what this package hands them: ``Store.snapshot``/``head`` (a
``Snapshot`` to read: schema, count, scan, take, lineage, indexes, fragments), ``Store.tags``/``branches``,
``Store.versions``/``version_entry`` (the log) and the write functions of its modules, each of which takes
the table's write turn (``app.store.commits``). ``Store.latest``/``fresh``/``own`` hand out raw dataset
handles for the store's own modules.
"""

from app.store.catalog import Snapshot, Store
from app.store.refs import LATEST, Ref
from app.store.rows import ImageRef, RowReader

__all__ = ["LATEST", "ImageRef", "Ref", "RowReader", "Snapshot", "Store"]
