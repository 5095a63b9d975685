"""The API fuzzer: schemathesis over every operation of the service's ``/openapi.json``.

Shared by the bounded suite in ``make test`` (tests/test_fuzz_api.py) and the longer ``make fuzz``
pass (``python -m tests.fuzzing --minutes 10``), which prints the status codes seen per operation.
The app runs in this process (``tests.conftest.InProcess``): every generated request goes through a
``requests`` session whose adapter hands it to the app as one ASGI call, so a case costs the app's
work and no socket, and the app's own tracebacks are at hand when a 5xx needs explaining.

Every operation is driven with schema-valid (positive) and schema-violating (negative) requests,
with path parameters either generated or pinned to names that exist (tables, a tag, a branch, a row,
an index, a saved view), so the fuzz reaches real rows and real writes, not only 404s. Each answer must not be a
5xx (a 501 in the error shape is allowed for a LanceDB-protocol operation Lightbox does not serve)
and must match the schema: a declared status, a declared content type, and a body that validates.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import orjson
import pyarrow as pa
import requests
import requests.adapters
import schemathesis
import urllib3
from hypothesis import strategies as st
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

API_KEY = "fuzz-key"
HEADERS = {"x-api-key": API_KEY}
ARROW = "application/vnd.apache.arrow.stream"
IMAGES = ("astronaut.png", "camera.png", "horse.png", "chessboard_GRAY.png", "rocket.jpg")
# Names the pinned path parameters take: they exist once `seed` has run.
PINNED = {"table": ["pics", "plain"], "table_id": ["pics", "plain"], "namespace_id": ["$"], "tag": ["v1"],
          "branch": ["b1"], "row_id": ["horse.png"], "index_name": ["label_idx", "note_idx"],
          "index": ["label_idx", "caption_fts", "nope"], "view": ["wide"]}
# Operations that remove what later ones read run last, and the fixtures are re-seeded before each.
DESTRUCTIVE = re.compile(r"^(DELETE /api/v1/tables/\{table\}$|POST /v1/table/\{table_id\}/drop$)")
# Values a person would send, right and wrong for these tables, swapped into the generated requests so the
# fuzz reaches the code past parsing (filters on real columns of the wrong type, names that nearly exist).
FILTERS = ["label = 1", "label = 'x'", "caption = 3", "score > 'a'", "id = 'horse.png'", "label IN (1, 2)",
           "caption LIKE 'h%'", "vector IS NULL", "image IS NOT NULL", "note = 1", "note = 'note 1'", "id = 1",
           "label = 99999999999999999999999", "score = 1e400", "ingested_at > '2020-01-01'", "ingested_at > 5",
           "label / 0 = 1", "nope = 1", "label =", "", "id = '\n'", "label = 1 AND caption = 2", "NOT label"]
SEMANTIC: dict[str, list[Any]] = {
    "filter": FILTERS, "predicate": FILTERS, "where": FILTERS,
    "columns": [["id"], ["label", "caption"], ["vector"], ["image"], ["nope"], ["../x"], [], ["id", "id"]],
    "column": ["vector", "image", "label", "caption", "note", "nope", "../x", "id", ""],
    "name": ["v1", "b1", "fresh", "pics", "plain", "bad\n", "../x", "a" * 300, "label_idx"],
    "tag": ["v1", "nope", "bad\n", ""], "branch": ["b1", "main", "nope", "bad\n"], "into": ["main", "b1", "nope"],
    "version": [0, 1, 2, 3, -1, 2**63, 2**70, "1", 1.5], "k": [0, 1, 5, -1, 10**6],
    "limit": [0, 1, -1, 10**9, None], "offset": [0, -1, 10**12], "nprobes": [1, 0, 10**9],
    "ids": [["horse.png"], ["..", "."], ["a/../b"], [""], ["r1", "r2"]], "image_id": ["horse.png", "nope", ".."],
    "vector": [[0.1] * 224, [0.1] * 3, [], [1e308] * 224, ["a"]], "text": ["horse", ""],
    "order_by": [["label"], ["-label"], [{"column": "label", "descending": True}], ["nope"], ["vector"]],
    "updates": [[["label", "label + 1"]], {"label": "'x'"}, [["nope", "1"]], [["caption", "3"]], {"label": "1"}],
    "index_type": ["BTREE", "BITMAP", "IVF_PQ", "IVF_FLAT", "FTS", "LABEL_LIST", "nope"],
    "type": ["BTREE", "BITMAP", "IVF_PQ", "FTS", "nope"], "model": ["builtin", "nope", "sentence-transformers:../x"],
    "source": ["image", "caption", "label", "nope"], "as_of": ["2020-01-01T00:00:00Z", "nope", "9999-12-31T23:59:59Z"],
    "retention_seconds": [0, "inf", "1e308", -1, "nan"], "cursor": ["", "nope", "AAAA", "eyJ2IjogMX0"],
    "from": ["v1", "1", "b1", "nope"], "to": ["v1", "2", "main"], "mode": ["insert", "upsert", "overwrite", "append"],
    "on_conflict": ["fail", "theirs", "ours"], "size": [1, 0, -1, 64, 100000], "format": ["png", "jpeg", "webp"],
    "vector_column": ["vector", "label", "nope"], "distance_type": ["cosine", "l2", "dot", "hamming", "nope"],
    "metric_type": ["cosine", "l2", "nope"], "num_partitions": [1, 0, -1, 10**9], "num_sub_vectors": [1, 0, 7, 10**6],
    "num_bits": [8, 4, 0, 99], "refine_factor": [1, 0, -1], "descending": [True, False],
    # keyword and hybrid search (full-text indexes: pics.caption_fts, plain.note_idx)
    "keywords": ["horse", '"chessboard gray"', "+horse -camera", "", "   ", '"unbalanced', "-only", "x" * 1001,
                 "AND OR NOT", "h*", "note 1"],
    "keyword_columns": [["caption"], ["note"], ["label"], ["id"], ["nope"], [], ["caption", "caption"]],
    "fusion": ["rrf", "linear", "nope"], "weight": [0, 0.5, 1, -1, 2, "nan"],
    "full_text_query": [{"columns": [], "query": "horse"}, {"columns": ["caption"], "query": '"a b"'},
                        {"query": ""}, {"query": {"match": 1}}, "horse", {"columns": ["note"], "query": "note"},
                        {"columns": ["label"], "query": "1"}, {"columns": "note", "query": "x"}],
    "with_position": [True, False], "base_tokenizer": ["simple", "raw", "ngram", "nope"],
    "language": ["English", "French", "nope"],
    "label": ["label", "caption", "score", "vector", "image", "id", "nope", ""], "threshold": [0, 0.01, -1, 1e308],
    "view": ["wide", "nope", "bad\n", ".."],
    "ref": [{"tag": "v1"}, {"version": 1}, {"branch": "b1"}, {"version": "x"}, {"nope": 1}, {"as_of": "nope"}],
}


def enrich(case: Any, data: Any) -> None:
    """Swap some generated values for realistic ones (drawn, so Hypothesis can replay and vary them)."""
    for container in (case.body, case.query):
        if not isinstance(container, dict):
            continue
        for key in list(container):
            if key in SEMANTIC and data.draw(st.booleans(), label=f"swap {key}"):
                container[key] = data.draw(st.sampled_from(SEMANTIC[key]), label=key)
    if case.media_type == ARROW and data.draw(st.booleans(), label="arrow rows"):
        case.body = data.draw(st.sampled_from(arrow_bodies()), label="arrow body")


_ARROW_BODIES: list[bytes] = []


def arrow_bodies() -> list[bytes]:
    """Arrow IPC streams of rows right and wrong for the tables: images, plain rows, bad ids, bad types."""
    if not _ARROW_BODIES:
        from lightbox.demo import sample_files

        png = next(p for p in sample_files() if p.name == "horse.png").read_bytes()
        tables = [
            pa.table({"id": ["n1", "n2"], "label": [1, 2], "note": ["a", "b"]}),
            pa.table({"id": ["x.png"], "image": pa.array([png], pa.binary()), "label": [7]}),
            pa.table({"id": ["y.png"], "image": pa.array([b"not an image"], pa.binary())}),
            pa.table({"id": ["z.png"], "image": pa.array([1], pa.int64())}),
            pa.table({"id": pa.array([None, "ok"], pa.string()), "label": [1, 2]}),
            pa.table({"id": [1, 2], "label": [1, 2]}),
            pa.table({"id": ["..", "a/../b"], "label": [1, 2]}),
            pa.table({"label": ["not an int"], "id": ["s1"]}),
            pa.table({"other": [1.5]}),
        ]
        for table in tables:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            _ARROW_BODIES.append(sink.getvalue().to_pybytes())
    return _ARROW_BODIES


CHECKS = [openapi_checks.status_code_conformance, openapi_checks.content_type_conformance,
          openapi_checks.response_schema_conformance]


def seed(http: httpx.Client) -> None:
    """(Re)create what the fuzz reaches for where it is missing or was changed: two tables, rows, a vector
    column, a tag, a branch, scalar and full-text indexes. Cheap when nothing changed, so a fuzzed drop,
    overwrite or delete costs only a re-seed of that table."""
    for name, build in (("pics", _seed_pics), ("plain", _seed_plain)):
        try:
            build(http)
        except RuntimeError:  # fuzzed into a shape the steps cannot repair: start the table again
            for other in _ok(http.get("/api/v1/tables")).json()["tables"]:  # clones made by the fuzz hold it
                if other["name"] not in ("pics", "plain"):
                    http.delete(f"/api/v1/tables/{other['name']}")
            http.delete(f"/api/v1/tables/{name}")
            build(http)
    _seed_upload(http)


def _seed_upload(http: httpx.Client) -> None:
    """An open upload session on ``pics`` for the session routes (its id pinned as ``upload_id``)."""
    for upload in PINNED.get("upload_id", []):
        if http.get(f"/api/v1/tables/pics/uploads/{upload}").json().get("state") == "open":
            return
    PINNED["upload_id"] = [_ok(http.post("/api/v1/tables/pics/uploads", json={"mode": "upsert"})).json()["upload_id"]]


def _seed_pics(http: httpx.Client) -> None:
    from lightbox.demo import sample_files

    if http.get("/api/v1/tables/pics").status_code == 404:
        _ok(http.post("/api/v1/tables", json={"name": "pics", "schema": [
            {"name": "label", "type": "int64"}, {"name": "caption", "type": "string"},
            {"name": "score", "type": "double"}]}))
    if _ok(http.get("/api/v1/tables/pics/count")).json().get("count", 0) < len(IMAGES):
        files = [p for p in sample_files() if p.name in IMAGES]
        meta = [{"label": i, "caption": p.stem, "score": i / 2} for i, p in enumerate(files)]
        _ok(http.post("/api/v1/tables/pics/rows", data={"metadata": orjson.dumps(meta).decode(), "mode": "upsert"},
                      files=[("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in files]))
    if not _ok(http.get("/api/v1/tables/pics")).json().get("embeddings"):
        _ok(http.post("/api/v1/tables/pics/embeddings", json={"model": "builtin"}))
    if not any(t["name"] == "v1" for t in _ok(http.get("/api/v1/tables/pics/tags")).json()["tags"]):
        _ok(http.post("/api/v1/tables/pics/tags", json={"name": "v1"}))
    if not any(b["name"] == "b1" for b in _ok(http.get("/api/v1/tables/pics/branches")).json()["branches"]):
        _ok(http.post("/api/v1/tables/pics/branches", json={"name": "b1"}))
    if "caption_fts" not in _ok(http.get("/api/v1/tables/pics/indexes")).text:
        _ok(http.post("/api/v1/tables/pics/indexes", json={"column": "caption", "type": "FTS"}))
    if http.get("/api/v1/tables/pics/views/wide").status_code != 200:
        _ok(http.put("/api/v1/tables/pics/views/wide", json={"filter": "label >= 0", "order_by": ["label desc"]}))


def _seed_plain(http: httpx.Client) -> None:
    """A table of plain rows (no images), made through the LanceDB protocol, with a scalar index."""
    if http.get("/api/v1/tables/plain/count").status_code != 200 \
            or _ok(http.get("/api/v1/tables/plain/count")).json().get("count", 0) < 20:
        rows = pa.table({"id": [f"r{i}" for i in range(20)], "label": list(range(20)),
                         "note": [f"note {i}" for i in range(20)]})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, rows.schema) as writer:
            writer.write_table(rows)
        _ok(http.post("/v1/table/plain/create", params={"mode": "overwrite"}, content=sink.getvalue().to_pybytes(),
                      headers={"content-type": ARROW}))
    if "label_idx" not in _ok(http.get("/api/v1/tables/plain/indexes")).text:
        _ok(http.post("/api/v1/tables/plain/indexes", json={"column": "label", "type": "BTREE", "name": "label_idx"}))
    if "note_idx" not in _ok(http.get("/api/v1/tables/plain/indexes")).text:  # as the LanceDB client makes it
        _ok(http.post("/v1/table/plain/create_index/", json={"column": "note", "index_type": "FTS"}))


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 300:
        raise RuntimeError(f"seeding failed: {response.request.method} {response.request.url} -> "
                           f"{response.status_code} {response.text[:500]}")
    return response


class ServerErrors(logging.Handler):
    """The server's logged tracebacks (it runs in this process), so a 5xx is reported with its cause."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            lines = "".join(traceback.format_exception(*record.exc_info)).strip().splitlines()
            self.records.append(" | ".join(line.strip() for line in lines[-4:]))

    def __enter__(self) -> ServerErrors:
        for name in ("lightbox", "uvicorn.error"):
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("lightbox", "uvicorn.error"):
            logging.getLogger(name).removeHandler(self)


