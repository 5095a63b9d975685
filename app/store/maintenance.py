"""Indexes and housekeeping: Lance's own indexes, compaction and version retention.

Tagged versions are never pruned: cleanup runs with ``error_if_tagged_old_versions=False``, so a
tagged old version neither blocks the cleanup nor makes ``optimize`` fail (the lancedb wrappers
raise in that case and silently skip index maintenance).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from app.errors import BadRequest, Conflict, IndexNotFound, InvalidName
from app.store.catalog import Store, check_name
from app.store.commits import conflict_of, default_author, lost_race, retry_commit, write_turn
from app.store.keywords import FTS_TYPES, TOKENIZER_OPTIONS, build_text_index, is_text
from app.store.notes import write_note
from app.store.schema import is_blob, is_vector
from app.store.vectors import LANCE_METRICS, VECTOR_TYPES
from app.store.writes import CLONE_TAG_PREFIX

PQ_BITS = (4, 8)
SCALAR_TYPES = {"BTREE", "BITMAP", "LABEL_LIST", "FTS", "INVERTED", "NGRAM", "ZONEMAP", "BLOOMFILTER"}


def create_index(store: Store, name: str, column: str, index_type: str, params: dict[str, Any]) -> dict[str, Any]:
    """Build a Lance index on the latest version (one new version); returns its description."""
    ds = store.fresh(name)
    kind = index_type.upper()
    if column not in ds.schema.names:
        raise BadRequest(f"unknown column {column!r}", column=column)
    index_name = params.get("name") or default_index_name(column, kind)
    try:
        with store.build_turn:  # never beside another build (the index keeper's) in this process
            _build(ds, column, kind, index_name, params)
    except (TypeError, OverflowError) as exc:  # the column's type or a parameter does not fit the index
        raise BadRequest(f"cannot build {kind} on {column!r}: {exc}", column=column) from exc
    except (ValueError, OSError) as exc:
        if conflict_of(exc):
            raise lost_race(name, f"building {kind} on {column!r}", exc) from exc
        if isinstance(exc, ValueError):  # Lance refused the parameters
            raise BadRequest(f"cannot build {kind} on {column!r}: {exc}", column=column) from exc
        raise Conflict(f"cannot build {kind} on {column!r}: {exc}") from exc
    store.invalidate(name)
    latest = store.latest(name)
    return {"name": index_name, "type": kind, "column": column, "version": latest.version}


def default_index_name(column: str, kind: str) -> str:
    """``<column>_idx``, or ``<column>_fts`` for a full-text index (so ``id`` can have both a BTREE and one)."""
    return f"{column}_fts" if kind.upper() in FTS_TYPES else f"{column}_idx"


def drop_index(store: Store, name: str, index_name: str) -> dict[str, Any]:
    """Drop an index from main's latest version (one new version); older versions keep theirs."""
    with store.build_turn:
        ds = store.fresh(name)
        names = sorted(i["name"] for i in ds.list_indices())
        if index_name not in names:
            raise IndexNotFound(f"no index named {index_name!r}; indexes: {names}", index=index_name)
        retry_commit(lambda: store.fresh(name).drop_index(index_name), table=name, what="drop index")
    store.invalidate(name)
    return {"name": index_name, "dropped": True, "version": store.latest(name).version}


def _build(ds: Any, column: str, kind: str, index_name: str, params: dict[str, Any]) -> None:
    field = ds.schema.field(column)
    if kind in FTS_TYPES:
        if not is_text(field):
            texts = [f.name for f in ds.schema if is_text(f)]
            raise BadRequest(f"a full-text index holds text; {column!r} is {field.type}. Text columns: {texts}",
                             column=column, text_columns=texts)
        build_text_index(ds, column, index_name, params)
        return
    given = [k for k in TOKENIZER_OPTIONS if params.get(k) is not None]
    if given:
        raise BadRequest(f"{given} apply to full-text (FTS) indexes, not {kind}", options=given)
    if kind in VECTOR_TYPES:
        if not is_vector(field):
            raise BadRequest(f"{kind} needs a vector column; {column!r} is {field.type}")
        metric = LANCE_METRICS.get(str(params.get("metric") or _recorded_metric(field)).lower(), "L2")
        options = {k: params[k] for k in ("num_partitions", "num_sub_vectors", "num_bits") if params.get(k)}
        _check_bits(kind, options.get("num_bits"))
        ds.create_index(column, kind, name=index_name, metric=metric, replace=True, **options)
    elif kind in SCALAR_TYPES:
        if is_vector(field):
            raise BadRequest(f"{kind} is a scalar index; use a vector index type for {column!r}")
        if is_blob(field):
            raise BadRequest(f"{column!r} holds image bytes, which cannot be indexed; index a metadata "
                             "or vector column", column=column)
        ds.create_scalar_index(column, kind, name=index_name, replace=True)
    else:
        raise BadRequest(f"unknown index type {kind!r}; use one of {sorted(VECTOR_TYPES | SCALAR_TYPES)}")


def _check_bits(kind: str, bits: Any) -> None:
    """Product quantization codes 4 or 8 bits (fewer fail inside the engine, more train 2^bits centroids)."""
    if bits is not None and "PQ" in kind and bits not in PQ_BITS:
        raise BadRequest(f"num_bits for {kind} must be 4 or 8, got {bits!r}", num_bits=bits)


