"""One batch of an upload: rows of ``{id, image, source?, metadata...}`` in, the rows to stage out.

Every image is probed and hashed (``ingest.work``, large files on threads); a row is skipped, with
its reason, when its image cannot be stored, its id breaks the id rule, its id is already stored
(insert) or already written by this session, or its bytes are already stored (``dedup=content``). An
upsert leaves a row alone (``unchanged``) when every value it brings equals the stored row's. Vector
columns are filled last, only for the rows that are written. Per-row work is a few set lookups;
columns move as Arrow arrays, never as per-row dicts.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from app.errors import Unprocessable
from app.services import thumbnails
from app.services.uploads.options import MAX_FILE_BYTES, UploadOptions
from app.services.uploads.plan import Plan, VectorSpec
from app.store import Snapshot
from app.store.column_fit import fit_array
from app.store.ids import id_problem, invalid_rows, shown
from app.store.schema import blob_column, is_vector, vector_array
from embeddings.batch import embed_values
from ingest.pool import run_chunks
from ingest.work import Checks, Limits, check_images, single

WORKERS = max(1, min(4, os.cpu_count() or 1))
ROUTINE = frozenset({"duplicate_id", "duplicate_content", "unchanged"})  # a write's own rules, not bad input


@dataclass
class Seen:
    """What a session checks each row against: ids stored when it began, ids and bytes it wrote."""

    known: set[str]
    digests: set[str] | None  # ``dedup=content``: digests stored and written
    ids: set[str] = field(default_factory=set)


@dataclass
class Outcome:
    """One batch's result: the rows to stage and what happened to every row given."""

    batch: pa.RecordBatch | None
    inserted: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {row, file, reason, message}
    bytes: int = 0
    unchanged_ids: list[str] = field(default_factory=list)
    thumbnails: list[tuple[int, bytes]] = field(default_factory=list)  # (row of ``batch``, its image) to render

    @property
    def unchanged(self) -> int:
        return sum(s["reason"] == "unchanged" for s in self.skipped)

    def skip(self, row: int, source: str, reason: str, message: str) -> None:
        self.skipped.append({"row": row, "file": shown_file(source), "reason": reason, "message": message})


def shown_file(source: str | None) -> str:
    """A skipped row's file as reports name it: an upload's file name without the ``upload:`` mark."""
    return str(source or "").removeprefix("upload:")


def process(table: str, rows: pa.Table, plan: Plan, seen: Seen, opts: UploadOptions, read: Snapshot | None,
            now: datetime, pool: Executor | None = None) -> Outcome:
    """Check one batch (large images on ``pool``'s threads) and assemble the rows it stages."""
    ids_column = rows.column("id")
    ids = ids_column.to_pylist()
    bad = set(invalid_rows(ids_column))
    sources = _Sources(rows, ids)
    out = Outcome(None)
    limits = Limits(MAX_FILE_BYTES, opts.max_pixels, opts.verify)  # type: ignore[arg-type]
    checks = check_images(rows.column("image"), limits, pool)
    keep = _all_new(ids, checks, bad, seen, opts)
    if keep is None:
        skips, digests = checks.skips, checks.digests()
        keep = []
        for i, row_id in enumerate(ids):
            if i in skips:
                reason, message = skips[i]
                out.skip(i, sources[i], reason, message)
            elif i in bad:
                out.skip(i, sources[i], "invalid_id", f"id {shown(row_id)} {id_problem(row_id)}")
            elif _admit(i, digests[i], row_id, sources, seen, opts, out):
                keep.append(i)
    if opts.mode == "upsert" and read is not None:
        keep = _drop_unchanged(table, rows, plan, keep, checks, ids, sources, seen, read, out)
    vectors: dict[str, list[Any]] = {}
    if plan.vectors:
        images = _image_values(rows)
        for spec in plan.vectors:
            keep = _embed(spec, rows, images, ids, keep, sources, seen, checks, out, vectors)
    if len(keep) == len(ids) and seen.known.isdisjoint(ids):
        out.inserted = ids
    else:
        for i in keep:
            (out.replaced if ids[i] in seen.known else out.inserted).append(ids[i])
    out.bytes = int(checks.size[keep].sum()) if keep else 0
    out.skipped.sort(key=lambda s: s["row"])
    if keep:
        out.batch = _assemble(table, rows, plan, keep, checks, sources, now, vectors)
        if opts.thumbnails:
            out.thumbnails = _thumbnail_sources(rows, keep, out.batch)
    return out


