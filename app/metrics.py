"""Prometheus metrics and JSON access logs: one ``Metrics`` per app (its own ``CollectorRegistry``).

- ``lightbox_http_requests_total{method,route,status}`` and ``lightbox_http_request_duration_seconds``
  (a histogram by method and route): ``route`` is the route's template
  (``/api/v1/tables/{table}/rows/{row_id:path}/image``), never the raw path, so ids do not
  multiply the series; a path no route matches, and a request refused before routing (a 401 or 403
  from the API-key check), is ``unmatched``.
- ``lightbox_ingest_rows_total{table,outcome}``: rows written and skipped by uploads.
- ``lightbox_cache_hits_total`` / ``lightbox_cache_misses_total{cache}``: table handles, id maps,
  thumbnails/resized images, read from the caches' own counters at scrape time.
- ``lightbox_thumbnail_renders_total``: thumbnails and resized images rendered; a thumbnail made when its
  row was written is read instead (``lightbox_thumbnail_kept_reads_total``).
- ``lightbox_vector_index_builds_total`` / ``lightbox_vector_index_build_seconds_total``: the
  background builds, folds and merges of the Lance vector indexes search runs on, and the time they
  took; ``lightbox_index_build_seconds{type}``: Lance index builds asked for over HTTP (a histogram:
  its ``_count`` is the number of builds).

The middleware is plain ASGI and sits outside everything else, so it sees 401s and 413s too. With
``LIGHTBOX_METRICS_PUBLIC=true`` it answers ``GET /metrics`` itself, before the API-key check
(for a scraper on a private network); otherwise ``/metrics`` is an ordinary read that needs a key
whenever keys are configured (a read-only key is enough).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.access_log import LOGGERS, access_logger, status_line

CLIENT_CLOSED = 499  # the client left before its request was read (nginx's code): never counted as a 5xx
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CACHES = (("handles", "store"), ("id_maps", "reader"), ("thumbnails", "thumbnails"))


class Metrics:
    """The app's collectors, on a registry of its own (two apps in one process never share counts)."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lightbox_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("lightbox_http_request_duration_seconds", "HTTP request latency, to the last byte",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ingest_rows = Counter("lightbox_ingest_rows", "Rows written and skipped by ingests through the API",
                                   ["table", "outcome"], registry=self.registry)
        self.index_builds = Histogram("lightbox_index_build_seconds", "Lance index builds (POST .../indexes) by type",
                                      ["type"], buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 1800),
                                      registry=self.registry)
        self.registry.register(CacheCollector(state))
        # the children of the request series, bound once each: ``labels()`` costs a lock and a lookup
        self._served: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def served(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and time it."""
        children = self._served.get((method, route, status))
        if children is None:
            children = self._served[(method, route, status)] = (self.requests.labels(method, route, str(status)),
                                                                 self.latency.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)

    def ingested(self, table: str, written: int, skipped: int) -> None:
        self.ingest_rows.labels(table, "written").inc(written)
        self.ingest_rows.labels(table, "skipped").inc(skipped)

    def forget_table(self, table: str) -> None:
        """A dropped (or re-created) table's series go with it: a scrape lists the tables there are."""
        for outcome in ("written", "skipped"):
            with contextlib.suppress(KeyError):  # never written to
                self.ingest_rows.remove(table, outcome)

    @contextmanager
    def index_build(self, kind: str) -> Iterator[None]:
        """Time one Lance index build; failed builds are not counted."""
        started = time.perf_counter()
        yield
        self.index_builds.labels(kind.upper()[:32]).observe(time.perf_counter() - started)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CacheCollector(Collector):
    """Hit and miss counts the caches keep themselves (``cache.stats``), read when scraped."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[CounterMetricFamily]:
        hits = CounterMetricFamily("lightbox_cache_hits", "Cache lookups answered from memory", labels=["cache"])
        misses = CounterMetricFamily("lightbox_cache_misses", "Cache lookups that had to build or read",
                                     labels=["cache"])
        builds = CounterMetricFamily("lightbox_vector_index_builds",
                                     "Background builds, folds and merges of vector indexes")
        seconds = CounterMetricFamily("lightbox_vector_index_build_seconds",
                                      "Time spent building, folding and merging vector indexes")
        for label, attribute in CACHES:
            stats = getattr(getattr(self.state, attribute, None), "stats", None)
            if stats is not None:
                hits.add_metric([label], stats.hits)
                misses.add_metric([label], stats.misses)
        renders = CounterMetricFamily("lightbox_thumbnail_renders", "Thumbnails and resized images rendered (found "
                                      "neither in memory nor kept beside their table)")
        kept = CounterMetricFamily("lightbox_thumbnail_kept_reads", "Thumbnails read from the ones kept beside their "
                                   "table (made when their rows were written)")
        thumbnails = getattr(self.state, "thumbnailer", None)
        if thumbnails is not None:
            renders.add_metric([], thumbnails.cache.stats.builds)
            kept.add_metric([], thumbnails.files.reads)
        resident = CounterMetricFamily("lightbox_resident_searches", "Vector searches answered from an index's "
                                       "lists held in memory (app/store/resident.py), not by Lance's planner")
        held = GaugeMetricFamily("lightbox_resident_index_bytes", "Bytes of index lists held in memory")
        keeper = getattr(getattr(self.state, "searcher", None), "indexes", None)
        stats = getattr(keeper, "stats", None)
        if stats is not None:
            builds.add_metric([], stats.builds)
            seconds.add_metric([], stats.build_seconds)
        lists = getattr(keeper, "resident", None)
        if lists is not None:
            resident.add_metric([], lists.searches)
            held.add_metric([], lists.held_bytes())
        yield from (hits, misses, builds, seconds, renders, kept, resident, held)


class Observe:
    """Plain ASGI middleware: count and time every request; serve ``/metrics`` itself when public;
    write a JSON access log line per request when asked."""

    def __init__(self, app: ASGIApp, *, public_metrics: bool = False, access_log: str | None = None) -> None:
        self.app = app
        self.public_metrics = public_metrics
        self.kind = access_log if access_log in LOGGERS else None  # "text", "json", or no access log
        self.log = access_logger(self.kind) if self.kind is not None else None
        self.clock = Seconds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics: Metrics | None = getattr(scope["app"].state, "metrics", None) if "app" in scope else None
        if self.public_metrics and scope["path"] == "/metrics" and scope["method"] == "GET" and metrics is not None:
            await send_metrics(metrics, send)
            return
        started = time.perf_counter()
        facts = {"status": 500, "bytes": 0}

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                facts["status"] = message["status"]
            elif message["type"] == "http.response.body":
                facts["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except ClientDisconnect:  # left before an answer: nothing to send, and not the server's error
            facts["status"] = CLIENT_CLOSED
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            metrics = metrics or (getattr(scope["app"].state, "metrics", None) if "app" in scope else None)
            if metrics is not None:
                metrics.served(scope["method"], route, facts["status"], elapsed)
            if self.log is not None and self.log.isEnabledFor(logging.INFO):
                self._log_line(scope, route, facts, elapsed)

    def _log_line(self, scope: Scope, route: str, facts: dict[str, int], elapsed: float) -> None:
        assert self.log is not None
        if self.kind == "text":
            line = status_line(scope.get("client"), scope["method"], scope["path"], scope.get("query_string", b""),
                               scope.get("http_version", "1.1"), facts["status"])
        else:
            line = orjson.dumps({
                "ts": self.clock.now(), "method": scope["method"],
                "path": scope["path"], "query": scope.get("query_string", b"").decode("latin-1"),
                "route": route, "status": facts["status"], "bytes": facts["bytes"],
                "duration_ms": round(elapsed * 1000, 3),
                "request_id": scope.get("state", {}).get("request_id"),
                "client": (scope.get("client") or ("", 0))[0],
            }).decode()
        # the record made directly: ``info()`` would also walk the stack for a caller nobody logs
        self.log.handle(logging.LogRecord(self.log.name, logging.INFO, __file__, 0, line, None, None))


class Seconds:
    """The access log's UTC timestamp, formatted once a second rather than once a request."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        return self._text


def route_template(scope: Scope) -> str:
    """The template of the route that served the request, or ``unmatched``: no route has that path,
    or the request was answered before routing (a 401/403 from the API-key check)."""
    return str(getattr(scope.get("route"), "path", None) or "unmatched")


async def send_metrics(metrics: Metrics, send: Send) -> None:
    body = metrics.render()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
