"""The keeper's IVF centroids: Lance's k-means, then Lloyd steps over the training sample (app/store/centroids.py)."""

from __future__ import annotations

import lance
import numpy as np
import pyarrow as pa
import pytest
from lance.indices import IndicesBuilder

from app.store.centroids import refine

DIM = 16
LISTS = 40


def _objective(x: np.ndarray, c: np.ndarray) -> float:
    """The k-means objective: each row's squared distance to its nearest centroid, summed."""
    d = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]
    return float(np.maximum(d.min(axis=1), 0).sum())


def _matrix(array: pa.FixedSizeListArray) -> np.ndarray:
    return np.asarray(array.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(array), DIM)


@pytest.fixture(scope="module")
def mixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[lance.LanceDataset, np.ndarray]:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(60, DIM)).astype(np.float32) * 3
    x = centres[rng.integers(0, len(centres), 4000)] + rng.normal(size=(4000, DIM)).astype(np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), DIM)
    nulls = pa.array([None] * 10, pa.list_(pa.float32(), DIM))
    table = pa.table({"vector": pa.concat_arrays([vectors, nulls])})
    return lance.write_dataset(table, str(tmp_path_factory.mktemp("centroids") / "t.lance")), x


def _first_rows(x: np.ndarray) -> pa.FixedSizeListArray:
    """A poor start: the first rows as centroids (k-means before any step)."""
    return pa.FixedSizeListArray.from_arrays(pa.array(x[:LISTS].ravel(), pa.float32()), DIM)


def test_lloyd_steps_lower_the_objective(mixture: tuple[lance.LanceDataset, np.ndarray]) -> None:
    ds, x = mixture
    start = _first_rows(x)
    refined = refine(ds, "vector", start, "l2", len(x) + 10)  # the whole column, nulls skipped
    assert refined.type == start.type and len(refined) == LISTS
    assert _objective(x, _matrix(refined)) < 0.95 * _objective(x, _matrix(start))
    trained = IndicesBuilder(ds, "vector").train_ivf(LISTS, distance_type="l2", sample_rate=100)
    kept = refine(ds, "vector", trained.centroids, "l2", len(x))
    assert _objective(x, _matrix(kept)) <= 1.0001 * _objective(x, _matrix(trained.centroids))  # never worse


def test_cosine_is_refined_on_unit_vectors_and_dot_is_left_alone(
        mixture: tuple[lance.LanceDataset, np.ndarray]) -> None:
    ds, x = mixture
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    start = _first_rows(unit)
    refined = refine(ds, "vector", start, "cosine", len(x))
    assert np.isfinite(_matrix(refined)).all()
    assert _objective(unit, _matrix(refined)) < 0.95 * _objective(unit, _matrix(start))
    dot = IndicesBuilder(ds, "vector").train_ivf(LISTS, distance_type="dot", sample_rate=100)
    assert refine(ds, "vector", dot.centroids, "dot", len(x)) is dot.centroids
