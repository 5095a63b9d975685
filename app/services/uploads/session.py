"""One upload session: begin, add batches, commit them as one version (or abort: nothing is written).

A session reads the table once when it begins (the ids stored, and their bytes' digests under
``dedup=content``) and checks every batch's rows against that and against what it wrote itself.
Accepted rows go to the engine's writer as they come (``streamed``: it writes while the next batch is
checked), one write per span of about one data file's worth (``STAGE_ROWS`` rows or ``stage_bytes``
image bytes) that ends as uncommitted fragments, so memory stays bounded whatever the run's size
and the table gets files of the size a single write would give it. The commit
publishes every fragment in one Lance commit carrying the message, author and counts
(``app.store.staging.publish``: a conflict with another writer is a 409 and nothing is committed),
then tags it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from app.errors import Conflict, LightboxError, NotFound, Unprocessable
from app.services.thumbnails import prerender
from app.services.uploads.options import UploadOptions
from app.services.uploads.plan import Plan, VectorSpec, check_table, given_columns, plan_rows, table_vectors
from app.services.uploads.rows import ROUTINE, WORKERS, Outcome, Seen, check_batch, process
from app.services.uploads.streamed import StreamedWrite
from app.services.writes import check_tag_free
from app.store import Snapshot, Store
from app.store.catalog import check_name
from app.store.staging import (
    Staged,
    drop_record,
    publish,
    remove_files,
    remove_unborn,
    save_record,
    stage,
    staged_files,
    stored_values,
)
from app.store.thumbnails import ThumbnailFiles
from app.store.writes import check_tag_name, create_branch, default_author, tag_version
from embeddings.registry import Registry

STAGE_ROWS = 65_536
STAGE_BYTES = 32 * 1024**2


class UploadNotFound(NotFound):
    code = "upload_not_found"


class UploadClosed(Conflict):
    code = "upload_closed"


class RowsRefused(Unprocessable):
    """A strict write met rows it cannot store: nothing is written."""

    code = "unprocessable"


@dataclass
class Session:
    id: str
    table: str
    opts: UploadOptions
    read: Snapshot | None  # the branch's latest when the session began; None: a new table
    vectors: list[VectorSpec]
    seen: Seen
    ttl: float
    persist: bool
    stage_bytes: int = STAGE_BYTES
    warnings: list[str] = field(default_factory=list)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    plan: Plan | None = None
    fragments: list[Staged] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    pool: ThreadPoolExecutor | None = None  # threads that check large images, for the session's life
    writing: StreamedWrite | None = None  # the span of rows being written now
    ending: StreamedWrite | None = None  # the span before it, whose tail is still being written
    pending_rows: int = 0  # rows and image bytes handed to it
    pending_bytes: int = 0
    replaced: set[str] = field(default_factory=set)
    unchanged: set[str] = field(default_factory=set)  # ids an upsert found as stored (kept, not rewritten)
    counts: Counter[str] = field(default_factory=Counter)  # received, inserted, updated, bytes, skipped:<reason>
    batches: int = 0
    state: str = "open"  # open | committed | aborted | expired | failed
    result: dict[str, Any] | None = None
    expires_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    read_version: int | None = None

    def __post_init__(self) -> None:
        self.read_version = self.read.version if self.read is not None else None

    def release(self) -> None:
        """A finished session is remembered (its state and result) without what it held to check rows."""
        self.read, self.plan, self.vectors = None, None, []
        self.seen = Seen(known=set(), digests=None)
        self.writing, self.ending, self.fragments, self.replaced, self.unchanged = None, None, [], set(), set()
        if self.pool is not None:
            self.pool.shutdown(wait=False)
            self.pool = None

    def threads(self) -> ThreadPoolExecutor:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="lightbox-check")
        return self.pool

    def touch(self) -> None:
        self.expires_at = time.time() + self.ttl

    def describe(self) -> dict[str, Any]:
        """The session's state as ``GET .../uploads/{id}`` shows it."""
        skipped = {k.removeprefix("skipped:"): v for k, v in self.counts.items() if k.startswith("skipped:")}
        return {"upload_id": self.id, "table": self.table, "branch": self.opts.branch, "state": self.state,
                "options": self.opts.public(), "read_version": self.read_version, "batches": self.batches,
                "received": self.counts["received"], "inserted": self.counts["inserted"],
                "updated": self.counts["updated"], "unchanged": skipped.get("unchanged", 0),
                "skipped": sum(skipped.values()), "skipped_by_reason": skipped, "bytes": self.counts["bytes"],
                "expires_at": datetime.fromtimestamp(self.expires_at, UTC).isoformat(), "result": self.result}

    def check_open(self) -> None:
        if self.state == "committed":
            version = (self.result or {}).get("version")
            raise UploadClosed(f"upload {self.id} was committed (version {version}); begin a new one",
                               upload_id=self.id, state=self.state, version=version)
        if self.state != "open":
            raise UploadClosed(f"upload {self.id} is {self.state}; nothing of it was written; begin a new one",
                               upload_id=self.id, state=self.state)


