"""Forgetting a dropped or re-created table in the service's caches.

Per-version caches (id maps, ANN indexes, filter results) are keyed by the store's snapshot key,
which carries the version's commit time, so a table re-created under the same name (LanceDB
clients do ``drop_table`` then ``create_table``), here or by another process, never sees the old
table's entries. Forgetting here frees the old entries' memory at once (the index keeper listens to
the store). Vector index tunings are keyed by index files, so a re-created table never reuses them.
"""

from __future__ import annotations

from typing import Any


def forget_table(state: Any, name: str) -> None:
    state.store.forget(name)
