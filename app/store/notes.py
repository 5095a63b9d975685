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
from datetime import datetime

import lance

from app.store.files import filesystem as _filesystem

NOTES_DIR = "_lightbox/notes"


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
