"""The open upload sessions of one service, and the janitor that expires abandoned ones.

Sessions live in the process that began them (the writer: replicas forward every upload request to
it). A session idle for ``ttl`` seconds is abandoned: its staged files are removed and it answers
404 from then on. Each session's record beside its table names its files and when it expires, so
the janitor also removes what a process that died (or was restarted) left staged: it runs when a
session begins or commits (on that table) and once at start-up (on every table). A record whose
expiry has not passed is left alone: another process on the same data root may still be using it.
Finished sessions are remembered for one ``ttl`` more, so a second commit gets a clear 409.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pyarrow as pa

from app.services.uploads import session as sessions
from app.services.uploads.options import UploadOptions
from app.services.uploads.session import Session, UploadNotFound
from app.store import Store
from app.store.staging import drop_record, record_tables, records, remove_files, remove_unborn
from embeddings.registry import Registry

log = logging.getLogger("lightbox")


class Uploads:
    def __init__(self, store: Store, registry: Registry, ttl_seconds: float,
                 max_batch_bytes: int | None = None, stage_bytes: int = sessions.STAGE_BYTES) -> None:
        self.store, self.registry, self.ttl, self.stage_bytes = store, registry, ttl_seconds, stage_bytes
        self.max_batch_bytes = max_batch_bytes  # what a batch's request may carry (the service's upload limit)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def begin(self, table: str, opts: UploadOptions) -> dict[str, Any]:
        self.sweep(table)
        session = sessions.begin(self.store, self.registry, table, opts, ttl=self.ttl, stage_bytes=self.stage_bytes)
        with self._lock:
            self._sessions[session.id] = session
        schema = session.read.schema if session.read is not None else None
        return {**session.describe(), "table_exists": schema is not None, "ttl_seconds": self.ttl,
                "columns": _columns(schema), "embeds": [v.field.name for v in session.vectors],
                "max_batch_bytes": self.max_batch_bytes, "warnings": session.warnings}

    def get(self, table: str, upload_id: str) -> Session:
        """The session, if it is this table's and has not expired; else a 404 saying why."""
        with self._lock:
            session = self._sessions.get(upload_id)
        if session is not None and session.state == "open" and session.expires_at < time.time():
            sessions.abort(self.store, session, "expired")
        if session is None or session.state == "expired":
            raise UploadNotFound(f"no upload {upload_id!r} on table {table!r}: unknown, or abandoned for longer "
                                 f"than {self.ttl:g} s and removed", upload_id=upload_id)
        if session.table != table:
            raise UploadNotFound(f"upload {upload_id!r} belongs to table {session.table!r}, not {table!r}",
                                 upload_id=upload_id, table=session.table)
        return session

    def add(self, table: str, upload_id: str, rows: pa.Table) -> dict[str, Any]:
        return sessions.add(self.store, self.registry, self.get(table, upload_id), rows)

    def commit(self, table: str, upload_id: str, tag: str | None = None) -> dict[str, Any]:
        out = sessions.commit(self.store, self.get(table, upload_id), tag)
        self.sweep(table)
        return out

    def abort(self, table: str, upload_id: str) -> dict[str, Any]:
        return sessions.abort(self.store, self.get(table, upload_id))

    def state(self, table: str, upload_id: str) -> dict[str, Any]:
        return self.get(table, upload_id).describe()

    # -- the janitor -------------------------------------------------------------------------
    def sweep(self, table: str | None = None) -> None:
        """Expire idle sessions here, forget finished ones, and remove what expired records name."""
        now = time.time()
        with self._lock:
            mine = list(self._sessions.values())
        for session in mine:
            if session.state == "open" and session.expires_at < now:
                sessions.abort(self.store, session, "expired")
            elif session.state != "open" and session.expires_at + self.ttl < now:
                with self._lock:
                    self._sessions.pop(session.id, None)
        for name in [table] if table is not None else record_tables(self.store):
            self._sweep_records(name, now)

    def _sweep_records(self, table: str, now: float) -> None:
        with self._lock:
            open_here = {s.id for s in self._sessions.values() if s.state == "open"}
        for record in records(self.store, table):
            upload_id = str(record.get("upload_id", ""))
            if upload_id in open_here or float(record.get("expires_at") or 0) >= now:
                continue
            remove_files(self.store, [str(p) for p in record.get("files") or []])
            drop_record(self.store, table, upload_id)
            remove_unborn(self.store, table)
            log.info("removed the staged files of abandoned upload %s on table %s", upload_id, table)

    def sweep_in_background(self) -> None:
        """The start-up sweep of every table, off the request path (an object store lists slowly)."""
        def run() -> None:
            try:
                self.sweep()
            except Exception:  # a janitor must never take the service down
                log.warning("could not sweep abandoned uploads", exc_info=True)

        threading.Thread(target=run, daemon=True, name="lightbox-uploads-janitor").start()

    def close(self) -> None:
        """At shutdown: open sessions cannot go on in another process, so their files go now."""
        with self._lock:
            mine = list(self._sessions.values())
        for session in mine:
            sessions.abort(self.store, session)


def _columns(schema: pa.Schema | None) -> list[dict[str, Any]] | None:
    from app.store.schema import describe_schema

    return describe_schema(schema) if schema is not None else None
