"""Zero-copy clones: a new table whose first version reads its source's data files at one version.

Lance's ``shallow_clone`` copies the manifest only, recording where the source's files live; it takes
no transaction properties, so the author and message are a version note (``app.store.notes``). The
guard tag that keeps those files from being pruned is the clone service's (``app.services.clones``).
"""

from __future__ import annotations

from app.errors import TableExists
from app.store.catalog import Store
from app.store.commits import write_turn
from app.store.notes import write_note
from app.store.snapshot import Snapshot

__all__ = ["shallow_clone"]


def shallow_clone(store: Store, source: Snapshot, new_name: str, props: dict[str, str]) -> Snapshot:
    """Make table ``new_name`` from ``source`` without copying data; its head, noted with ``props``."""
    with write_turn(store, new_name):
        if store.exists(new_name):
            raise TableExists(f"table {new_name!r} already exists", table=new_name)
        point = (source.branch, source.version) if source.branch else source.version
        store.fresh(source.name).shallow_clone(
            store.table_uri(new_name), point, **({"storage_options": store.storage_options} if store.storage_options
                                                  else {}))
        store.forget(new_name)  # the name may have held another table before
        head = store.fresh(new_name)
        write_note(store.table_uri(new_name), head, None, props, store.storage_options)
    return store.head(new_name)