class _Sources:
    """Each row's source, looked up only for the rows a report names (most batches name none)."""

    def __init__(self, rows: pa.Table, ids: list[str]) -> None:
        self.column = rows.column("source") if "source" in rows.column_names else None
        self.ids = ids
        self._values: list[str] | None = None

    def __getitem__(self, i: int) -> str:
        if self.column is None:
            return f"upload:{self.ids[i]}"
        if self._values is None:
            self._values = self.column.to_pylist()
        return self._values[i]  # type: ignore[return-value]

    def all(self) -> list[str]:
        return [self[i] for i in range(len(self.ids))]


def _all_new(ids: list[str], checks: Checks, bad: set[int], seen: Seen, opts: UploadOptions) -> list[int] | None:
    """Every row of the batch, when each is admitted as new (the common batch of a first ingest: every image
    probed, every id valid, new to the table and to this session, no ``dedup=content``), found with set
    operations instead of ``_admit`` per row; else None, and the rows go one by one."""
    if checks.skips or bad or seen.digests is not None or opts.mode != "insert":
        return None
    batch = set(ids)
    if len(batch) != len(ids) or not batch.isdisjoint(seen.ids) or not batch.isdisjoint(seen.known):
        return None
    seen.ids |= batch
    return list(range(len(ids)))


def _admit(i: int, digest: str | None, row_id: str, sources: _Sources, seen: Seen, opts: UploadOptions,
           out: Outcome) -> bool:
    """Whether a probed row may be written (ids unique, bytes new under ``dedup=content``); it is then
    counted as seen, and un-counted if it is dropped later."""
    stored = row_id in seen.known
    if row_id in seen.ids or (stored and opts.mode == "insert"):
        out.skip(i, sources[i], "duplicate_id", f"id {row_id!r} is already in the table or this run")
        return False
    if seen.digests is not None and not stored:
        if digest in seen.digests:
            out.skip(i, sources[i], "duplicate_content",
                     f"the same bytes (sha256 {(digest or '')[:12]}) are already stored")
            return False
        seen.digests.add(digest or "")
    seen.ids.add(row_id)
    return True


def _forget(i: int, ids: list[str], checks: Checks, seen: Seen) -> None:
    seen.ids.discard(ids[i])
    if seen.digests is not None and ids[i] not in seen.known:
        seen.digests.discard(checks.digests()[i] or "")


def _drop_unchanged(table: str, rows: pa.Table, plan: Plan, keep: list[int], checks: Checks,
                    ids: list[str], sources: _Sources, seen: Seen, read: Snapshot,
                    out: Outcome) -> list[int]:
    """An upsert's rows whose every value equals the stored row's are left alone, as ``unchanged``."""
    stored = [i for i in keep if ids[i] in seen.known]
    if not stored:
        return keep
    compared = _scalars(table, rows, plan, stored, checks, sources)
    same = {i for i, s in zip(stored, read.unchanged_rows(compared), strict=True) if s}
    for i in sorted(same):
        out.skip(i, sources[i], "unchanged", f"row {ids[i]!r} already holds these bytes and values")
        out.unchanged_ids.append(ids[i])
        _forget(i, ids, checks, seen)
    return [i for i in keep if i not in same]


def _embed(spec: VectorSpec, rows: pa.Table, images: list[bytes | None], ids: list[str], keep: list[int],
           sources: _Sources, seen: Seen, checks: Checks, out: Outcome,
           vectors: dict[str, list[Any]]) -> list[int]:
    """One vector column for the kept rows; an image the model cannot decode is skipped."""
    if not spec.from_image:
        texts = rows.column(spec.source).take(pa.array(keep, pa.int64())).to_pylist() if keep else []
        vectors[spec.field.name] = embed_values(spec.embedder, texts, False)
        return keep
    found: list[Any] = []
    for part in run_chunks(lambda chunk: embed_values(spec.embedder, [images[i] for i in chunk], True),
                           iter(keep), WORKERS, lambda _: 0, heavy=True):
        found.extend(part)
    failed = {i for i, v in zip(keep, found, strict=True) if v is None}
    for i in sorted(failed):
        out.skip(i, sources[i], "undecodable",
                 f"the image could not be decoded to embed it with {spec.embedder.name}")
        _forget(i, ids, checks, seen)
    for name in vectors:  # columns filled before this one lose the same rows
        vectors[name] = [v for i, v in zip(keep, vectors[name], strict=True) if i not in failed]
    vectors[spec.field.name] = [v for v in found if v is not None]
    return [i for i, v in zip(keep, found, strict=True) if v is not None]


