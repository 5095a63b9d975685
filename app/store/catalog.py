"""The catalog: where tables live, and the cache of open dataset handles.

Every table is a plain Lance dataset at ``{root}/{name}.lance``, so ``lancedb.connect(root)``
opens the same tables. Handles are opened once and shared: the latest of each branch is
re-checked at most every ``refresh_seconds`` (local writes refresh it at once), and pinned
versions are derived from it with ``checkout_version``, which shares the open dataset's caches
and never moves the shared handle (one request's ref must never affect another's). A cached handle
is read by many threads at once, so it only reads (``app.store.handles``): a call that borrows a
pylance handle mutably (tags, branches, transactions, writes) takes a handle of its own.

Several processes may serve one data root, and any of them may drop a table and create another
under the same name, whose version 1 is not the old version 1. So a version is identified by what
the storage says about it, its number *and* its manifest's commit timestamp (``Snapshot.key``),
never by a counter only the dropping process knows; and each refresh of a latest handle checks
that the table (or branch) it finds continues the one seen before (``_continues``), forgetting
everything cached about it when it does not. Nothing here assumes a local path.

A root can be moved, copied or mounted elsewhere: the first time a process opens a table, the
locations its branches and clones recorded for shared files are checked against this root and, when
they name another place, pointed here (``app.store.bases``).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import lance
import pyarrow as pa

from app.errors import TableExists, TableNotFound, VersionNotFound
from app.storage import redact, root_uri
from app.store.bases import misplaced, relocate
from app.store.branches import Branches
from app.store.commits import commit_props
from app.store.handles import own, owned, share
from app.store.history import VersionLog
from app.store.outage import STORE_DEFAULTS
from app.store.refs import LATEST, Ref, check_name
from app.store.schema import check_schema_names
from app.store.snapshot import Snapshot, stamp_of
from app.store.stats import CacheStats
from app.store.tags import Tags

log = logging.getLogger("lightbox")


class Store:
    """Owns every Lance handle of one data root."""

    def __init__(
        self,
        uri: str,
        *,
        storage_options: dict[str, str] | None = None,
        refresh_seconds: float = 1.0,
        cache_size: int = 64,
        index_cache_bytes: int | None = None,
        relocate: bool = True,
        metadata_cache_bytes: int = 32 * 1024**2,
    ) -> None:
        self.uri = root_uri(uri)
        # point bases recorded elsewhere (a moved or copied root) here when a table is first opened;
        # `doctor` turns this off to report them, and repairs them only when asked
        self.relocate = relocate
        self._placed: set[str] = set()
        self._placing = threading.Lock()
        self.index_cache_bytes = index_cache_bytes  # Lance's index cache per table (vector partitions read)
        # Lance's metadata cache per table (manifests, fragment and file metadata): each version's manifest
        # lists every fragment, so unbounded it grows with versions x fragments (measured: 50 MB after 190
        # one-row uploads to a 1,000-row table)
        self.metadata_cache_bytes = metadata_cache_bytes
        # one Lance session (index and metadata caches) per table, shared by every handle opened on it,
        # so the vector partitions read stay cached when "latest" is re-opened
        self._sessions: dict[str, lance.Session] = {}
        self._index_caches: dict[str, int] = {}  # table -> the larger index cache its quantized index needs
        # on object storage, Lance's wait for a store that does not answer is bounded (app.store.outage)
        self.storage_options = ({**STORE_DEFAULTS, **(storage_options or {})} if not self.is_local
                                else storage_options or None)
        self.refresh_seconds = refresh_seconds
        # (name, branch) -> when it was opened, the head, its commit time, and the Snapshot cached_snapshot
        # answers with (one object while the head stays: what it computed once, its schema, stays)
        self._latest: dict[tuple[str, str | None], tuple[float, lance.LanceDataset, datetime, Snapshot]] = {}
        self.stats = CacheStats()  # pinned-version handles, for /metrics
        self._pinned: OrderedDict[tuple[str, str | None, int], tuple[lance.LanceDataset, datetime]] = OrderedDict()
        self._seen: dict[tuple[str, str | None], tuple[int, datetime]] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # held by every index build in this process (the index keeper's and those clients ask for):
        # a build holds a multiple of its vectors in memory, so two at once is never worth the risk
        self.build_turn = threading.RLock()
        self.log = VersionLog(self.table_uri, self.storage_options)
        self._forget_listeners: list[Callable[[str], None]] = []
        self._change_listeners: list[Callable[[str], None]] = []

    def on_forget(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(name)`` whenever this store forgets a table (dropped, re-created, or found
        replaced by another process), so caches kept elsewhere free what they hold for it."""
        self._forget_listeners.append(listener)

    # -- names and locations -------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return "://" not in self.uri or self.uri.startswith("file://")

    def _local_root(self) -> str:
        return self.uri.removeprefix("file://")

    def table_uri(self, name: str) -> str:
        check_name(name)
        return f"{self.uri}/{name}.lance"

    def names(self) -> list[str]:
        """Table names in the root, sorted."""
        if self.is_local:
            root = self._local_root()
            if not os.path.isdir(root):
                return []
            return sorted(
                entry.name.removesuffix(".lance")
                for entry in os.scandir(root)
                if entry.name.endswith(".lance") and os.path.isdir(os.path.join(entry.path, "_versions"))
            )
        import lancedb  # object stores: let the engine list them

        return sorted(lancedb.connect(self.uri, storage_options=self.storage_options).table_names(limit=100000))

    def exists(self, name: str) -> bool:
        check_name(name)
        if self.is_local:
            return os.path.isdir(os.path.join(self._local_root(), f"{name}.lance", "_versions"))
        try:
            self._open(name)
        except TableNotFound:
            return False
        return True

    # -- handles -------------------------------------------------------------------------
    def _open(self, name: str) -> lance.LanceDataset:
        try:
            ds = self._dataset(name)
        except (ValueError, OSError, FileNotFoundError) as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                raise TableNotFound(f"table {name!r} does not exist", table=name) from exc
            raise
        return ds if name in self._placed or not self.relocate else self._place(name, ds)

    def _place(self, name: str, ds: lance.LanceDataset) -> lance.LanceDataset:
        """Once per table and process: point the bases its versions recorded in another place (the
        root was moved, copied, mounted elsewhere) at this root, then open it again."""
        with self._placing:
            if name in self._placed:
                return ds
            try:
                moved = relocate(self, name) if misplaced(self, name, ds) else []
                if moved:
                    olds = ", ".join(sorted({m.old for m in moved}))
                    log.warning("table %r: its versions recorded shared files at %s; pointed %d base path(s) at "
                                "this root, %s (it was moved or copied)", name, redact(olds, self.storage_options),
                                len(moved), redact(self.uri, self.storage_options))
                    self.forget_pinned(name)  # its session cached the manifests as they were
                    ds = self._dataset(name)
            except (OSError, ValueError, RuntimeError) as exc:  # a read-only mount, a damaged branch: reads of
                # what it shares may fail, the rest of the table still reads; doctor says why
                log.warning("table %r: could not point its base paths at this root: %s", name,
                            redact(str(exc), self.storage_options))
            self._placed.add(name)
        return ds

    def _dataset(self, name: str) -> lance.LanceDataset:
        return lance.dataset(self.table_uri(name), storage_options=self.storage_options, session=self._session(name))

    def _session(self, name: str) -> lance.Session:
        with self._lock:
            session = self._sessions.get(name)
            if session is None:
                size = max(self.index_cache_bytes or 0, self._index_caches.get(name, 0))
                cache = {"index_cache_size_bytes": size} if self.index_cache_bytes else {}
                session = self._sessions[name] = lance.Session(metadata_cache_size_bytes=self.metadata_cache_bytes,
                                                               **cache)
            return session

    def private_snapshot(self, snap: Snapshot, *, index_cache_bytes: int) -> Snapshot:
        """The same version of main opened in a session of its own, with an index cache of this size: a
        pass over the whole table through a vector index (curate queries every row) touches every
        partition again and again, which thrashes the shared cache (3x slower at 300k rows with 128 MB);
        the session and its cache go when the snapshot does."""
        session = lance.Session(index_cache_size_bytes=index_cache_bytes,
                                metadata_cache_size_bytes=self.metadata_cache_bytes)
        ds = lance.dataset(self.table_uri(snap.name), version=snap.version, storage_options=self.storage_options,
                           session=session)
        return Snapshot(snap.name, share(ds), ds.version, snap.branch, stamp_of(ds))

    def fresh(self, name: str, branch: str | None = None) -> lance.LanceDataset:
        """A new, unshared handle on a branch's latest version, for operations that move their handle
        (``merge``, ``restore``, ``merge_insert``): cached handles must never move."""
        ds = self._open(name)
        if branch is not None:
            self.latest(name, branch)  # 404 for an unknown branch
            ds = ds.checkout_version((branch, None))
        return owned(ds)

    def latest(self, name: str, branch: str | None = None) -> lance.LanceDataset:
        """The newest version of a branch (main when ``branch`` is None), cached briefly: a shared,
        read-only handle."""
        return self._head(name, branch)[0]

    def own(self, name: str, branch: str | None = None) -> lance.LanceDataset:
        """A handle of the caller's own on the cached latest (no I/O), for the calls a shared handle
        refuses: tag and branch changes, transactions."""
        return own(self.latest(name, branch))

    def _head(self, name: str, branch: str | None = None) -> tuple[lance.LanceDataset, datetime]:
        key = (name, branch)
        now = time.monotonic()
        cached = self._latest.get(key)
        if cached and now - cached[0] < self.refresh_seconds:
            return cached[1], cached[2]
        try:
            if branch is None:
                if not self.is_local or self.exists(name):
                    ds = self._open(name)
                else:
                    raise TableNotFound(f"table {name!r} does not exist", table=name)
            else:
                main = self.latest(name)
                if branch not in main.branches.list():
                    raise VersionNotFound(f"table {name!r} has no branch {branch!r}", table=name, branch=branch)
                ds = main.checkout_version((branch, None))
        except (TableNotFound, VersionNotFound):
            if key in self._seen:  # dropped by another process: free what is cached about it
                self._forget_lineage(name, branch)
            raise
        ds = share(ds)
        stamp = stamp_of(ds)
        if not self._continues(key, ds, stamp):
            self._forget_lineage(name, branch)
        with self._lock:
            self._latest[key] = (now, ds, stamp, Snapshot(name, ds, ds.version, branch, stamp))
            self._seen[key] = (ds.version, stamp)
        return ds, stamp

    def _continues(self, key: tuple[str, str | None], ds: lance.LanceDataset, stamp: datetime) -> bool:
        """Whether a freshly opened head is the same table (or branch) as the head seen before.

        Versions only grow and a committed manifest never changes, so the table continues when the
        version seen before is still there with the same commit time. Anything else (a lower
        version, another time, a version gone) means it was dropped and created again, here or by
        another process; at worst (a version pruned meanwhile) caches are rebuilt for nothing.
        """
        seen = self._seen.get(key)
        if seen is None:
            return True
        version, when = seen
        if ds.version == version:
            return stamp == when
        if ds.version < version:
            return False
        try:
            before = ds.checkout_version((key[1], version) if key[1] else version)
        except (ValueError, OSError):
            return False
        return stamp_of(before) == when

    def _forget_lineage(self, name: str, branch: str | None) -> None:
        if branch is None:
            self.forget(name)
            return
        with self._lock:
            self._latest.pop((name, branch), None)
            self._seen.pop((name, branch), None)
            for key in [k for k in self._pinned if k[0] == name and k[1] == branch]:
                del self._pinned[key]
        self.log.forget_branch(name, branch)

    def invalidate(self, name: str) -> None:
        """Forget cached latest handles of a table (after a local write or a drop)."""
        with self._lock:
            for key in [k for k in self._latest if k[0] == name]:
                del self._latest[key]
        self.changed(name)

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(name)`` after every local change of a table (it must not block)."""
        self._change_listeners.append(listener)

    def changed(self, name: str) -> None:
        for listener in self._change_listeners:
            listener(name)

    def fit_index_cache(self, name: str, nbytes: int) -> bool:
        """Give a table an index cache of at least ``nbytes``; True when it grew (its handles then open in
        a new session, whose cache starts empty). A quantized vector index is decoded as its partitions
        are read, so one that does not fit is decoded again by every search (at 1M x 384, IVF_RQ with
        4,000 lists: 73 ms a search reading every probed partition again, 3.9 ms from memory; an IVF_FLAT
        partition costs next to nothing to read again: 1.46 against 1.48 ms at 300k)."""
        with self._lock:
            if not self.index_cache_bytes or nbytes <= max(self.index_cache_bytes, self._index_caches.get(name, 0)):
                return False  # Lance's own default (6 GiB) already, or large enough
            self._index_caches[name] = nbytes
        self.forget_pinned(name)
        self.invalidate(name)
        return True

    def forget_pinned(self, name: str) -> None:
        """Forget a table's pinned-version handles (after a drop, or a cleanup that pruned versions:
        a cached handle would go on answering for a version that no longer exists)."""
        with self._lock:
            for key in [k for k in self._pinned if k[0] == name]:
                del self._pinned[key]
            self._sessions.pop(name, None)  # nor answer from the manifests its session cached

    def head(self, name: str, branch: str | None = None, *, fresh: bool = False) -> Snapshot:
        """The latest version of a branch (main when None): the cached one, or with ``fresh`` the one storage
        has now (what a write about to commit on it must read, since the cached one may be a second old)."""
        if not fresh:
            return self.snapshot(name, Ref(branch=branch))
        ds = share(self.fresh(name, branch))
        return Snapshot(name, ds, ds.version, branch, stamp_of(ds))

    def versions(self, name: str, branch: str | None = None) -> list[int]:
        """Every live version number of a branch (main when None), oldest first (``VersionLog``)."""
        return self.log.numbers(self.latest(name, branch), name, branch)

    def version_entry(self, name: str, version: int, branch: str | None = None) -> dict[str, Any]:
        """One version's log entry: time, message, author, operation, rows, counts (``VersionLog``)."""
        return self.log.entry(self.latest(name, branch), name, version, branch)

    def tags(self, name: str) -> Tags:
        """The table's tags: list, create, move, delete (``app.store.tags``)."""
        return Tags(self, name)

    def branches(self, name: str) -> Branches:
        """The table's branches: list, create, delete (``app.store.branches``)."""
        return Branches(self, name)

    def snapshot(self, name: str, ref: Ref = LATEST) -> Snapshot:
        """Resolve a ref to an immutable handle; 404 when it names nothing."""
        main = self.latest(name)
        if ref.tag is not None:
            branch, version = self._resolve_tag(main, name, ref.tag)
        elif ref.as_of is not None:
            branch, version = None, self._resolve_as_of(main, name, ref.as_of)
        elif ref.version is not None:
            branch, version = ref.branch, ref.version
        else:
            head, stamp = self._head(name, ref.branch)
            return Snapshot(name, head, head.version, ref.branch, stamp)
        head, stamp = self._head(name, branch)
        if version == head.version:
            return Snapshot(name, head, version, branch, stamp)
        ds, stamp = self._pinned_handle(name, branch, version, head)
        return Snapshot(name, ds, version, branch, stamp)

    def cached_snapshot(self, name: str, ref: Ref = LATEST) -> Snapshot | None:
        """``snapshot(name, ref)`` when memory alone answers it (the latest checked less than
        ``refresh_seconds`` ago, a pinned version's handle already open), else None: resolving it would
        read the store, and the caller asks ``snapshot`` (which may, and raises what it finds)."""
        if ref.tag is not None or ref.as_of is not None:
            return None
        oldest = time.monotonic() - self.refresh_seconds
        main = self._latest.get((name, None))
        cached = main if ref.branch is None else self._latest.get((name, ref.branch))
        if main is None or cached is None or main[0] <= oldest or cached[0] <= oldest:
            return None
        head = cached[3]
        if ref.version is None or ref.version == head.version:
            return head
        found = self.stats.lookup(self._pinned, (name, ref.branch, ref.version), self._lock)
        return None if found is None else Snapshot(name, found[0], ref.version, ref.branch, found[1])

    def _pinned_handle(
        self, name: str, branch: str | None, version: int, head: lance.LanceDataset
    ) -> tuple[lance.LanceDataset, datetime]:
        key = (name, branch, version)
        found = self.stats.lookup(self._pinned, key, self._lock)
        if found is not None:
            return found
        self.stats.miss()
        try:
            ds = head.checkout_version((branch, version) if branch else version)
        except (ValueError, OSError) as exc:
            where = f" on branch {branch!r}" if branch else ""
            raise VersionNotFound(
                f"table {name!r} has no version {version}{where}", table=name, version=version
            ) from exc
        found = (share(ds), stamp_of(ds))
        with self._lock:
            self._pinned[key] = found
            while len(self._pinned) > self._cache_size:
                self._pinned.popitem(last=False)
        return found

    @staticmethod
    def _resolve_tag(main: lance.LanceDataset, name: str, tag: str) -> tuple[str | None, int]:
        info = main.tags.list().get(tag)
        if info is None:
            raise VersionNotFound(f"table {name!r} has no tag {tag!r}", table=name, tag=tag)
        return info.get("branch"), int(info["version"])

    def _resolve_as_of(self, main: lance.LanceDataset, name: str, moment: datetime) -> int:
        best = self.log.at_or_before(main, name, moment)
        if best is None:
            raise VersionNotFound(
                f"table {name!r} has no version at or before {moment.isoformat()}", table=name
            )
        return int(best)

    # -- lifecycle -----------------------------------------------------------------------
    def create(self, name: str, schema: pa.Schema) -> int:
        """An empty table (version 1) with stable row ids, which diffs and blob reads rely on; its version."""
        if self.exists(name):
            raise TableExists(f"table {name!r} already exists", table=name)
        check_schema_names(schema)
        ds = lance.write_dataset(
            schema.empty_table(),
            self.table_uri(name),
            schema=schema,
            mode="create",
            enable_stable_row_ids=True,
            storage_options=self.storage_options,
            commit_message="create table",
            transaction_properties=commit_props(extra={"lightbox:op": "create"}),
        )
        self.forget(name)
        return ds.version

    def drop(self, name: str) -> None:
        if not self.exists(name):
            raise TableNotFound(f"table {name!r} does not exist", table=name)
        if self.is_local:
            shutil.rmtree(os.path.join(self._local_root(), f"{name}.lance"))
        else:
            import lancedb

            lancedb.connect(self.uri, storage_options=self.storage_options).drop_table(name)
        self.forget(name)

    def forget(self, name: str) -> None:
        """Drop everything cached about a table, here and in the caches that listen (per-version
        caches are keyed by commit time as well, so they could not answer for the old table anyway;
        forgetting frees their memory at once)."""
        self.invalidate(name)
        self.log.forget(name)
        self.forget_pinned(name)
        with self._lock:
            for key in [k for k in self._seen if k[0] == name]:
                del self._seen[key]
        self._placed.discard(name)
        for listener in self._forget_listeners:
            listener(name)

    def write_options(self) -> dict[str, Any]:
        """Keyword arguments every ``lance.write_dataset`` call of this store takes."""
        return {"storage_options": self.storage_options}
