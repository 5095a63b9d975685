"""The search fast path (``app.fast_search``): the same answers as the FastAPI route, concurrent requests
answered as they are one at a time, and everything it does not take left to the route."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import lance
import numpy as np
import pytest

from app.fast_search import FastSearch
from tests.conftest import InProcess
from tests.helpers import middleware, without_middleware

SEARCH = "/api/v1/tables/digits/search"


@pytest.fixture(scope="module")
def vectors(root: str) -> np.ndarray:
    table = lance.dataset(f"{root}/digits.lance").to_table(columns=["vector"])
    return np.asarray(table.column("vector").to_pylist()[:24], np.float32)


def fast_path(server: InProcess) -> FastSearch:
    return middleware(server, FastSearch)


def routed(server: InProcess) -> InProcess:
    """The same app without the fast path: the FastAPI route answers every search."""
    return without_middleware(server, FastSearch)


def answer(client: httpx.Client, body: Any, params: str = "", headers: dict[str, str] | None = None) -> tuple:
    r = client.post(SEARCH + params, content=json.dumps(body), headers={"content-type": "application/json",
                                                                       **(headers or {})})
    return r.status_code, {k: v for k, v in r.headers.items() if k != "x-request-id"}, r.json()


def test_same_answers_as_the_route(in_process: Callable[..., InProcess], root: str, vectors: np.ndarray) -> None:
    fast, slow = in_process(root, latest_refresh_seconds=60), routed(in_process(root, latest_refresh_seconds=60))
    v = vectors[0].tolist()
    with fast.http() as a, slow.http() as b:
        version = a.get("/api/v1/tables/digits").headers["x-lightbox-version"]  # latest is resolved by a route
        taken = fast_path(fast).served
        served_here = [
            ({"vector": v}, ""),
            ({"vector": v, "k": 3, "columns": ["id", "label"]}, ""),
            ({"vector": v, "k": 2, "columns": ["_distance"], "column": "vector", "nprobes": 2}, ""),
            ({"vector": [round(x * 10) for x in v], "k": 4}, f"?version={version}"),
        ]
        for body, params in served_here:
            mine = answer(a, body, params)
            assert mine == answer(b, body, params), body
            assert mine[0] == 200 and mine[2]["hits"], (body, params, mine)
        # the route's links, at the same ref
        assert mine[2]["hits"][0]["image_url"].endswith(f"/image?version={version}")
        assert fast_path(fast).served == taken + len(served_here)
        left_to_the_route = [
            ({"vector": v, "filter": "label = 3"}, "", None),
            ({"vector": v, "k": 2}, "?tag=v1", None),  # resolving a tag reads the store
            ({"vector": v}, "", {"accept": "application/vnd.apache.arrow.stream"}),
            ({"text": "three"}, "", None),
            ({"vector": v, "k": "3"}, "", None),  # the route's validation coerces (or refuses) other types
            ({"vector": v[:5]}, "", None),  # errors: the route says what is wrong, in the one shape
            ({"vector": v, "k": 0}, "", None),
            ({"vector": [True] * len(v)}, "", None),
            ({"vector": v, "columns": ["nope"]}, "", None),
            ([1, 2], "", None),
        ]
        for body, params, headers in left_to_the_route:
            mine = answer(a, body, params, headers) if "accept" not in (headers or {}) else None
            if mine is not None:
                assert mine == answer(b, body, params, headers), body
        assert fast_path(fast).served == taken + len(served_here)
        assert answer(a, {"vector": v[:5]})[2]["error"]["code"] == "invalid_query"


def test_concurrent_searches_equal_one_at_a_time(in_process: Callable[..., InProcess], root: str,
                                                 vectors: np.ndarray) -> None:
    server = in_process(root, latest_refresh_seconds=60)
    with server.http() as client:
        client.get("/api/v1/tables/digits")

        def hits(v: np.ndarray) -> list[tuple[str, float]]:
            r = client.post(SEARCH, json={"vector": v.tolist(), "k": 5, "columns": ["id"]})
            assert r.status_code == 200, r.text
            return [(h["id"], round(h["_distance"], 4)) for h in r.json()["hits"]]

        alone = [hits(v) for v in vectors]
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(hits, vectors))
    assert together == alone
    assert fast_path(server).served == 2 * len(vectors)
