"""Ingest and embedding spread over a Ray cluster, each committed as one version.

Ingest: the driver lists the sources and cuts the listing into shards; each Ray task reads its
files and builds their rows with the very code every other ingest runs (``ingest.walk``: ids,
metadata, labels; ``app.services.uploads.rows``: probe, hash, dedup, embed), so the rows are the
same, and writes them as Lance fragments. The driver then commits every shard's fragments as one
version with the run's message and author (``app.store.staging.publish``, the upload sessions'
commit), and tags it.

Ids stay unique the way an upload session keeps them: each shard skips ids the table already has
and repeats within itself; an id that an earlier shard also wrote (two sources naming the same
path, ``--id name`` or ``sha256`` across shards) is resolved in listing order by running the later
shard again with the earlier shards' ids excluded, so its repeats are reported as ``duplicate_id``
skips exactly as a local run reports them. Its first fragments are never committed.

Nothing is visible before the driver's commit: a run killed earlier leaves the table at its
previous version; the fragments already written are unreferenced files that ``optimize`` removes
once they are older than the retention period (Lance's cleanup).

Ray is an optional extra (``pip install 'lightbox[ray]'``) and is imported only here, lazily. It runs
on a data root (``--uri``); the other ingest options it does not take (a branch, upserts,
``--commit-every``) are refused.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from app.services.embed import EmbedJob, embed_fragment, embed_props, finish_embed, plan_embed
from app.services.uploads.options import UploadOptions
from app.services.uploads.plan import VectorSpec, check_table, plan_rows, table_vectors
from app.services.uploads.rows import Seen, process
from app.services.writes import check_tag_free
from app.store import Store
from app.store.fragments import (
    staged_from_json,
    storage_version,
    write_fragments,
)
from app.store.staging import publish, stored_values
from app.store.writes import check_tag_name, default_author, tag_version
from embeddings.registry import Registry
from ingest.report import IngestReport, Skip
from ingest.sources import Item
from ingest.upload import IngestOptions, fewer_gc_passes
from ingest.walk import IngestError, Walker, check_sources

# BLAS/OpenMP pools sized to the whole machine in every worker would oversubscribe the cores.
THREAD_CAPS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SHARD_FILES = (256, 20_000)  # a shard holds between these many files; about 4 shards per CPU
# Test hook: when set to a path, the driver creates that file once every fragment is written and
# waits before committing until the file is gone, so a test can act in the one window that matters.
PAUSE_ENV = "LIGHTBOX_RAY_PAUSE_BEFORE_COMMIT"


@dataclass
class ShardSpec:
    """What every shard task needs besides its files (shipped once through the object store)."""

    table: str
    uri: str
    storage_options: dict[str, str] | None
    data_storage_version: str
    walker: Walker  # the run's schema, metadata and id rule, without its sources
    schema: pa.Schema  # the rows as written
    extras: list[pa.Field]
    vectors: list[tuple[pa.Field, str, str]]  # (column, model, source): the model is loaded in the worker
    options: UploadOptions
    now: datetime
    new_columns: bool = False  # the schema adds columns to the table (written with fresh field ids)


@dataclass
class ShardResult:
    fragments: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    digests: set[str] = field(default_factory=set)
    skipped: list[Skip] = field(default_factory=list)
    missing_metadata: list[str] = field(default_factory=list)
    used_metadata: set[int | None] = field(default_factory=set)  # metadata rows matched
    added: int = 0
    bytes: int = 0


def cap_threads() -> None:
    """One thread per numeric library in a worker: Ray gives each task one CPU."""
    os.environ.update(THREAD_CAPS)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` ($RAY_ADDRESS, or a new local one when None); True if this
    call started Ray (the caller then shuts it down)."""
    try:
        import ray
    except ImportError as exc:
        raise IngestError("--engine ray needs Ray: pip install 'lightbox[ray]'") from exc
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": THREAD_CAPS})
    return True


def run_ray_ingest(store: Store, opts: IngestOptions, address: str | None = None,
                   shard_files: int | None = None) -> IngestReport:
    """An ingest run on a Ray cluster: the same rows and report as any other, one version. ``shard_files``
    fixes the files per task (default: about four shards per CPU, within ``SHARD_FILES``)."""
    refused = [name for name, on in (("--branch", opts.branch), ("--mode upsert", opts.mode == "upsert"),
                                     ("--commit-every", opts.commit_every)) if on]
    if refused:
        raise IngestError(f"--engine ray does not take {', '.join(refused)}; use the local engine")
    check_sources(opts.sources, opts.metadata, opts.key)
    started = connect(address)
    import ray

    try:
        with fewer_gc_passes():
            return _run(ray, store, opts, shard_files)
    finally:
        if started:
            ray.shutdown()


