"""Dataset handles shared between request threads, and the calls they refuse.

The catalog caches one pylance handle per branch head and per pinned version, and every request
thread reads through the same object. Several pylance methods borrow the Rust dataset behind a
handle *mutably*. While one runs, every other call on that handle from another thread fails, and so
does the borrowing call when another thread is already reading. The errors are "RuntimeError:
Already borrowed" and "Already mutably borrowed": a 500 for whichever request lost the race.

Measured on pylance 14.0.2 with threads on one handle. These borrow mutably: ``get_transactions``,
``read_transaction``, ``tags.create``, ``tags.delete``, ``create_branch``, ``branches.delete``,
``checkout_latest``, ``delete``, ``update``, ``restore``, ``add_columns``, ``alter_columns``,
``drop_columns``, ``replace_schema_metadata``, ``update_config``, ``create_index``,
``create_scalar_index``, ``optimize.optimize_indices`` and ``shallow_clone``. These share their
borrow and are safe: ``to_table``, ``scanner``, ``count_rows``, ``_take_rows``, ``read_blobs``,
``take_blobs``, a nearest-neighbour scan, ``versions``, ``version_refs``, ``checkout_version``,
``get_version``, ``tags.list``/``get_version``/``update``, ``branches.list``, ``list_indices``,
``describe_indices``, ``stats``, ``config``, ``base_paths``, ``get_fragments`` and ``schema``.

So a shared handle is a read-only snapshot. Its class refuses those calls and every write, which
would move a handle others read. It refuses them on every call, single-threaded too, so any test
that reaches a misuse fails at once instead of only under load. Code that needs one of them takes a
handle of its own. ``own(ds)`` copies the Python object; the copy has its own borrow flag and shares
the Rust dataset's caches (1.6 µs). ``Store.fresh`` opens the latest from storage.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import lance
from lance.dataset import Branches, Tags

REFUSED = (
    # borrow the handle mutably (measured)
    "get_transactions", "read_transaction", "delete", "update", "restore", "checkout_latest", "create_branch",
    "create_index", "create_scalar_index", "drop_index", "add_columns", "alter_columns", "drop_columns",
    "replace_schema_metadata", "update_schema_metadata", "replace_field_metadata", "update_field_metadata",
    "update_config", "delete_config_keys", "shallow_clone", "optimize",
    # write, and may move the handle they are called on
    "insert", "merge_insert", "merge", "cleanup_old_versions", "add_bases", "deep_clone", "truncate_table",
    "update_metadata", "migrate_manifest_paths_v2",
)
LIST_ATTEMPTS = 5


class SharedHandleMisuse(RuntimeError):
    """A call that needs a handle of its own was made on a shared one (a bug here, never the client's)."""


def _refusal(name: str) -> property:
    def refuse(self: Any) -> Any:
        raise SharedHandleMisuse(f"{name} on a shared dataset handle: other threads read it at the same time; "
                                 "take a handle of your own (app.store.handles.own, or Store.fresh)")

    return property(refuse)


def _listing(list_refs: Any) -> Any:
    """``list`` of tags or branches that survives a ref deleted while it lists: Lance lists the refs
    folder, then reads each file, and a file removed in between fails the whole listing."""

    def listed(self: Any) -> dict[str, Any]:
        for attempt in range(LIST_ATTEMPTS):
            try:
                return list_refs(self)
            except (ValueError, OSError) as exc:
                if "not found" not in str(exc).lower() or "_refs" not in str(exc) or attempt + 1 == LIST_ATTEMPTS:
                    raise
                time.sleep(0.001 * (attempt + 1))
        raise AssertionError("unreachable")

    return listed


class ListingTags(Tags):
    list = _listing(Tags.list)


class ListingBranches(Branches):
    list = _listing(Branches.list)


class ReadOnlyTags(ListingTags):
    create = _refusal("tags.create")
    delete = _refusal("tags.delete")
    update = _refusal("tags.update")
    replace_metadata = _refusal("tags.replace_metadata")


class ReadOnlyBranches(ListingBranches):
    delete = _refusal("branches.delete")
    replace_metadata = _refusal("branches.replace_metadata")


class OwnedDataset(lance.LanceDataset):
    """A handle of one caller's own: every method allowed, and tag and branch listings that survive a
    ref deleted by another writer while they list (as the shared handles' do)."""

    @property
    def tags(self) -> Tags:
        return ListingTags(self._ds)

    @property
    def branches(self) -> Branches:
        return ListingBranches(self._ds)


class SharedDataset(lance.LanceDataset):
    """A pylance handle that several threads read at once (see the module's docstring)."""

    @property
    def tags(self) -> Tags:
        return ReadOnlyTags(self._ds)

    @property
    def branches(self) -> Branches:
        return ReadOnlyBranches(self._ds)


for _name in REFUSED:
    setattr(SharedDataset, _name, _refusal(_name))


def share(ds: lance.LanceDataset) -> lance.LanceDataset:
    """Mark a handle as shared: from now on it only reads."""
    ds.__class__ = SharedDataset
    return ds


def own(ds: lance.LanceDataset) -> lance.LanceDataset:
    """A handle of the caller's own on the same version (a plain pylance handle, no I/O)."""
    mine = copy.copy(ds)  # LanceDataset.__copy__ builds a plain LanceDataset over a copy of the Rust handle
    mine.__class__ = OwnedDataset
    return mine


def owned(ds: lance.LanceDataset) -> lance.LanceDataset:
    """Mark a freshly opened handle as the caller's own (its listings survive concurrent ref deletes)."""
    ds.__class__ = OwnedDataset
    return ds
