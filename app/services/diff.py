"""Diff between any two refs: added, removed and changed ids, and which columns changed.

Lance's stable row ids and each row's ``_row_last_updated_at_version`` tell which rows cannot have
changed between two snapshots of one lineage (same row id, same last update), so only the rest
are compared, column by column (image bytes by ``sha256``, vectors element-wise). Snapshots of
different lineages (a merge copies rows, a clone re-ingests) still diff correctly: their rows are
simply all compared.

Branches number their versions on from their fork, so main's version 7 and a branch's version 7
are different commits: across branches, a matching (row id, last update) proves nothing unless
that update is no newer than the history both snapshots share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.errors import BadRequest
from app.store import Ref, Snapshot, Store
from app.store.schema import is_blob, is_vector

LINEAGE = ["id", "_row_last_updated_at_version"]


@dataclass
class Diff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # id -> changed column names

    def page(self, limit: int, offset: int) -> dict[str, Any]:
        """Counts in full; id lists cut to one page (the same offset applies to each list)."""
        changed_ids = sorted(self.changed)
        end = offset + limit
        more = end < max(len(self.added), len(self.removed), len(changed_ids))
        return {
            "counts": {"added": len(self.added), "removed": len(self.removed), "changed": len(changed_ids)},
            "added": self.added[offset:end],
            "removed": self.removed[offset:end],
            "changed": [{"id": i, "columns": self.changed[i]} for i in changed_ids[offset:end]],
            "next_cursor": str(end) if more else None,
        }


def parse_ref_text(store: Store, name: str, text: str) -> Ref:
    """A ref written as text: a version number, a tag, a branch (or ``main``), or an RFC 3339 time."""
    text = text.strip()
    if text.isdigit():
        return Ref.parse(version=text)
    if text in ("main", "latest", "HEAD"):
        return Ref()
    head = store.latest(name)
    if text in head.tags.list():
        return Ref.parse(tag=text)
    if text in head.branches.list():
        return Ref.parse(branch=text)
    if text[:4].isdigit() and "-" in text:
        return Ref.parse(as_of=text)
    raise BadRequest(f"{text!r} is not a version, tag, branch or timestamp of table {name!r}", ref=text)


def diff(a: Snapshot, b: Snapshot) -> Diff:
    """What changed from ``a`` to ``b``."""
    left = _lineage(a.ds).rename_columns(["id", "upd_a", "rid_a"])
    right = _lineage(b.ds).rename_columns(["id", "upd_b", "rid_b"])
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
    if len(candidates):
        a_ids = rid_a.take(pa.array(candidates)).to_pylist()
        b_ids = rid_b.take(pa.array(candidates)).to_pylist()
        out.changed = _compare(a, b, [ids[i] for i in candidates], a_ids, b_ids)
    return out


def _shared_history(a: Snapshot, b: Snapshot) -> int | None:
    """The newest version whose rows both snapshots inherit alike; None when both are on one branch."""
    if a.branch == b.branch:
        return None
    branches = (a.ds if a.branch is not None else b.ds).branches.list()
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


def _lineage(ds: Any) -> pa.Table:
    if "id" not in ds.schema.names:
        raise BadRequest("diff needs an 'id' column to match rows")
    return ds.to_table(columns=LINEAGE, with_row_id=True).combine_chunks()


def _eq(x: pa.ChunkedArray, y: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(pc.equal(x, y), False).to_numpy(zero_copy_only=False)


def _compare(a: Snapshot, b: Snapshot, ids: list[str], a_rows: list[int], b_rows: list[int],
             chunk: int = 4096) -> dict[str, list[str]]:
    """Column-by-column comparison of rows present on both sides; returns only those that differ."""
    a_cols = [f.name for f in a.ds.schema if not is_blob(f)]
    b_cols = [f.name for f in b.ds.schema if not is_blob(f)]
    shared = [c for c in a_cols if c in b_cols and c not in ("ingested_at",)]
    only = [c for c in a_cols + b_cols if c not in shared and c != "ingested_at"]
    changed: dict[str, list[str]] = {}
    for start in range(0, len(ids), chunk):
        part = slice(start, start + chunk)
        ta = a.ds._take_rows(a_rows[part], columns=shared)
        tb = b.ds._take_rows(b_rows[part], columns=shared)
        diffs = {c: _column_diff(ta.column(c), tb.column(c)) for c in shared if c != "id"}
        for i, key in enumerate(ids[part]):
            columns = [c for c, mask in diffs.items() if mask[i]] + only
            if columns:
                changed[key] = columns
    return changed


def _column_diff(x: pa.ChunkedArray, y: pa.ChunkedArray) -> np.ndarray:
    """True where two aligned columns differ (nulls equal to nulls)."""
    x, y = x.combine_chunks(), y.combine_chunks()
    nx = np.asarray(x.is_null())
    ny = np.asarray(y.is_null())
    if pa.types.is_fixed_size_list(x.type) and x.type == y.type:
        values = ~np.all(_matrix(x) == _matrix(y), axis=1)
    elif is_vector_type(x.type) or pa.types.is_nested(x.type) or x.type != y.type:
        values = np.array([u != v for u, v in zip(x.to_pylist(), y.to_pylist(), strict=True)], bool)
    else:
        values = ~pc.fill_null(pc.equal(x, y), False).to_numpy(zero_copy_only=False)
    return (nx != ny) | (~nx & ~ny & values)


def _matrix(arr: pa.FixedSizeListArray) -> np.ndarray:
    """Every slot of a fixed-size list array as rows (null slots included, so rows stay aligned)."""
    dim = arr.type.list_size
    flat = arr.values.to_numpy(zero_copy_only=False)
    return flat[arr.offset * dim : (arr.offset + len(arr)) * dim].reshape(len(arr), dim)


def is_vector_type(t: pa.DataType) -> bool:
    return is_vector(pa.field("x", t))
