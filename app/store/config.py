"""A table's config: Lance's key-value settings, kept in the manifest and so versioned with the data.

The index keeper records the probe count each vector index needs for the recall target under
``lightbox.recall.<column>`` (``CONFIG_PREFIX``): an old tag reads the tuning of the index it had. A change
is one small commit, made under the table's write turn like every other write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.store.commits import retry_commit, write_turn

if TYPE_CHECKING:
    from app.store.catalog import Store

__all__ = ["CONFIG_PREFIX", "update_config"]

CONFIG_PREFIX = "lightbox.recall."  # + column: the table config key holding its index's tuning


def update_config(store: Store, name: str, values: dict[str, str]) -> None:
    """Set config keys on the latest version of main (one commit), under the table's write turn."""
    with write_turn(store, name):
        retry_commit(lambda: store.fresh(name).update_config(values), table=name, what="the config change")
        store.invalidate(name)
