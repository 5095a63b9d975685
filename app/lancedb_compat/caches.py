"""Forgetting a dropped table in the service's per-version caches.

The id index (``RowReader``), the ANN indexes and the filter results (``Searcher``) are keyed by
``(table, branch, version)``. A table dropped and created again under the same name starts over at
version 1, so entries of the old table would answer for the new one (wrong rows, wrong row ids).
LanceDB clients do exactly that (``drop_table`` then ``create_table``, ``create_table(mode=
"overwrite")``), so this package forgets the name whenever it drops or creates a table. The ANN
cache has ``forget``; the other two have no public way yet, so their entries are removed under the
owner's own lock (a public ``forget`` on ``RowReader`` and ``Searcher`` should replace this).
"""

from __future__ import annotations

from typing import Any


def forget_table(state: Any, name: str) -> None:
    state.searcher.ann.forget(name)
    for owner, attr in ((state.reader, "_indexes"), (state.searcher, "_filters")):
        public = getattr(owner, "forget", None)
        if callable(public):
            public(name)
            continue
        cache, lock = getattr(owner, attr, None), getattr(owner, "_lock", None)
        if cache is None or lock is None:
            continue
        with lock:
            for key in [k for k in cache if k and k[0] == name]:
                del cache[key]