@dataclass
class Outcome:
    """What one operation's fuzz saw: status codes and the failures (one line each, with a curl)."""

    label: str
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def server_error(label: str, response: Any) -> str | None:
    """A 5xx is a failure, except a JSON error answer 501 from a LanceDB-protocol operation (its shape is
    then checked against the schema like any other answer)."""
    status = response.status_code
    if status < 500:
        return None
    if status == 501 and label.split(" ", 1)[1].startswith("/v1/"):
        try:
            if "error" in response.json():
                return None
        except ValueError:
            pass
        return f"501 not in the error shape: {response.text[:200]}"
    return f"server error {status}: {response.text[:200]}"


def operations(schema: Any) -> Iterator[Any]:
    for result in schema.get_all_operations():
        yield result.ok()


def ordered(labels: list[str]) -> list[str]:
    """Reads and writes first, then the operations that drop whole tables."""
    return sorted(labels, key=lambda label: bool(DESTRUCTIVE.match(label)))


class _InProcessAdapter(requests.adapters.HTTPAdapter):
    """A ``requests`` adapter that sends each prepared request through an httpx client (here one whose
    transport calls the app in this process) and hands back the answer's bytes exactly as sent."""

    def __init__(self, http: httpx.Client) -> None:
        super().__init__()
        self.http = http

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,  # type: ignore[override]
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        body = request.body.encode() if isinstance(request.body, str) else request.body or b""
        sent = self.http.build_request(request.method or "GET", request.url or "/", content=body,
                                       headers=dict(request.headers))
        answer = self.http.send(sent, stream=True)
        try:
            content = b"".join(answer.iter_raw())  # as the app encoded it: requests decodes it once
        finally:
            answer.close()
        raw = urllib3.HTTPResponse(body=io.BytesIO(content), headers=list(answer.headers.multi_items()),
                                   status=answer.status_code, reason=answer.reason_phrase, version=11,
                                   preload_content=False, decode_content=False)
        return self.build_response(request, raw)


