"""Lance's trained IVF centroids, brought nearer convergence by a few Lloyd steps before the index is built.

Lance 14's k-means (``IndicesBuilder.train_ivf``) stops far from a converged clustering. Measured on
``bench.search``'s 200k x 384 (an overlapping mixture of 2,000 centres), as the share of a query's true
top 10 lying in its nearest list (queries: rows plus a little noise): with 1,024 lists, 0.83 with Lance's
centroids, 0.84 with ``max_iters=200``, 0.97 with faiss's k-means, 0.99 after three Lloyd steps from
Lance's; with 1,789 lists (what the keeper makes there), 0.93 with Lance's, 0.98 after one step, 0.99
after two (7.5 s with one BLAS thread). Every search pays for a poor clustering: the keeper tunes the
probes to a recall target, so lists that split the data's clusters mean more lists probed and more rows
read a query (6 to 16 probes of 1,789 lists for recall 0.95 in ``bench.search``'s builds, where faiss
needed 1 of 1,024).

So the keeper trains with Lance, then moves each centroid to the mean of the sample rows nearest it, a
few times over a sample the size of Lance's (read again: ``train_ivf`` reads its own and takes no
vectors; bounded by ``MAX_MACS``), and hands the centroids to
Lance's ``create_index``, which assigns every row and builds the lists as before. Only L2 and cosine
(the vectors normalised first, as Lance assigns them) on float32 columns; anything else keeps Lance's.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["refine"]

log = logging.getLogger("lightbox.index")

STEPS = 2  # Lloyd steps at most (at 1,789 lists: one probe's recall 0.93 -> 0.98 -> 0.99; a third gave 0.995)
MAX_MACS = 2e12  # multiply-adds all steps together may take (one step of 1M sample rows x 4,096 lists x 384)
CHUNK = 8192  # sample rows assigned at once (a CHUNK x lists block of distances)


def refine(ds: Any, column: str, centroids: pa.FixedSizeListArray, metric: str, rows: int) -> pa.FixedSizeListArray:
    """``centroids`` after up to ``STEPS`` Lloyd steps over a sample of ``rows`` of ``column`` (unchanged when
    the metric, the type or the sample does not allow them)."""
    metric = metric.lower()
    dim = centroids.type.list_size
    if metric not in ("l2", "cosine") or not pa.types.is_float32(centroids.type.value_type):
        return centroids
    lists = len(centroids)
    steps = min(STEPS, int(MAX_MACS // max(1, rows * lists * dim)))
    if steps < 1:
        return centroids
    started = time.perf_counter()
    count = ds.count_rows()
    table = ds.to_table(columns=[column]) if rows >= count else ds.sample(rows, columns=[column])
    values = table.column(column).combine_chunks()
    if values.null_count:  # a filter copies the whole sample: only when there is something to drop
        values = values.filter(pc.is_valid(values))
    if len(values) < lists or not pa.types.is_float32(values.type.value_type):
        return centroids
    x = np.asarray(values.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(-1, dim)
    if metric == "cosine":
        lengths = np.linalg.norm(x, axis=1, keepdims=True)
        x = x[lengths[:, 0] > 0] / lengths[lengths[:, 0] > 0]
    c = np.asarray(centroids.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(lists, dim).copy()
    for _ in range(steps):
        c = _step(x, c)
    log.info("%d Lloyd steps over %d sample rows, %d lists: %.1f s", steps, len(x), lists,
             time.perf_counter() - started)
    return pa.FixedSizeListArray.from_arrays(pa.array(c.ravel(), pa.float32()), dim)


def _step(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """One Lloyd step: each centroid moved to the mean of the rows nearest it (kept where none are)."""
    half = 0.5 * np.einsum("ij,ij->i", c, c)
    sums = np.zeros(c.shape, np.float64)
    counts = np.zeros(len(c), np.int64)
    for start in range(0, len(x), CHUNK):
        part = x[start:start + CHUNK]
        closeness = part @ c.T  # nearest: the largest x.c - |c|^2 / 2, in place
        closeness -= half
        nearest = closeness.argmax(axis=1)
        order = nearest.argsort(kind="stable")
        groups, firsts = np.unique(nearest[order], return_index=True)
        sums[groups] += np.add.reduceat(part[order], firsts, axis=0)
        counts += np.bincount(nearest, minlength=len(c))
    moved = c.copy()
    filled = counts > 0
    moved[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    return moved
