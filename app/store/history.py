"""The version log, cached: a committed version never changes, so its entry is read once.

Listing versions with ``versions()`` reads every manifest (~0.3 s at 500 versions). Instead the
log takes the cheap list of version numbers, then reads only the entries of the page asked for,
through pinned handles that share the open dataset's caches, and keeps the most recently used of
them up to a byte budget (a table's versions never stop growing). Tags are attached at read time
because they move.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import lance
from lance.dataset import Transaction

from app.errors import Conflict, VersionNotFound
from app.store.commits import write_turn
from app.store.config import CONFIG_PREFIX
from app.store.handles import own
from app.store.notes import read_note

if TYPE_CHECKING:
    from app.store.catalog import Store


class VersionLog:
    """Entries per (table, branch, version); numbers per (table, branch, latest version)."""

    def __init__(self, table_uri: Callable[[str], str] | None = None,
                 storage_options: dict[str, str] | None = None, cache_bytes: int = 16 * 1024**2) -> None:
        self._table_uri = table_uri  # where a table's version notes live (None: read no notes)
        self._storage_options = storage_options
        self._entries: OrderedDict[tuple[str, str | None, int], tuple[dict[str, Any], int]] = OrderedDict()
        self._entry_bytes = 0
        self._cache_bytes = cache_bytes
        self._numbers: dict[tuple[str, str | None], tuple[int, list[int]]] = {}
        self._lock = threading.Lock()

    def numbers(self, head: lance.LanceDataset, name: str, branch: str | None = None) -> list[int]:
        """Every live version number of a branch (``head`` is its latest handle), oldest first."""
        cached = self._numbers.get((name, branch))
        if cached and cached[0] == head.version:
            return cached[1]
        found = sorted(int(r["version"]) for r in head.version_refs())
        with self._lock:
            self._numbers[(name, branch)] = (head.version, found)
        return found

    def entry(self, head: lance.LanceDataset, name: str, version: int, branch: str | None = None) -> dict[str, Any]:
        key = (name, branch, version)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                return cached[0]
        uri = self._table_uri(name) if self._table_uri is not None else None
        found = _read_entry(head, name, version, branch, uri, self._storage_options)
        size = 3 * len(json.dumps(found, default=str))  # about what the dict holds (a merge's can be long)
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (found, size)
                self._entry_bytes += size
            while self._entry_bytes > self._cache_bytes and len(self._entries) > 1:
                self._entry_bytes -= self._entries.popitem(last=False)[1][1]
        return found

    def at_or_before(self, head: lance.LanceDataset, name: str, moment: datetime) -> int | None:
        """The newest version of main committed at or before ``moment`` (binary search; timestamps grow)."""
        numbers = self.numbers(head, name)
        lo, hi = 0, len(numbers)
        while lo < hi:
            mid = (lo + hi) // 2
            stamp = datetime.fromisoformat(self.entry(head, name, numbers[mid])["timestamp"])
            if stamp <= moment:
                lo = mid + 1
            else:
                hi = mid
        return numbers[lo - 1] if lo else None

    def forget(self, name: str) -> None:
        """Drop a table's cached numbers and entries (after cleanup or drop)."""
        with self._lock:
            self._numbers = {k: v for k, v in self._numbers.items() if k[0] != name}
            self._drop_entries(lambda key: key[0] == name)

    def forget_branch(self, name: str, branch: str) -> None:
        """Drop one branch's cached numbers and entries (deleted and created again elsewhere)."""
        with self._lock:
            self._numbers = {k: v for k, v in self._numbers.items() if k[:2] != (name, branch)}
            self._drop_entries(lambda key: key[:2] == (name, branch))

    def _drop_entries(self, dropped: Callable[[tuple[str, str | None, int]], bool]) -> None:
        for key in [k for k in self._entries if dropped(k)]:
            self._entry_bytes -= self._entries.pop(key)[1]


