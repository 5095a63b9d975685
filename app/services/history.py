"""History reads: the version log with messages, authors and tags."""

from __future__ import annotations

from typing import Any

from app.store import Store


def list_versions(store: Store, name: str) -> list[dict[str, Any]]:
    """Every version of main, oldest first, with the message and author its commit recorded."""
    ds = store.latest(name)
    tags_by_version: dict[int, list[str]] = {}
    for tag, info in ds.tags.list().items():
        if info.get("branch") is None:
            tags_by_version.setdefault(int(info["version"]), []).append(tag)
    out = []
    for entry in ds.versions():
        version = int(entry["version"])
        txn = _transaction(ds, version)
        props = (txn.transaction_properties or {}) if txn else {}
        out.append({
            "version": version,
            "timestamp": entry["timestamp"].isoformat(),
            "message": props.get("__lance_commit_message"),
            "author": props.get("author"),
            "operation": type(txn.operation).__name__ if txn else None,
            "num_rows": int(entry["metadata"].get("total_rows", 0)),
            "tags": sorted(tags_by_version.get(version, [])),
        })
    return out


def _transaction(ds: Any, version: int) -> Any:
    try:
        return ds.checkout_version(version).get_transactions(1)[0]
    except (ValueError, OSError, IndexError):
        return None