def _run(ray: Any, store: Store, opts: IngestOptions, shard_files: int | None) -> IngestReport:
    began = time.perf_counter()
    report = IngestReport(table=opts.table)
    read = store.head(opts.table, fresh=True) if store.exists(opts.table) else None
    report.previous_version = read.version if read is not None else None
    options = UploadOptions(dedup=opts.dedup, embed=opts.embed, embed_text=opts.embed_text, message=opts.message,
                            author=opts.author, verify=opts.verify, **({"max_pixels": opts.max_pixels}
                                                                       if opts.max_pixels else {}))
    options.check()
    if opts.tag:
        check_tag_name(opts.tag)
        if read is not None:
            check_tag_free(store, opts.table, opts.tag, None)
    check_table(opts.table, read)
    from app.store.schema import describe_schema

    walker = Walker(opts.sources, metadata=opts.metadata, key=opts.key, labels_from_dirs=opts.labels_from_dirs,
                    id_mode=opts.id_mode, columns=describe_schema(read.schema) if read is not None else None,
                    workers=1, max_file_bytes=opts.max_file_bytes)
    registry = Registry()
    plan = plan_rows(opts.table, read, walker.schema, table_vectors(opts.table, read, options, registry), options,
                     registry)
    known = stored_values(read, "id")  # the very version the commit is made on
    digests = stored_values(read, "sha256") if opts.dedup == "content" else set()
    items = [item for s in walker.sources for item in s.items()]
    spec = ShardSpec(
        table=opts.table, uri=store.table_uri(opts.table), storage_options=store.storage_options,
        data_storage_version=storage_version(store, opts.table), walker=Walker.of_items([], walker),
        schema=plan.schema, extras=plan.extras, vectors=[(v.field, v.embedder.name, v.source) for v in plan.vectors],
        options=options, now=datetime.now(UTC), new_columns=plan.new_columns)
    shards = _shards(items, int(ray.cluster_resources().get("CPU", 1)), shard_files)
    task = ray.remote(num_cpus=1, max_retries=2)(ingest_shard)
    spec_ref, known_ref, digests_ref = ray.put(spec), ray.put(known), ray.put(digests)
    pending = [task.remote(spec_ref, pack(shard), known_ref, digests_ref) for shard in shards]
    results = _resolve_duplicates(ray, task, spec_ref, shards, pending, known, digests, opts.dedup == "content")
    for r in results:
        report.skipped.extend(r.skipped)
        report.missing_metadata.extend(r.missing_metadata)
        report.added += r.added
        report.bytes += r.bytes
        if walker.metadata is not None:
            walker.metadata.used_rows |= r.used_metadata
    _pause_before_commit()
    fragments = staged_from_json(f for r in results for f in r.fragments)
    props = {"author": opts.author or default_author(), "lightbox:engine": "ray",
             **({"__lance_commit_message": opts.message} if opts.message else {})}
    version, _ = publish(store, opts.table, branch=None, read=read, schema=plan.schema, fragments=fragments,
                         new_columns=plan.new_columns, inserted=set().union(*(r.ids for r in results)),
                         replaced=set(), delete_ids=None, props=props)
    if version is not None:
        report.version = version
        report.versions.append(version)
    if opts.tag and store.exists(opts.table):
        tag_version(store, opts.table, opts.tag)
        report.tag = opts.tag
    if walker.metadata is not None:
        report.unmatched_metadata = walker.metadata.unmatched()
        report.duplicate_metadata_keys = walker.metadata.duplicates
    report.seconds = time.perf_counter() - began
    return report


def _shards(items: list[Item], cpus: int, size: int | None = None) -> list[list[Item]]:
    if not items:
        return []
    if size is None:
        size = max(SHARD_FILES[0], min(SHARD_FILES[1], math.ceil(len(items) / (4 * max(1, cpus)))))
    size = max(1, size)
    return [items[i:i + size] for i in range(0, len(items), size)]


def _resolve_duplicates(ray: Any, task: Any, spec_ref: Any, shards: list[list[Item]], pending: list[Any],
                        known: set[str], digests: set[str], by_content: bool) -> list[ShardResult]:
    """Shard results in listing order, with no id (or content, under ``--dedup content``) written by
    two shards: a shard repeating an earlier shard's id runs again with those ids excluded."""
    seen_ids: set[str] = set()
    seen_digests: set[str] = set()
    results = []
    for shard, ref in zip(shards, pending, strict=True):
        result: ShardResult = ray.get(ref)
        if result.ids & seen_ids or (by_content and result.digests & seen_digests):
            result = ray.get(task.remote(spec_ref, pack(shard), known | seen_ids, digests | seen_digests))
        seen_ids |= result.ids
        seen_digests |= result.digests
        results.append(result)
    return results


