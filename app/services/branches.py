"""Branches, merge and zero-copy clone.

A branch is Lance's own (``tree/<name>`` in the table's folder, sharing the parent's files). A
merge applies what the branch changed since its fork (rows added, changed and removed) to the
target as one version, after checking that the target did not change the same ids differently
in the meantime; a conflict is a 409 listing them unless ``on_conflict`` picks a side. Merging a
branch again applies only what is new: rows already equal on both sides are no-ops.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pyarrow as pa

from app.errors import Conflict
from app.services.diff import Diff, diff
from app.services.history import MAX_PAGE, list_versions
from app.store import Ref, RowReader, Snapshot, Store
from app.store.column_fit import fit_array, plan_columns
from app.store.commits import write_turn
from app.store.schema import blob_values, is_blob
from app.store.upserts import keyed_write

OnConflict = Literal["fail", "theirs", "ours"]
RECENT_MERGES = 200  # versions of the target searched for an earlier merge of the same branch


class MergeConflict(Conflict):
    code = "merge_conflict"


def list_branches(store: Store, name: str) -> list[dict[str, Any]]:
    out = []
    for branch, info in sorted(store.branches(name).list().items()):
        head = store.head(name, branch)
        out.append({"name": branch, "parent_branch": info.get("parent_branch"),
                    "parent_version": info.get("parent_version"), "version": head.version,
                    "num_rows": head.count()})
    return out


def create_branch(store: Store, name: str, branch: str, ref: Ref) -> dict[str, Any]:
    """A branch of ``name`` forked at ``ref``: it shares the parent's files; its versions are its own."""
    return store.branches(name).create(branch, ref)


def delete_branch(store: Store, name: str, branch: str) -> None:
    store.branches(name).delete(branch)


def merge(store: Store, name: str, branch: str, *, into: str = "main", on_conflict: OnConflict = "fail",
          message: str | None = None, author: str | None = None) -> dict[str, Any]:
    """Apply ``branch``'s changes since its fork to ``into`` as one version. The table's write turn is held
    from reading both heads to the commit, so what is compared is what the merge is applied to."""
    info = store.branches(name).get(branch)
    target_branch = None if into == "main" else into
    fork = store.snapshot(name, Ref(version=int(info["parent_version"]), branch=info.get("parent_branch")))
    with write_turn(store, name):
        return _merge(store, name, branch, info, fork, target_branch, into, on_conflict, message, author)


def _merge(store: Store, name: str, branch: str, info: dict[str, Any], fork: Snapshot, target_branch: str | None,
           into: str, on_conflict: OnConflict, message: str | None, author: str | None) -> dict[str, Any]:
    theirs_snap = store.head(name, branch, fresh=True)
    ours_snap = store.head(name, target_branch, fresh=True)
    theirs, ours, cross = diff(fork, theirs_snap), diff(fork, ours_snap), diff(ours_snap, theirs_snap)
    differing = set(cross.added) | set(cross.removed) | set(cross.changed)  # where target and branch disagree
    conflicts = sorted(_touched(theirs) & _touched(ours) & differing)
    if conflicts and on_conflict == "fail":
        raise MergeConflict(f"{len(conflicts)} id(s) changed on both {branch!r} and {into!r} since the fork",
                            conflicts=conflicts[:1000], count=len(conflicts))
    skip = set(conflicts) if on_conflict == "ours" else set()
    upserts = [i for i in (*theirs.added, *theirs.changed) if i in differing and i not in skip]
    deletes = [i for i in theirs.removed if i in differing and i not in skip]
    rows = _rows(theirs_snap, ours_snap, upserts)
    merged = branch_log(store, name, branch, _merged_before(store, name, branch, target_branch,
                                                           int(info["parent_version"])))
    version, counts = keyed_write(store, name, rows, mode="upsert", branch=target_branch, delete_ids=deletes,
                                  message=message or f"merge {branch} into {into}", author=author,
                                  extra={"lightbox:op": "merge", "lightbox:merged": json.dumps(merged)})
    return {"version": version or ours_snap.version, "merged": version is not None, "into": into,
            "upserted": len(upserts), "removed": len(deletes),
            "conflicts": conflicts, "applied": counts}


def branch_log(store: Store, name: str, branch: str, since: int) -> list[dict[str, Any]]:
    """The branch's versions after ``since``, newest first, as the merge's log entry shows them
    (kept in the merge's commit, so they stay readable after the branch is deleted)."""
    page, _ = list_versions(store, name, branch=branch, limit=MAX_PAGE, before=since, ascending=True)
    keep = ("version", "branch", "timestamp", "message", "author", "operation", "num_rows",
            "rows_added", "rows_removed", "rows_updated", "merged")
    return [{k: entry[k] for k in keep if k in entry} for entry in reversed(page)]


def _merged_before(store: Store, name: str, branch: str, target: str | None, fork: int) -> int:
    """The newest version of ``branch`` an earlier merge into ``target`` already listed (else the
    fork), so each branch version shows under one merge only, as in ``git log``. Only the target's
    recent log is looked at: an older merge's versions may then show again, never go missing."""
    page, _ = list_versions(store, name, branch=target, limit=RECENT_MERGES)
    for entry in page:
        listed = [m["version"] for m in entry.get("merged") or [] if m.get("branch") == branch]
        if listed:
            return max(fork, *listed)
    return fork


def _touched(d: Diff) -> set[str]:
    return set(d.added) | set(d.changed) | set(d.removed)


def _rows(source: Snapshot, target: Snapshot, ids: list[str]) -> pa.Table | None:
    """The source's full rows for ``ids`` (image bytes included), in the target's schema widened by the
    source's columns it lacks (the merge adds them, as any write that brings a column does)."""
    if not ids:
        return None
    schema = plan_columns(target.name, target.schema, source.schema)
    positions = dict.fromkeys(ids)
    index = source.read(["id"], with_row_id=True)
    row_ids = [rid for key, rid in zip(index.column("id").to_pylist(), index.column("_rowid").to_pylist(),
                                       strict=True) if key in positions]
    scalars = [f.name for f in schema if not is_blob(f) and f.name in source.schema.names]
    table = source.take(row_ids, scalars)
    columns = []
    for f in schema:
        if is_blob(f):
            columns.append(blob_values(RowReader.blobs(source, row_ids, f.name)))
        elif f.name in table.column_names:
            columns.append(fit_array(target.name, f, table.column(f.name)))
        else:
            columns.append(pa.nulls(len(row_ids), f.type))
    return pa.Table.from_arrays(columns, schema=schema)