def session_over(http: httpx.Client) -> requests.Session:
    """A ``requests`` session (what schemathesis sends cases with) that goes through ``http``."""
    session = requests.Session()
    adapter = _InProcessAdapter(http)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def fuzz_operation(operation: Any, session: requests.Session, base_url: str, max_examples: int,
                   budget_seconds: float) -> Outcome:
    """Run ``max_examples`` positive and negative cases (or until the budget is spent) on one operation."""
    outcome = Outcome(operation.label)
    schemathesis.serializer.alias(ARROW, "application/octet-stream")  # Arrow IPC bodies go as raw bytes
    names = re.findall(r"\{(\w+)\}", operation.path)
    variants: list[dict[str, Any]] = [{}]
    if names:
        pinned = {n: PINNED[n] for n in names if n in PINNED}
        for i in range(max(len(v) for v in pinned.values()) if pinned else 0):
            variants.append({n: v[i % len(v)] for n, v in pinned.items()})
    strategies = [operation.as_strategy(generation_mode=mode, path_parameters=params)
                  for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
                  for params in variants]
    started = time.monotonic()

    @hypothesis.settings(max_examples=max_examples, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate],
                         verbosity=hypothesis.Verbosity.quiet)
    @hypothesis.given(case=st.one_of(strategies), data=st.data())
    def run(case: Any, data: Any) -> None:
        enrich(case, data)  # before the budget check: the same prefix must draw the same data
        if outcome.statuses and time.monotonic() - started > budget_seconds:  # at least one case always runs
            return
        try:
            response = case.call(base_url=base_url, session=session, headers=HEADERS, timeout=60)
        except Exception as exc:  # the connection itself failed: as bad as a 500
            outcome.failures.append(f"request failed: {type(exc).__name__}: {exc}")
            return
        outcome.statuses[response.status_code] += 1
        problem = server_error(operation.label, response)
        if problem is None:
            try:
                case.validate_response(response, checks=CHECKS, headers=HEADERS)
            except FailureGroup as group:
                problem = "; ".join(f"{f.title}: {f.message}".replace("\n", " ")[:300] for f in group.exceptions)
        if problem:
            curl = case.as_curl_command(headers=HEADERS)
            logged = errors.records[-1][-800:] if response.status_code >= 500 and errors.records else ""
            cause = f"\n    server: {logged}" if logged else ""
            outcome.failures.append(f"{response.status_code} {problem}\n    {curl[:600]}{cause}")

    # a replay that draws differently (the server's state changed it) ends the run; what was seen is kept
    with ServerErrors() as errors, contextlib.suppress(hypothesis.errors.FlakyStrategyDefinition):
        run()
    outcome.seconds = time.monotonic() - started
    return outcome