def _pause_before_commit() -> None:
    """The test hook: create the marker file, then wait (up to 60 s) until the test removes it."""
    marker = os.environ.get(PAUSE_ENV)
    if marker:
        with open(marker, "w") as out:
            out.write(str(os.getpid()))
        deadline = time.monotonic() + 60
        while os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.05)


def pack(items: list[Item]) -> tuple[list[Any], ...]:
    """A shard's items as columns of plain values: pickled 10x faster than ``Item`` objects (on 100k
    small files, the objects' round trip cost as much as reading the files)."""
    return ([i.rel for i in items], [i.source for i in items], [i.path for i in items], [i.data for i in items],
            [i.label for i in items], [i.extra or None for i in items])


def unpack(columns: tuple[list[Any], ...]) -> list[Item]:
    return [Item(rel, source, path, data, label, extra or {}) for rel, source, path, data, label, extra in
            zip(*columns, strict=True)]


def ingest_shard(spec: ShardSpec, packed: tuple[list[Any], ...], known: set[str], digests: set[str]) -> ShardResult:
    """One shard, in a Ray worker: read, check and embed its files as every ingest does, then write them as
    uncommitted fragments."""
    with fewer_gc_passes():  # as in a local run: the collector's default thresholds cost 10-30%
        return _ingest_shard(spec, unpack(packed), known, digests)


def _ingest_shard(spec: ShardSpec, items: list[Item], known: set[str], digests: set[str]) -> ShardResult:
    from app.services.uploads.plan import Plan

    cap_threads()
    registry = Registry()
    vectors = [VectorSpec(f, registry.get(model), source) for f, model, source in spec.vectors]
    cap_threads()  # again: loading a model may have imported torch
    walker = Walker.of_items(items, spec.walker)
    if walker.metadata is not None:
        walker.metadata = walker.metadata.fresh()
    plan = Plan(spec.schema, spec.extras, vectors, spec.new_columns)
    seen = Seen(known=set(known), digests=set(digests) if spec.options.dedup == "content" else None)
    result = ShardResult()
    written_digests: list[str] = []

    def batches() -> Any:
        for batch in walker.batches():
            result.skipped.extend(skip for _, skip in batch.skipped)
            out = process(spec.table, pa.Table.from_batches([batch.rows]), plan, seen, spec.options, None, spec.now)
            dropped = {s["row"] for s in out.skipped}
            result.skipped.extend(Skip(s["file"], s["reason"], s["message"]) for s in out.skipped)
            ids = batch.rows.column("id")
            result.missing_metadata.extend(ids[i].as_py() for i in batch.unmatched if i not in dropped)
            result.added += len(out.inserted)
            result.bytes += out.bytes
            if out.batch is not None:
                written_digests.extend(out.batch.column("sha256").to_pylist())
                yield out.batch

    result.fragments = write_fragments(spec.uri, spec.schema, batches(), storage_options=spec.storage_options,
                                       data_storage_version=spec.data_storage_version, new_columns=spec.new_columns)
    result.ids = seen.ids
    result.digests = set(written_digests)
    result.used_metadata = walker.metadata.used_rows if walker.metadata is not None else set()
    return result




# -- embedding ------------------------------------------------------------------------------------


def run_ray_embed(store: Store, name: str, model: str, *, source: str = "image", column: str | None = None,
                  message: str | None = None, author: str | None = None, address: str | None = None,
                  batch_size: int = 256) -> dict[str, Any]:
    """``embed_table`` on a Ray cluster: one task per fragment runs the local engine's ``embed_fragment``
    (a new column is written beside each fragment by its task; an existing one is returned as vectors),
    and the driver commits them as the local engine does (``finish_embed``): one version, logged as
    ``embed`` with its author and message."""
    embedder = Registry().get(model)
    job, fids = plan_embed(store, name, embedder, source=source, column=column, batch_size=batch_size)
    started = connect(address)
    import ray

    try:
        task = ray.remote(num_cpus=1, max_retries=2)(embed_fragment_task)
        job_ref = ray.put(job)
        outs = ray.get([task.remote(job_ref, fid) for fid in fids])
    finally:
        if started:
            ray.shutdown()
    return finish_embed(store, job, outs, embed_props(job, message, author, **{"lightbox:engine": "ray"}))


def embed_fragment_task(job: EmbedJob, fragment_id: int) -> dict[str, Any]:
    """``embed_fragment`` in a Ray worker, with the model loaded there and its threads capped."""
    cap_threads()
    embedder = Registry().get(job.model)
    cap_threads()
    return embed_fragment(job, fragment_id, embedder)
