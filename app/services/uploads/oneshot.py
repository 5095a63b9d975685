"""One request, one version: ``POST /rows`` and the LanceDB protocol's writes as a session of one batch.

The session is begun, given its one batch and committed under the table's write turn, so the ids it
reads are the ids it commits against: two concurrent uploads of one new id take turns (the second
finds it stored) instead of one of them failing on a conflict.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from app.errors import Unprocessable
from app.services.uploads import session as sessions
from app.services.uploads.options import UploadOptions
from app.store import Store
from app.store.ids import check_id_column
from app.store.upserts import write_turn
from embeddings.registry import Registry


def add_images(store: Store, registry: Registry, table: str, rows: pa.Table, opts: UploadOptions) -> dict[str, Any]:
    """Images (rows of ``id``, ``image`` and metadata) as one version. Returns ``{version, inserted, updated,
    unchanged, tag, skipped}`` (and ``deleted`` when ``opts.delete_ids`` is given)."""
    if "id" in rows.column_names:
        check_id_column(rows.column("id"))  # one bad id refuses the upload: nothing is written
    with write_turn(store, table):
        session = sessions.begin(store, registry, table, opts, ttl=0, persist=False)
        try:
            batch = sessions.add(store, registry, session, rows)
            done = sessions.commit(store, session)
        except BaseException:
            sessions.abort(store, session)
            raise
    result = done["result"]
    skipped = [{k: s[k] for k in ("file", "reason", "message")} for s in batch["skipped"] if s["reason"] != "unchanged"]
    report = {"version": result["version"] or result["previous_version"], "inserted": result["inserted"],
              "updated": result["updated"], "unchanged": result["unchanged"], "tag": result["tag"],
              "skipped": skipped, **({"deleted": result["deleted"]} if opts.delete_ids is not None else {})}
    return report


def refuse_nothing_written(report: dict[str, Any]) -> None:
    """A 422 when every file of an upload was skipped (nothing written), naming why (the first few; all are
    in ``detail.skipped``)."""
    skipped = report["skipped"]
    if not skipped or report["inserted"] or report["updated"] or report["unchanged"]:
        return
    shown = "; ".join(f"{s['file']}: {s['reason']} ({s['message']})" if s["message"] else f"{s['file']}: {s['reason']}"
                      for s in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    raise Unprocessable(f"nothing was written: every file was skipped: {shown}{more}", skipped=skipped)
