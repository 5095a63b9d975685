"""A bulk load through the official LanceDB client, into a real ``lightbox serve`` process, with its
resident memory watched: the background index work that follows a burst of writes stays within a
stated bound, and the index listing answers while the index builds.

Ten 20k-row batches of 384-d float32 vectors (an overlapping Gaussian mixture, 293 MiB of vectors)
once took a server to 24 GB within a minute: the recall measurement sent 200 queries at once to a
version with 140k unindexed rows, and Lance copies those rows' vectors for each query.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bulk_load import bulk_load

BATCHES, ROWS, DIM = 10, 20_000, 384
CONSTANT = 512 * 1024**2  # the service's own working memory beside the vectors (Arrow bodies, caches)
LISTING_SECONDS = 2.0  # "promptly": a listing that waited for the build would take tens of seconds


def bound(start_rss: int, raw: int) -> int:
    """The RSS a server may reach: what it started with, three times the vectors, and a constant."""
    return start_rss + 3 * raw + CONSTANT


@pytest.mark.long
def test_a_bulk_load_is_indexed_within_a_memory_bound(tmp_path: Path) -> None:
    out = bulk_load(tmp_path / "root", BATCHES, ROWS, DIM, bound, log=tmp_path / "serve.log")
    assert not out.killed, f"RSS passed {out.limit / 2**20:.0f} MiB; the server was stopped"
    assert out.index.get("tuned"), out.index
    assert out.index["num_indexed_rows"] == BATCHES * ROWS and out.index["num_unindexed_rows"] == 0
    assert out.index["recall"] >= 0.95
    assert out.builds <= 2, "a burst of writes is one build (and its tuning), not a build per write"
    assert out.slowest_listing < LISTING_SECONDS, out.slowest_listing
    assert out.peak_rss <= out.limit, (out.peak_rss / 2**20, out.limit / 2**20)