def begin(store: Store, registry: Registry, table: str, opts: UploadOptions, *, ttl: float,
          persist: bool = True, stage_bytes: int = STAGE_BYTES) -> Session:
    """A new session on ``table`` (created by the commit when it does not exist), its branch created from
    main's latest when new; refused before anything is read when its options cannot work."""
    check_name(table)
    exists = store.exists(table)
    warnings = []
    if opts.branch:
        if not exists:
            raise Unprocessable(f"table {table!r} does not exist yet, so it has no branches: upload to main first",
                                table=table)
        if opts.branch not in store.branches(table).list():
            from app.store import Ref

            created = create_branch(store, table, opts.branch, Ref())
            warnings.append(f"created branch {opts.branch!r} from version {created['parent_version']} of main")
    read = store.head(table, opts.branch, fresh=True) if exists else None
    check_table(table, read)
    if opts.tag and exists:
        check_tag_free(store, table, opts.tag, opts.branch)
    vectors = table_vectors(table, read, opts, registry)
    seen = Seen(known=stored_values(read, "id"),
                digests=stored_values(read, "sha256") if opts.dedup == "content" else None)
    session = Session(uuid.uuid4().hex, table, opts, read, vectors, seen, ttl, persist, stage_bytes, warnings)
    session.touch()
    _save(store, session)
    return session


def add(store: Store, registry: Registry, session: Session, rows: pa.Table) -> dict[str, Any]:
    """Check and stage one batch; its report lists every row skipped, with its reason."""
    check_batch(rows)
    with session.lock:
        session.check_open()
        session.touch()
        if session.plan is None:
            session.plan = plan_rows(session.table, session.read, rows.schema, session.vectors, session.opts,
                                     registry)
        else:
            _check_columns(session, rows.schema)
        out = process(session.table, rows, session.plan, session.seen, session.opts, session.read, session.now,
                      session.threads() if WORKERS > 1 else None)
        if session.opts.strict:
            _refuse(out)
        _count(session, rows.num_rows, out)
        if out.batch is not None:
            _write(store, session, out.batch, out.bytes)
            if out.thumbnails:  # the gallery's thumbnails of what is written, made now rather than when first viewed
                prerender(ThumbnailFiles(store), session.table, out.thumbnails, out.batch,
                          session.threads() if WORKERS > 1 else None)
        if session.pending_rows >= STAGE_ROWS or session.pending_bytes >= session.stage_bytes:
            _flush(store, session, wait=False)
        session.touch()
        _save(store, session)
        return {"upload_id": session.id, "batch": session.batches, "received": rows.num_rows,
                "accepted": len(out.inserted) + len(out.replaced), "inserted": len(out.inserted),
                "updated": len(out.replaced), "unchanged": out.unchanged, "bytes": out.bytes,
                "skipped": out.skipped}


def commit(store: Store, session: Session, tag: str | None = None) -> dict[str, Any]:
    """Publish every staged row as one version (none when nothing was accepted), then tag it (``tag``, given
    now, or the session's own)."""
    tag = check_tag_name(tag) if tag is not None else session.opts.tag
    with session.lock:
        session.check_open()
        try:
            _flush(store, session)
            schema = session.plan.schema if session.plan is not None else None
            inserted = session.seen.ids - session.replaced
            version, counts = publish(
                store, session.table, branch=session.opts.branch, read=session.read, schema=schema,  # type: ignore[arg-type]
                fragments=session.fragments, new_columns=bool(session.plan and session.plan.new_columns),
                inserted=inserted, replaced=session.replaced, delete_ids=session.opts.delete_ids,
                props=_props(session.opts), kept=session.unchanged)
        except BaseException as exc:
            _close(store, session, "failed", error=exc)
            raise
        session.state = "committed"
        if session.persist and session.files:
            drop_record(store, session.table, session.id)
        tagged = _tag(store, session, tag) if tag and store.exists(session.table) else None
        session.result = {**_summary(session), "version": version, "tag": tagged, "deleted": counts.get("deleted", 0),
                          "previous_version": session.read_version, "warnings": session.warnings}
        session.release()
        return session.describe()


def abort(store: Store, session: Session, state: str = "aborted") -> dict[str, Any]:
    """Drop a session: its staged files are removed, nothing is committed."""
    with session.lock:
        if session.state == "open":
            _close(store, session, state)
        return session.describe()