def restore_version(store: Store, name: str, read_version: int, version: int, props: dict[str, str]) -> tuple[int, int]:
    """Commit ``version``'s content as a new version of main on top of ``read_version`` (its latest),
    carrying ``props`` (author, message, counts) as Lance's ``restore()`` cannot; nothing is copied.
    Returns the new version and its row count. A write since ``read_version`` is a 409."""
    with write_turn(store, name):
        head = store.fresh(name)
        txn = Transaction(read_version=read_version, operation=lance.LanceOperation.Restore(version),
                          transaction_properties=props)
        try:
            restored = lance.LanceDataset.commit(head, txn, read_version=read_version, max_retries=0)
        except (ValueError, OSError) as exc:
            if "conflict" in str(exc).lower():
                raise Conflict(f"table {name!r} changed during the restore; try again") from exc
            raise VersionNotFound(f"cannot restore version {version}: {exc}") from exc
        store.invalidate(name)
    return restored.version, restored.count_rows()


def _read_entry(head: lance.LanceDataset, name: str, version: int, branch: str | None,
                table_uri: str | None = None, storage_options: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        # a handle of its own: reading a transaction borrows the handle mutably (app.store.handles)
        at = (branch, version) if branch else version
        pinned = own(head) if head.version == version else head.checkout_version(at)
    except (ValueError, OSError) as exc:
        raise VersionNotFound(f"table {name!r} has no version {version}", table=name, version=version) from exc
    info = pinned.get_version()
    try:
        txn = pinned.get_transactions(1)[0]
    except (ValueError, OSError, IndexError, TypeError):  # pylance fails to decode some (RewrittenIndex)
        txn = None
    props = dict(txn.transaction_properties or {}) if txn is not None else {}
    stamp: datetime = info["timestamp"]  # pylance gives naive *local* time (datetime.fromtimestamp)
    if "author" not in props and table_uri is not None:  # a Lance call that could carry no properties
        props.update(read_note(table_uri, branch, version, stamp, storage_options))
    counts = {k: int(props[f"lightbox:{k}"]) for k in ("inserted", "updated", "deleted") if f"lightbox:{k}" in props}
    operation = props.get("lightbox:op") or _what_happened(txn, version, counts)
    entry = {
        "version": version,
        "timestamp": (stamp if stamp.tzinfo else stamp.astimezone(UTC)).isoformat(),
        "message": props.get("__lance_commit_message") or _default_message(operation, counts),
        "author": props.get("author"),
        "operation": operation,
        "num_rows": int(info["metadata"].get("total_rows", 0)),
        "branch": branch,
        "counts": counts,
    }
    if "lightbox:merged" in props:
        try:
            entry["merged"] = json.loads(props["lightbox:merged"])
        except ValueError:
            entry["merged"] = []
    return entry


LANCE_OPERATIONS = {"Append": "insert", "Delete": "delete", "Merge": "add_columns", "Restore": "restore",
                    "Clone": "clone", "Rewrite": "compact", "CreateIndex": "index", "Project": "alter_columns",
                    "UpdateConfig": "config"}


def _what_happened(txn: Any, version: int, counts: dict[str, int]) -> str | None:
    """An operation name for a commit that recorded none (written before names were recorded, by
    the index keeper, or by another Lance client), from Lance's operation and the row counts."""
    if txn is None:
        return None
    lance_name = type(txn.operation).__name__
    if lance_name == "Overwrite":
        return "create" if version == 1 else "overwrite"
    if lance_name == "UpdateConfig" and _is_tuning(txn.operation):
        return "tune_index"  # the index keeper recorded the probe count its index needs for the recall target
    if lance_name == "Update" and counts:
        done = [k for k in ("inserted", "updated", "deleted") if counts.get(k)]
        if done == ["inserted", "updated"]:
            return "upsert"
        return {"inserted": "insert", "updated": "update", "deleted": "delete"}.get(done[0], "update") \
            if len(done) == 1 else "update"
    return LANCE_OPERATIONS.get(lance_name, lance_name.lower())


def _is_tuning(operation: Any) -> bool:
    """An ``UpdateConfig`` that writes only the index keeper's tuning keys (no row changes)."""
    updates = getattr(getattr(operation, "config_updates", None), "updates", None)
    return isinstance(updates, dict) and bool(updates) and all(k.startswith(CONFIG_PREFIX) for k in updates)


def _default_message(operation: str | None, counts: dict[str, int]) -> str | None:
    """What a commit without a message did, in words ("update 1 row", "annotate 3 rows")."""
    if operation is None:
        return None
    rows = counts.get("inserted", 0) + counts.get("updated", 0) + counts.get("deleted", 0)
    if rows:
        return f"{operation.replace('_', ' ')} {rows} row{'s' if rows != 1 else ''}"
    return operation.replace("_", " ")
