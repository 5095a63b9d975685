"""A table's config: Lance's key-value settings, kept in the manifest and so versioned with the data.

The index keeper records the probe count each vector index needs for the recall target under
``lightbox.recall.<column>`` (``CONFIG_PREFIX``): an old tag reads the tuning of the index it had. Saved
views live under ``lightbox.view.<name>`` (``VIEW_PREFIX``), so every process reading the table's root
(a restart, a read replica) sees them. A change is one small commit, made under the table's write turn
like every other write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.store.commits import retry_commit, write_turn

if TYPE_CHECKING:
    from app.store.catalog import Store

__all__ = ["CONFIG_PREFIX", "VIEW_PREFIX", "carry_config", "read_config", "update_config"]

CONFIG_PREFIX = "lightbox.recall."  # + column: the table config key holding its index's tuning
VIEW_PREFIX = "lightbox.view."  # + view name: a saved view (JSON)


def read_config(store: Store, name: str, prefix: str = "", *, fresh: bool = False) -> dict[str, str]:
    """The config keys starting with ``prefix`` on the latest version of main: the store's cached head
    (which a local write refreshes at once), or with ``fresh`` the one storage has now."""
    ds = store.fresh(name) if fresh else store.latest(name)
    return {k: v for k, v in ds.config().items() if k.startswith(prefix)}


def update_config(store: Store, name: str, values: dict[str, str | None]) -> None:
    """Set config keys (``None``: remove the key) on the latest version of main (one commit), under the
    table's write turn."""
    with write_turn(store, name):
        retry_commit(lambda: store.fresh(name).update_config(values), table=name, what="the config change")
        store.invalidate(name)



def carry_config(store: Store, name: str, prefix: str, wanted: dict[str, str]) -> None:
    """Make the keys under ``prefix`` on main's latest version exactly ``wanted`` (one commit; none when
    they already are). A restore brings back the old version's config with its data: the table's
    settings that are not versioned with the data (saved views) are carried over with this."""
    with write_turn(store, name):
        current = read_config(store, name, prefix, fresh=True)
        changes: dict[str, str | None] = {k: v for k, v in wanted.items() if current.get(k) != v}
        changes.update({k: None for k in current if k not in wanted})
        if changes:
            update_config(store, name, changes)
