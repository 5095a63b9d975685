"""Distributed writes: data files written by many workers, published by one commit.

A worker writes Lance fragments (data files no manifest names yet) and hands back their metadata
as JSON; the driver gathers every worker's fragments and commits them as **one** version, with
the run's message and author in the transaction properties (``app.store.staging.publish``, the
commit of upload sessions, which write their batches the same way). Until that commit nothing is
visible: a driver killed before it leaves the table at its previous
version, and the fragments already written are unreferenced files that ``optimize`` (Lance's
cleanup) removes once they are older than the retention period.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

import lance
import pyarrow as pa
from lance.fragment import FragmentMetadata

from app.errors import Conflict
from app.store.catalog import Store
from app.store.uncommitted import write_uncommitted

# The file format a new table gets (pylance's default; blob v2 columns need at least 2.2).
NEW_TABLE_STORAGE_VERSION = "2.2"


def storage_version(store: Store, name: str) -> str:
    """The data file format fragments for ``name`` must be written in."""
    if not store.exists(name):
        return NEW_TABLE_STORAGE_VERSION
    return str(store.fresh(name).data_storage_version)


def staged_from_json(fragments: Iterable[str]) -> list[FragmentMetadata]:
    """Fragments written by workers (``write_fragments``' JSON), ready for ``staging.publish``."""
    return [FragmentMetadata.from_json(f) for f in fragments]


def write_fragments(uri: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], *,
                    storage_options: dict[str, str] | None, data_storage_version: str,
                    new_columns: bool = False) -> list[str]:
    """Write ``batches`` as uncommitted fragments of the table at ``uri`` (it may not exist yet);
    returns each fragment's metadata as JSON, which travels between processes and machines."""
    metas = write_uncommitted(uri, schema, batches, storage_options=storage_options,
                              data_storage_version=data_storage_version, new_columns=new_columns)
    return [json.dumps(f.to_json()) for f in metas]


def fragment_ids(store: Store, name: str, version: int) -> list[int]:
    """The fragments of one version, for per-fragment work."""
    return [f.fragment_id for f in store.fresh(name).checkout_version(version).get_fragments()]


def read_fragment(uri: str, version: int, fragment_id: int, columns: list[str],
                  storage_options: dict[str, str] | None, batch_size: int = 256) -> Iterable[pa.RecordBatch]:
    """One fragment's rows (blob columns as bytes), read in a worker."""
    ds = lance.dataset(uri, version=version, storage_options=storage_options)
    fragment = ds.get_fragment(fragment_id)
    yield from fragment.scanner(columns=columns, batch_size=batch_size, blob_handling="all_binary").to_batches()


def merge_into_fragment(uri: str, version: int, fragment_id: int, table: pa.Table,
                        storage_options: dict[str, str] | None) -> tuple[str, Any]:
    """Join ``table`` (``id`` plus new columns) onto one fragment, writing only the new column files;
    returns the fragment's new metadata (JSON) and the Lance schema it ends with (picklable; it
    keeps the field ids the new files were written with)."""
    ds = lance.dataset(uri, version=version, storage_options=storage_options)
    meta, schema = ds.get_fragment(fragment_id).merge(table, left_on="id")
    return json.dumps(meta.to_json()), schema


def commit_merge(store: Store, name: str, version: int, fragments: list[str], schema: Any,
                 properties: dict[str, str]) -> int:
    """Publish per-fragment column files as one ``Merge`` version made at ``version`` (every fragment
    of that version must be listed). A commit by another writer in between is a 409: the work was
    done against fragments that changed."""
    metas = [FragmentMetadata.from_json(f) for f in fragments]
    txn = lance.Transaction(version, lance.LanceOperation.Merge(metas, schema), str(uuid.uuid4()),
                            transaction_properties=properties)
    try:
        ds = lance.LanceDataset.commit(store.table_uri(name), txn, read_version=version, max_retries=0,
                                       storage_options=store.storage_options)
    except OSError as exc:  # lance.commit.CommitConflictError
        raise Conflict(f"table {name!r} changed while the column was computed; run it again", table=name) from exc
    store.invalidate(name)
    return ds.version