def _close(store: Store, session: Session, state: str, error: BaseException | None = None) -> None:
    session.state = state
    for writing in (session.ending, session.writing):
        if writing is not None:
            session.files.extend(staged_files(store, session.table, session.opts.branch, writing.cancel()))
    session.ending = session.writing = None
    remove_files(store, session.files)
    if session.persist and session.files:
        drop_record(store, session.table, session.id)
    if session.read is None and session.files:
        remove_unborn(store, session.table)
    if error is not None:
        message = error.message if isinstance(error, LightboxError) else f"{type(error).__name__}"
        session.result = {**_summary(session), "version": None, "error": message}
    session.release()


def _write(store: Store, session: Session, batch: pa.RecordBatch, nbytes: int) -> None:
    """Hand accepted rows to the span being written (begun with the span's first batch)."""
    if session.writing is None:
        plan, read, table = session.plan, session.read, session.table
        assert plan is not None
        session.writing = StreamedWrite(lambda batches: stage(store, table, read, plan.schema, batches,
                                                              new_columns=plan.new_columns))
    session.writing.put(batch)
    session.pending_rows += batch.num_rows
    session.pending_bytes += nbytes


def _flush(store: Store, session: Session, wait: bool = True) -> None:
    """End the span being written: its fragments' files are recorded first-thing, so they can be removed.
    ``wait=False`` (a span full in the middle of an upload): the engine writes the span's tail while the next
    span begins, instead of the batch waiting for it; its fragments are recorded when the next span ends, or
    at the commit (one span ends in the background at most, and spans are recorded in order)."""
    if session.ending is not None:
        ending, session.ending = session.ending, None
        _record(store, session, ending.finish())
    if session.writing is None:
        return
    writing, session.writing, session.pending_rows, session.pending_bytes = session.writing, None, 0, 0
    if wait:
        _record(store, session, writing.finish())
    else:
        session.ending = writing


def _record(store: Store, session: Session, fragments: list[Staged]) -> None:
    session.fragments.extend(fragments)
    session.files.extend(staged_files(store, session.table, session.opts.branch, fragments))
    _save(store, session)


def _save(store: Store, session: Session) -> None:
    """The record a janitor needs to remove what the session staged, should its process go away (written
    once there is something staged)."""
    if session.persist and session.files:
        save_record(store, session.table, session.id, {"upload_id": session.id, "table": session.table,
                                                       "branch": session.opts.branch, "expires_at": session.expires_at,
                                                       "files": session.files})


def _check_columns(session: Session, schema: pa.Schema) -> None:
    assert session.plan is not None
    known = {f.name for f in session.plan.extras} | {v.field.name for v in session.plan.vectors} | set(
        session.plan.schema.names)
    new = [n for n in given_columns(schema) if n not in known]
    if new:
        raise Unprocessable(f"this batch brings column(s) {new} that the upload's first batch did not; every batch "
                            f"of an upload carries the same columns ({[f.name for f in session.plan.extras]})",
                            columns=new)


def _refuse(out: Outcome) -> None:
    refused = [s for s in out.skipped if s["reason"] not in ROUTINE]
    if refused:
        first = refused[0]
        raise RowsRefused(f"{len(refused)} row(s) refused, nothing written; first: {first['file']}: "
                          f"{first['reason']} ({first['message']})",
                          refused=[{k: s[k] for k in ("file", "reason", "message")} for s in refused])


def _count(session: Session, received: int, out: Outcome) -> None:
    session.batches += 1
    session.counts.update({"received": received, "inserted": len(out.inserted), "updated": len(out.replaced),
                           "bytes": out.bytes})
    session.counts.update(f"skipped:{s['reason']}" for s in out.skipped)
    session.replaced.update(out.replaced)
    session.unchanged.update(out.unchanged_ids)


def _summary(session: Session) -> dict[str, Any]:
    described = session.describe()
    return {k: described[k] for k in ("inserted", "updated", "unchanged", "skipped", "skipped_by_reason", "bytes")}


def _props(opts: UploadOptions) -> dict[str, str]:
    props = {"author": opts.author or default_author()}
    if opts.message:
        props["__lance_commit_message"] = opts.message
    return props


def _tag(store: Store, session: Session, tag: str) -> str | None:
    """Tag the branch's latest (the new version, or the table as it is when nothing was new)."""
    try:
        tag_version(store, session.table, tag, branch=session.opts.branch)
    except Conflict as exc:  # the tag names an older version, and this upload added a new one
        session.warnings.append(f"{exc.message}; the new version is not tagged")
        return None
    return tag
