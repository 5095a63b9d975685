"""``describe``: one table in one answer, for a person deciding what to do with it.

The table's description at a ref (``tables.table_info``) plus what costs more to gather: every
branch's head, the number of versions of the ref's branch, each index with its tuning, and the
bytes the table keeps in storage.
"""

from __future__ import annotations

from typing import Any

from app.services.branches import list_branches
from app.services.maintenance import indexes_of
from app.services.tables import table_info
from app.store import Ref, Snapshot, Store
from app.store.usage import disk_usage
from app.store.vectors import IndexKeeper


def describe_table(store: Store, keeper: IndexKeeper, name: str, ref: Ref) -> tuple[Snapshot, dict[str, Any]]:
    snap, info = table_info(store, name, ref)
    heads = {b["name"]: b for b in list_branches(store, name)}
    info["branches"] = {branch: {**fork, "version": heads[branch]["version"], "num_rows": heads[branch]["num_rows"]}
                        for branch, fork in info["branches"].items() if branch in heads}
    info["indexes"] = indexes_of(snap, keeper)
    info["versions"] = len(store.versions(name, snap.branch))
    info["size"] = disk_usage(store.table_uri(name), store.storage_options)
    return snap, info
