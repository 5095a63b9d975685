"""The only package that imports Lance: catalog, handles, reads and writes."""

from app.store.catalog import Snapshot, Store
from app.store.refs import LATEST, Ref
from app.store.rows import ImageRef, RowReader

__all__ = ["LATEST", "ImageRef", "Ref", "RowReader", "Snapshot", "Store"]