def _image_values(rows: pa.Table) -> list[bytes | None]:
    column = rows.column("image")
    if pa.types.is_struct(column.type):  # {bytes, path} as Hugging Face writes it
        column = single(column).field("bytes")
    return column.to_pylist()


def _thumbnail_sources(rows: pa.Table, keep: list[int], batch: pa.RecordBatch) -> list[tuple[int, bytes]]:
    """The staged rows whose thumbnails are made now (``thumbnails.wanted``) with their image bytes."""
    wanted = thumbnails.wanted(batch)
    if not wanted:
        return []
    column = single(rows.column("image"))
    if pa.types.is_struct(column.type):
        column = column.field("bytes")
    return list(zip(wanted, column.take(pa.array([keep[i] for i in wanted], pa.int64())).to_pylist(), strict=True))


def _image_column(rows: pa.Table, keep: pa.Array) -> pa.Array:
    column = single(rows.column("image"))
    if pa.types.is_struct(column.type):
        column = column.field("bytes")
    return blob_column(column if len(keep) == len(column) else column.take(keep))


def _given(table: str, rows: pa.Table, plan: Plan, taken: pa.Array, sources: _Sources,
           keep: list[int]) -> dict[str, pa.Array]:
    """The columns the rows bring (id, source, metadata), for the kept rows, in the staged types."""
    whole = len(keep) == rows.num_rows
    out = {"id": single(rows.column("id")).cast(pa.string()),
           "source": single(rows.column("source")).cast(pa.string()) if "source" in rows.column_names
           else pa.array(sources.all(), pa.string())}
    if not whole:
        out = {k: v.take(taken) for k, v in out.items()}
    for f in plan.extras:
        if f.name in rows.column_names:
            column = single(rows.column(f.name))
            out[f.name] = fit_array(table, f, column if whole else column.take(taken))
    return out


def _scalars(table: str, rows: pa.Table, plan: Plan, keep: list[int], checks: Checks,
             sources: _Sources) -> pa.Table:
    """The values an upsert compares with the stored rows: everything but the bytes, the time and vectors."""
    taken = pa.array(keep, pa.int64())
    columns = {**_given(table, rows, plan, taken, sources, keep), **checks.facts(keep)}
    return pa.table({k: v for k, v in columns.items() if not is_vector(plan.schema.field(k))})


def _assemble(table: str, rows: pa.Table, plan: Plan, keep: list[int], checks: Checks,
              sources: _Sources, now: datetime, vectors: dict[str, list[Any]]) -> pa.RecordBatch:
    taken = pa.array(keep, pa.int64())
    columns = {**_given(table, rows, plan, taken, sources, keep), **checks.facts(keep),
               "image": _image_column(rows, taken),
               "ingested_at": pa.array(np.full(len(keep), np.datetime64(now.replace(tzinfo=None), "us")),
                                       pa.timestamp("us", tz="UTC"))}
    for spec in plan.vectors:
        columns[spec.field.name] = vector_array(vectors[spec.field.name], spec.field)
    arrays = [columns[f.name] if f.name in columns else pa.nulls(len(keep), f.type) for f in plan.schema]
    return pa.RecordBatch.from_arrays(arrays, schema=plan.schema)


def check_batch(rows: pa.Table) -> None:
    """A batch must carry ids (text) and image bytes; anything else is the client's mistake (a 422)."""
    from app.store.schema import check_image_bytes

    missing = [c for c in ("id", "image") if c not in rows.column_names]
    if missing:
        raise Unprocessable(f"a batch of images needs the column(s) {missing} (rows of id, image bytes, "
                            "source and metadata columns)", missing=missing)
    check_image_bytes(rows)
    kind = rows.schema.field("id").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise Unprocessable(f"the 'id' column must be strings, not {kind}; ids are never converted", type=str(kind))
    try:
        rows.column("id").validate(full=True)
    except pa.ArrowInvalid as exc:
        raise Unprocessable(f"the 'id' column is not valid UTF-8: {exc}") from exc
