"""Diff between any two refs: added, removed and changed ids, and which columns changed.

Lance's stable row ids and each row's ``_row_last_updated_at_version`` tell which rows cannot have
changed between two snapshots of one lineage (same row id, same last update), so only the rest
are compared, column by column (image bytes by ``sha256``, vectors element-wise; ``app.store.compare`` says what
counts as a change, the same test keyed writes use to skip rows they would not change). Snapshots of
different lineages (a merge copies rows, a clone re-ingests) still diff correctly: their rows are
simply all compared.

Branches number their versions on from their fork, so main's version 7 and a branch's version 7
are different commits: across branches, a matching (row id, last update) proves nothing unless
that update is no newer than the history both snapshots share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.errors import BadRequest
from app.store import Ref, Snapshot, Store
from app.store.compare import column_diff, compared_columns, has_value
from app.store.schema import is_blob, is_vector


@dataclass
class Diff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # id -> changed column names
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # changed id -> its row id on each side
    vectors: frozenset[str] = frozenset()  # the vector columns of either side

    def vectors_only(self, key: str) -> bool:
        """Whether only vector columns of the row changed (a re-embedding, not an edit)."""
        return all(c in self.vectors for c in self.changed[key])

    def page(self, limit: int, offset: int, *, vectors_as_count: bool = False) -> dict[str, Any]:
        """Counts in full; id lists cut to one page (the same offset applies to each list).
        ``vectors_as_count``: rows whose vectors alone changed are counted, not listed."""
        changed_ids = sorted(self.changed)
        only_vectors = sum(self.vectors_only(i) for i in changed_ids)
        listed = [i for i in changed_ids if not self.vectors_only(i)] if vectors_as_count else changed_ids
        end = offset + limit
        more = end < max(len(self.added), len(self.removed), len(listed))
        return {
            "counts": {"added": len(self.added), "removed": len(self.removed), "changed": len(changed_ids)},
            "vectors_only": only_vectors,
            "added": self.added[offset:end],
            "removed": self.removed[offset:end],
            "changed": [{"id": i, "columns": self.changed[i]} for i in listed[offset:end]],
            "next_cursor": str(end) if more else None,
        }


def parse_ref_text(store: Store, name: str, text: str) -> Ref:
    """A ref written as text: a version number, a tag, a branch (or ``main``), ``BRANCH@VERSION`` (a
    version of a branch, as a branch's fork point is written; ``main@3`` is main's), or an RFC 3339 time."""
    text = text.strip()
    if text.isdigit():
        return Ref.parse(version=text)
    branch, at, version = text.rpartition("@")
    if at and version.isdigit() and branch:
        if branch not in ("main", "latest", "HEAD") and branch not in store.branches(name).list():
            raise BadRequest(f"{branch!r} is not a branch of table {name!r}", ref=text)
        return Ref.parse(version=version, branch=None if branch in ("main", "latest", "HEAD") else branch)
    if text in ("main", "latest", "HEAD"):
        return Ref()
    if text in store.tags(name).list():
        return Ref.parse(tag=text)
    if text in store.branches(name).list():
        return Ref.parse(branch=text)
    if text[:4].isdigit() and "-" in text:
        return Ref.parse(as_of=text)
    raise BadRequest(f"{text!r} is not a version, tag, branch or timestamp of table {name!r}", ref=text)


def diff(a: Snapshot, b: Snapshot) -> Diff:
    """What changed from ``a`` to ``b``."""
    left = _lineage(a).rename_columns(["id", "upd_a", "rid_a"])
    right = _lineage(b).rename_columns(["id", "upd_b", "rid_b"])
    joined = left.join(right, "id", join_type="full outer")
    ids = joined.column("id").to_pylist()
    rid_a = joined.column("rid_a")
    rid_b = joined.column("rid_b")
    only_b = pc.is_null(rid_a).to_numpy(zero_copy_only=False)
    only_a = pc.is_null(rid_b).to_numpy(zero_copy_only=False)
    both = ~(only_a | only_b)
    upd_a = joined.column("upd_a")
    same = both & _eq(rid_a, rid_b) & _eq(upd_a, joined.column("upd_b"))
    shared = _shared_history(a, b)
    if shared is not None:
        same &= pc.fill_null(pc.less_equal(upd_a, shared), False).to_numpy(zero_copy_only=False)
    candidates = np.flatnonzero(both & ~same)
    out = Diff(added=sorted(ids[i] for i in np.flatnonzero(only_b)),
               removed=sorted(ids[i] for i in np.flatnonzero(only_a)))
    out.vectors = frozenset(f.name for f in [*a.schema, *b.schema] if is_vector(f))
    if len(candidates):
        a_ids = rid_a.take(pa.array(candidates)).to_pylist()
        b_ids = rid_b.take(pa.array(candidates)).to_pylist()
        keys = [ids[i] for i in candidates]
        out.changed = _compare(a, b, keys, a_ids, b_ids)
        out.rows = {k: (ra, rb) for k, ra, rb in zip(keys, a_ids, b_ids, strict=True) if k in out.changed}
    return out


def with_values(a: Snapshot, b: Snapshot, d: Diff, page: dict[str, Any], max_chars: int = 1000) -> dict[str, Any]:
    """The page's changed rows with their old and new values, ``{"values": {column: {"from", "to"}}}``,
    for the changed columns a person reads (not vectors or image bytes: ``sha256`` stands for those);
    a value longer than ``max_chars`` as JSON is left out (the column is still named)."""
    items = page["changed"]
    if not items:
        return page
    readable = [c for c in dict.fromkeys(c for item in items for c in item["columns"])
                if c not in d.vectors and c != "id"]
    before = _values(a, [d.rows[i["id"]][0] for i in items], readable)
    after = _values(b, [d.rows[i["id"]][1] for i in items], readable)
    missing = [None] * len(items)  # a column one side lacks reads as null there
    for n, item in enumerate(items):
        values = {}
        for c in item["columns"]:
            if c in readable:
                old, new = before.get(c, missing)[n], after.get(c, missing)[n]
                if len(json.dumps([old, new], default=str)) <= max_chars:
                    values[c] = {"from": old, "to": new}
        item["values"] = values
    return page


def _values(snap: Snapshot, row_ids: list[int], columns: list[str]) -> dict[str, list[Any]]:
    """Columns of the rows with these row ids, as Python values (a column the snapshot lacks: absent)."""
    present = [c for c in columns if c in snap.schema.names and not is_blob(snap.schema.field(c))]
    if not present:
        return {}
    table = snap.take(row_ids, present)
    return {c: table.column(c).to_pylist() for c in present}


def _shared_history(a: Snapshot, b: Snapshot) -> int | None:
    """The newest version whose rows both snapshots inherit alike; None when both are on one branch."""
    if a.branch == b.branch:
        return None
    branches = (a if a.branch is not None else b).branches()
    chain_a, chain_b = _ancestry(branches, a.branch, a.version), _ancestry(branches, b.branch, b.version)
    return max((min(chain_a[c], chain_b[c]) for c in chain_a.keys() & chain_b.keys()), default=0)


def _ancestry(branches: dict[str, Any], branch: str | None, version: int) -> dict[str | None, int]:
    """Every branch whose history a snapshot includes (None = main), with the newest version included."""
    chain: dict[str | None, int] = {}
    while branch is not None:
        chain[branch] = version
        info = branches.get(branch)
        if info is None:  # a branch that is gone: nothing further is known to be shared
            return chain
        branch, version = info.get("parent_branch"), min(version, int(info["parent_version"]))
    chain[None] = version
    return chain


def _lineage(snap: Snapshot) -> pa.Table:
    if "id" not in snap.schema.names:
        raise BadRequest("diff needs an 'id' column to match rows")
    return snap.lineage()


def _eq(x: pa.ChunkedArray, y: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(pc.equal(x, y), False).to_numpy(zero_copy_only=False)


def _compare(a: Snapshot, b: Snapshot, ids: list[str], a_rows: list[int], b_rows: list[int],
             chunk: int = 4096) -> dict[str, list[str]]:
    """Column-by-column comparison of rows present on both sides; returns only those that differ.

    A column only one side has reads as null on the other, so it counts where a row holds a value
    in it (a new column changes the rows given one, not every row)."""
    a_cols, b_cols = compared_columns(a.schema), compared_columns(b.schema)
    shared = [c for c in a_cols if c in b_cols]
    only_a = [c for c in a_cols if c not in b_cols]
    only_b = [c for c in b_cols if c not in a_cols]
    changed: dict[str, list[str]] = {}
    for start in range(0, len(ids), chunk):
        part = slice(start, start + chunk)
        ta = a.take(a_rows[part], shared + only_a)
        tb = b.take(b_rows[part], shared + only_b)
        diffs = {c: column_diff(ta.column(c), tb.column(c)) for c in shared if c != "id"}
        diffs.update({c: has_value(ta.column(c)) for c in only_a})
        diffs.update({c: has_value(tb.column(c)) for c in only_b})
        for i, key in enumerate(ids[part]):
            columns = [c for c, mask in diffs.items() if mask[i]]
            if columns:
                changed[key] = columns
    return changed
