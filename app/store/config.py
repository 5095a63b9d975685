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

__all__ = ["CONFIG_PREFIX", "VIEW_PREFIX", "delete_config", "read_config", "update_config"]

CONFIG_PREFIX = "lightbox.recall."  # + column: the table config key holding its index's tuning
VIEW_PREFIX = "lightbox.view."  # + view name: a saved view (JSON)


def read_config(store: Store, name: str, prefix: str = "") -> dict[str, str]:
    """The config keys starting with ``prefix`` on the latest version of main (the store's cached head,
    which a local write refreshes at once)."""
    return {k: v for k, v in store.latest(name).config().items() if k.startswith(prefix)}


def update_config(store: Store, name: str, values: dict[str, str]) -> None:
    """Set config keys on the latest version of main (one commit), under the table's write turn."""
    with write_turn(store, name):
        retry_commit(lambda: store.fresh(name).update_config(values), table=name, what="the config change")
        store.invalidate(name)


def delete_config(store: Store, name: str, keys: list[str]) -> None:
    """Remove config keys from the latest version of main (one commit), under the table's write turn."""
    with write_turn(store, name):
        retry_commit(lambda: store.fresh(name).delete_config_keys(keys), table=name, what="the config change")
        store.invalidate(name)