def report(outcomes: list[Outcome]) -> str:
    lines = [f"{'operation':62} {'cases':>5} {'secs':>5}  status codes"]
    for o in outcomes:
        codes = " ".join(f"{code}:{n}" for code, n in sorted(o.statuses.items()))
        flag = f"  FAILURES: {len(o.failures)}" if o.failures else ""
        lines.append(f"{o.label:62} {sum(o.statuses.values()):>5} {o.seconds:>5.1f}  {codes}{flag}")
    total = Counter[int]()
    for o in outcomes:
        total.update(o.statuses)
    lines.append(f"{'all':62} {sum(total.values()):>5} {sum(o.seconds for o in outcomes):>5.0f}  "
                 + " ".join(f"{code}:{n}" for code, n in sorted(total.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``make fuzz``: a longer pass over a fresh server in a temporary directory; prints counts per operation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="total time budget (default 10)")
    parser.add_argument("--examples", type=int, default=300, help="max cases per operation (default 300)")
    parser.add_argument("--only", help="fuzz only operations whose label contains this text")
    args = parser.parse_args(argv)
    from tests.conftest import InProcess

    with tempfile.TemporaryDirectory(prefix="lightbox-fuzz-") as tmp:
        app = InProcess(str(Path(tmp) / "data"), api_keys=API_KEY)
        try:
            with app.http(headers=HEADERS, timeout=120) as http:
                seed(http)
                schema = schemathesis.openapi.from_dict(http.get("/openapi.json").json())
                session = session_over(http)
                ops = {op.label: op for op in operations(schema) if not args.only or args.only in op.label}
                budget = args.minutes * 60 / max(len(ops), 1)
                outcomes = []
                for label in ordered(list(ops)):
                    seed(http)
                    outcomes.append(fuzz_operation(ops[label], session, app.url, args.examples, budget))
                    print(f"{label}: {dict(sorted(outcomes[-1].statuses.items()))}", file=sys.stderr, flush=True)
        finally:
            app.close()
    print(report(outcomes))
    failures = [(o.label, f) for o in outcomes for f in o.failures]
    for label, failure in failures:
        print(f"\n{label}: {failure}")
    print(f"\n{len(failures)} failures over {sum(sum(o.statuses.values()) for o in outcomes)} requests")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