def _recorded_metric(field: Any) -> str:
    return (field.metadata or {}).get(b"lightbox:metric", b"l2").decode()


def optimize(store: Store, name: str, retention: timedelta, *, message: str | None = None,
             author: str | None = None, fold_vectors: bool = True) -> dict[str, Any]:
    """Compact small files, fold new rows into indexes, prune untagged versions older than ``retention``.

    Each version it commits is logged for what it did (a version note: Lance records nothing for
    these commits), with zero row counts: compaction and index upkeep change no row. Lance's
    compaction commits twice, first reserving the new fragments' ids (``compact``, "reserve fragment
    ids"), then rewriting the files (``compact``, "compact data files"); folding new rows into the
    indexes is ``index``."""
    props = {"author": author or default_author(),
             "lightbox:inserted": "0", "lightbox:updated": "0", "lightbox:deleted": "0"}
    # each step plans on a fresh latest, again when a concurrent write preempted it (app.store.commits)
    before = store.fresh(name).version
    compaction = retry_commit(lambda: store.fresh(name).optimize.compact_files(), table=name, what="optimize")
    merged = (f"compact data files ({getattr(compaction, 'fragments_removed', 0)} fragments into "
              f"{getattr(compaction, 'fragments_added', 0)})")
    _note_range(store, name, before, props, message, {"Rewrite": ("compact", merged), None: ("compact", merged)},
                ("compact", "reserve fragment ids for the compaction"))
    ds = store.fresh(name)
    # the service's index keeper folds vector indexes under its own lock (fold_vectors=False); a
    # command-line optimize has no keeper and folds them here
    names = [i["name"] for i in ds.list_indices() if fold_vectors or i["type"] not in VECTOR_TYPES]
    if names:
        before = ds.version
        retry_commit(lambda: store.fresh(name).optimize.optimize_indices(index_names=names), table=name,
                     what="optimize")
        _note_range(store, name, before, props, message, {}, ("index", "fold new rows into indexes"))
    unguarded = unguarded_clones(store, name)
    stats = None
    if not unguarded:
        # under the write turn: the cleanup reads every tag to keep what they name, and a tag deleted while
        # it reads them fails it; tag changes take the turn
        with write_turn(store, name):
            stats = store.fresh(name).cleanup_old_versions(older_than=retention, error_if_tagged_old_versions=False)
    store.invalidate(name)
    store.log.forget(name)
    store.forget_pinned(name)
    out = {
        "version": store.latest(name).version,
        "fragments_removed": getattr(compaction, "fragments_removed", 0),
        "fragments_added": getattr(compaction, "fragments_added", 0),
        "old_versions_removed": getattr(stats, "old_versions", 0),
        "bytes_removed": getattr(stats, "bytes_removed", 0),
    }
    if unguarded:
        out["retention_skipped"] = (f"table(s) {unguarded} read this table's files without a "
                                    f"{CLONE_TAG_PREFIX}<name> tag guarding them; no version was pruned")
    return out


def unguarded_clones(store: Store, name: str) -> list[str]:
    """Tables that read ``name``'s files (zero-copy clones) but have no guard tag on it.

    Lance's cleanup keeps tagged versions and the versions branches fork from, but knows nothing of
    clones: the guard tag ``clone`` leaves is what keeps their files. A clone without one (its guard
    removed outside Lightbox) means pruning could delete files it reads, so retention waits.
    """
    source = _location(store.table_uri(name))
    guarded = {tag.removeprefix(CLONE_TAG_PREFIX) for tag in store.tags(name).list()
               if tag.startswith(CLONE_TAG_PREFIX)}
    through = {_location(store.table_uri(g)) for g in guarded if _valid(g)}
    out = []
    for other in store.names():
        if other == name or other in guarded:
            continue
        try:
            bases = {_location(b.path) for b in store.latest(other).base_paths().values()}
        except (ValueError, OSError):
            continue
        # a clone of a guarded clone reads only files that clone's guard already keeps
        if any(b == source or b.startswith(source + "/") for b in bases) and not bases & through:
            out.append(other)
    return out


def _valid(name: str) -> bool:
    try:
        check_name(name)
    except InvalidName:
        return False
    return True


def _location(uri: str) -> str:
    path = uri.removeprefix("file://")
    return os.path.realpath(path) if "://" not in path else path.rstrip("/")


def _note_range(store: Store, name: str, before: int, props: dict[str, str], message: str | None,
                steps: dict[str | None, tuple[str, str]], default: tuple[str, str]) -> None:
    """Note ``props`` on the versions committed since ``before``, each with the operation and words
    of what it did (``steps``, by Lance's operation name, None when pylance cannot decode it; else
    ``default``), except a concurrent write's, which carries its author. A user's message is kept,
    with what the version did beside it."""
    head = store.fresh(name)
    for version in range(before + 1, head.version + 1):
        pinned = head if version == head.version else head.checkout_version(version)
        try:
            txn = pinned.get_transactions(1)[0]
        except (ValueError, OSError, IndexError, TypeError):  # pylance fails to decode some (RewrittenIndex)
            txn = None
        if txn is not None and "author" in (txn.transaction_properties or {}):
            continue
        operation, words = steps.get(type(txn.operation).__name__ if txn is not None else None, default)
        text = f"{message} ({words})" if message else f"optimize: {words}"
        write_note(store.table_uri(name), pinned, None,
                   {**props, "lightbox:op": operation, "__lance_commit_message": text}, store.storage_options)
