"""Version notes: the author, message, operation and counts of a commit made by a Lance call that
records none of them (adding a vector column with ``merge``, a shallow clone, compaction, index
maintenance).

Lance keeps a commit's transaction properties only when the caller builds the transaction, which
these calls do not allow. So the same properties are written just after the commit to a small JSON
object beside the table, ``{table}/_lightbox/notes/{branch}/{version}.json``, through the storage's
own filesystem (a local folder or an object store alike). A note names the commit time of the
version it describes and is ignored for any other commit, so it never describes a different version
(a branch deleted and created again reuses numbers); dropping the table removes its notes. A process
that dies between the commit and its note leaves that version with what Lance knows (its
operation), never a wrong note.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

import lance

NOTES_DIR = "_lightbox/notes"


def _filesystem(table_uri: str, storage_options: dict[str, str] | None = None) -> tuple[Any, str]:
    """pyarrow's filesystem for the table's folder, built from the same storage options Lance gets."""
    from pyarrow import fs

    if "://" not in table_uri:
        table_uri = os.path.abspath(table_uri)
    if table_uri.startswith(("s3://", "s3a://")) and storage_options:
        return _s3(storage_options), table_uri.split("://", 1)[1]
    return fs.FileSystem.from_uri(table_uri)


def _s3(options: dict[str, str]) -> Any:
    """An ``S3FileSystem`` from Lance's S3 option names (short or ``aws_``-prefixed)."""
    from pyarrow import fs

    def get(name: str) -> str | None:
        value = options.get(name, options.get(f"aws_{name}"))
        return str(value) if value is not None else None

    endpoint = get("endpoint")
    kwargs: dict[str, Any] = {
        "access_key": get("access_key_id"), "secret_key": get("secret_access_key"),
        "session_token": get("session_token"), "region": get("region") or "us-east-1",
    }
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        kwargs.update(endpoint_override=host or endpoint, scheme=scheme or "https")
    if str(get("allow_http") or "").lower() == "true" and not endpoint:
        kwargs["scheme"] = "http"
    return fs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None})


def _path(root: str, branch: str | None, version: int) -> str:
    return f"{root}/{NOTES_DIR}/{branch or '_main'}/{version}.json"


def write_note(table_uri: str, ds: lance.LanceDataset, branch: str | None, props: dict[str, str],
               storage_options: dict[str, str] | None = None) -> None:
    """Record ``props`` (transaction-property names) for the version ``ds`` is at."""
    filesystem, root = _filesystem(table_uri, storage_options)
    path = _path(root, branch, ds.version)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    body = {"stamp": ds.get_version()["timestamp"].isoformat(), "properties": props}
    with filesystem.open_output_stream(path) as out:
        out.write(json.dumps(body).encode())


def read_note(table_uri: str, branch: str | None, version: int, stamp: datetime,
              storage_options: dict[str, str] | None = None) -> dict[str, str]:
    """The properties noted for one version, or {} when there is no note for this very commit."""
    filesystem, root = _filesystem(table_uri, storage_options)
    try:
        with filesystem.open_input_stream(_path(root, branch, version)) as handle:
            body = json.loads(handle.read())
    except (OSError, ValueError):
        return {}
    if not isinstance(body, dict) or body.get("stamp") != stamp.isoformat():
        return {}
    props = body.get("properties")
    return {str(k): str(v) for k, v in props.items()} if isinstance(props, dict) else {}
