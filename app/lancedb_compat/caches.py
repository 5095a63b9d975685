"""Forgetting a dropped or re-created table in the service's caches.

Per-version caches (id maps, ANN indexes, filter results) are keyed by the store's snapshot key,
which carries a generation the store bumps whenever it drops or creates a table, so a table
re-created under the same name (LanceDB clients do ``drop_table`` then ``create_table``) never
sees the old table's entries. Vector index tunings are keyed by index files, so a re-created table never reuses them.
"""

from __future__ import annotations

from typing import Any


def forget_table(state: Any, name: str) -> None:
    state.store.forget(name)
    state.searcher.indexes.forget(name)
