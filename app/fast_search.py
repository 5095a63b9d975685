"""A fast path for the commonest search: ``POST .../search`` with a JSON body holding a query vector.

Measured at 200k x 384 under 8 connections, the search route spent about as much CPU around the
search as Lance did in it: FastAPI's routing, dependency and body validation, a threadpool hop per
request (each waking a thread and passing the GIL around), and the response object. ``FastSearch`` is
plain ASGI, the innermost middleware (beside ``FastImage``): it matches the route's own path pattern,
parses the body with orjson, makes the checks the route's service makes (``Searcher.prepare``) and
gathers the requests that arrive together into one batch that one worker thread searches
(``Searcher.search_prepared``: one Lance call for all of them), then writes the route's own answer
(``app.routes.search.hit_rows``, the same headers).

It answers only a body of the plain shape (``vector``, with ``k``, ``columns``, ``column``,
``nprobes``, ``refine_factor``, each of its exact JSON type) on a snapshot memory holds
(``Store.cached_snapshot``). Everything else (a filter, text, an image, an Arrow answer, a tag, a
latest due for its refresh, a value of another type, any error at all) goes on to the route with the
body replayed: it answers again and reports errors in the one JSON shape.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.fast_image import request_ref
from app.responses import dumps, version_headers
from app.routes.search import hit_rows
from app.services.search import Prepared, Searcher, SearchSpec

__all__ = ["FastSearch"]

INTS = ("k", "nprobes", "refine_factor")
MAX_BATCH = 16  # queries in one Lance search (a batch copies the unindexed rows' vectors per query)


class FastSearch:
    """Plain ASGI middleware in front of the router for vector searches (see the module's docstring)."""

    def __init__(self, app: ASGIApp, route: Any) -> None:
        self.app = app
        self.route = route  # the search route: its pattern, and the name metrics give
        self.served = 0  # requests answered here (tests check the path is taken)
        self._waiting: dict[tuple[Any, ...], list[tuple[Prepared, asyncio.Future[Any]]]] = {}
        self._tasks: set[asyncio.Future[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/search"):
            await self.app(scope, receive, send)
            return
        match = self.route.path_regex.match(scope["path"])
        ref = request_ref(scope["query_string"]) if match is not None and not scope.get("root_path") else None
        if ref is None or not _plain_json(scope["headers"]):
            await self.app(scope, receive, send)
            return
        body, more = await _read(receive)
        answer = None if more else await self._answer(scope, match["table"], ref, body)
        if answer is None:
            await self.app(scope, _replay(body, more, receive), send)
            return
        scope["route"] = self.route
        self.served += 1
        headers, content = answer
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _answer(self, scope: Scope, table: str, ref: Any, body: bytes) -> tuple[list[Any], bytes] | None:
        try:
            spec = _spec(body)
            state = scope["app"].state
            snap = state.store.cached_snapshot(table, ref) if spec is not None else None
            searcher: Searcher = state.searcher
            prepared = searcher.prepare(snap, spec) if snap is not None and spec is not None else None
            if prepared is None:
                return None
            hits = await self._search(searcher, prepared)
            content = dumps({"hits": hit_rows(table, ref, snap, hits)})
        except Exception:  # the route answers again, and says what went wrong in the one error shape
            return None
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in version_headers(snap).items()]
        headers += [(b"content-length", str(len(content)).encode()), (b"content-type", b"application/json")]
        return headers, content

    async def _search(self, searcher: Searcher, prepared: Prepared) -> Any:
        """This query's hits, searched together with those of the same kind that arrive meanwhile: the
        first of a kind starts a batch on the loop's next turn, and while a batch runs the next gathers."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        key = prepared.key
        group = self._waiting.get(key)
        if group is None:
            self._waiting[key] = [(prepared, future)]
            task = asyncio.ensure_future(self._run(searcher, key))
            self._tasks.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._tasks.discard)
        else:
            group.append((prepared, future))
        return await future

    async def _run(self, searcher: Searcher, key: tuple[Any, ...]) -> None:
        await asyncio.sleep(0)  # the requests parsed in this turn of the loop join the first batch
        while True:
            group = self._waiting.get(key)
            if not group:
                self._waiting.pop(key, None)
                return
            group, self._waiting[key] = group[:MAX_BATCH], group[MAX_BATCH:]  # later arrivals gather here
            try:
                batch = [p for p, _ in group]
                if searcher.held(batch[0]):  # from memory: quicker here than a hop to a worker thread
                    found = searcher.search_prepared(batch)
                else:
                    found = await run_in_threadpool(searcher.search_prepared, batch)
            except Exception as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), hits in zip(group, found, strict=True):
                if not future.done():
                    future.set_result(hits)


def _plain_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """A JSON body and a JSON answer (an Arrow answer is the route's)."""
    kind = next((v for k, v in headers if k == b"content-type"), b"").split(b";")[0].strip().lower()
    accept = next((v for k, v in headers if k == b"accept"), b"")
    return kind == b"application/json" and b"arrow" not in accept


def _spec(body: bytes) -> SearchSpec | None:
    """The search a body of the plain shape asks for, or None for anything else (the route decides)."""
    raw = orjson.loads(body)
    if not isinstance(raw, dict) or "vector" not in raw or not set(raw) <= {"vector", "columns", "column", *INTS}:
        return None
    vector = raw["vector"]
    if not isinstance(vector, list) or not all(type(v) is float or type(v) is int for v in vector):
        return None
    if any(key in raw and (type(raw[key]) is not int or raw[key] < 1) for key in INTS):
        return None
    columns = raw.get("columns")
    if columns is not None and (not isinstance(columns, list) or not all(type(c) is str for c in columns)):
        return None
    if "column" in raw and type(raw["column"]) is not str:
        return None
    return SearchSpec(vector=vector, k=raw.get("k", 10), columns=columns, column=raw.get("column"),
                      nprobes=raw.get("nprobes"), refine_factor=raw.get("refine_factor"))


async def _read(receive: Receive) -> tuple[bytes, list[Message]]:
    """The request's body; ``more`` holds what came after it (a disconnect), for the route."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), []


def _replay(body: bytes, more: list[Message], receive: Receive) -> Receive:
    """``receive`` for the route: the body already read (unfinished when the client went away), then
    whatever comes next."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": bool(more)}, *more]

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
