"""The whole API fuzzed: schemathesis over every operation of the served ``/openapi.json``.

The service's app in this process (no socket: the fuzz is of the app, and a case costs only its
work), with an API key, over real tables (images with metadata and a vector column, a plain
table with an index, a tag, a branch). Each operation gets a few positive and negative cases: no 5xx
(a LanceDB-protocol 501 in the error shape is allowed) and every answer matches the schema. Bounded
to a few minutes; ``make fuzz`` runs the longer pass (tests/fuzzing.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from app.main import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests import fuzzing  # noqa: E402
from tests.conftest import InProcess  # noqa: E402

pytestmark = pytest.mark.fuzz
# Cases per operation and the time for all of them (shared evenly); raise both for a deeper run here.
MAX_EXAMPLES = int(os.environ.get("LIGHTBOX_FUZZ_EXAMPLES", "40"))
TOTAL_SECONDS = float(os.environ.get("LIGHTBOX_FUZZ_SECONDS", "150"))


def _labels() -> list[str]:
    """Every operation the app declares (no I/O: the app is only assembled, never started)."""
    spec = create_app(Settings(uri="unused", warm_on_start=False)).openapi()
    return fuzzing.ordered([f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops])


LABELS = _labels()
BUDGET_SECONDS = TOTAL_SECONDS / len(LABELS)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("fuzz")
    app = InProcess(str(root / "data"), api_keys=fuzzing.API_KEY)
    http = app.http(headers=fuzzing.HEADERS, timeout=120)
    fuzzing.seed(http)
    schema = schemathesis.openapi.from_dict(http.get("/openapi.json").json())
    ops = {op.label: op for op in fuzzing.operations(schema)}
    yield {"app": app, "http": http, "session": fuzzing.session_over(http), "ops": ops, "root": root}
    http.close()
    app.close()
    # nothing was written outside the fuzz's own directory
    assert [p.name for p in root.iterdir()] == ["data"]


def test_the_served_schema_has_every_operation(fuzzed: dict[str, Any]) -> None:
    assert sorted(fuzzed["ops"]) == sorted(LABELS)
    assert len(LABELS) > 50


@pytest.mark.parametrize("label", LABELS)
def test_fuzz(fuzzed: dict[str, Any], label: str) -> None:
    fuzzing.seed(fuzzed["http"])
    outcome = fuzzing.fuzz_operation(fuzzed["ops"][label], fuzzed["session"], fuzzed["app"].url, MAX_EXAMPLES,
                                     BUDGET_SECONDS)
    assert sum(outcome.statuses.values()) > 0
    assert not outcome.failures, f"{label}: {len(outcome.failures)} failures\n" + "\n".join(outcome.failures[:10])


def test_the_key_is_required(fuzzed: dict[str, Any]) -> None:
    """The fuzz ran with a key; without one every table route is a 401 in the error shape."""
    with fuzzed["app"].http() as anonymous:
        response = anonymous.get("/api/v1/tables")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"

