"""The arithmetic of curation, on arrays: duplicate groups, label scores and uniqueness.

Everything here works on each row's nearest neighbours (positions and distances, as the vector
search returned them, the row itself already dropped) and never on all pairs, so its cost grows with
rows x k.

- **Duplicates.** Two rows are linked when their ``sha256`` is equal (exact copies) or when one is
  among the other's neighbours at a distance at most the column's near-duplicate threshold (near
  copies). Linked rows form groups (connected components); in each group the **original** is the
  row ingested first (``ingested_at``), ties going to the smallest id, and every other row's
  ``duplicate_of`` is the original's id.
- **Label issues** (distance-weighted kNN vote, ranked by normalised margin). Each labelled row's
  ``k`` nearest neighbours *outside its own duplicate group* (a copy is no second opinion) vote for
  their labels with weight ``exp(-d / s)``, ``s`` the median nearest-neighbour distance of the table,
  plus a pseudo-count ``ALPHA`` spread evenly over the classes (so a vote of a few far neighbours
  is weak evidence). From the vote's class probabilities ``p``: ``suggested_label = argmax p`` and
  ``label_issue = (max_{c != label} p_c - p_label + 1) / 2``: 0 when the neighbourhood agrees
  unanimously, 0.5 when the label ties with another class, near 1 when the neighbourhood votes for
  another class. The margin ranks better than ``1 - p_label`` on the digits benchmark (fewer
  ties at the top); see ``bench/RESULTS.md``.
- **Uniqueness.** The distance-weighted mean distance to the ``UNIQUENESS_NEIGHBOURS`` nearest rows
  (duplicates included: a copied image is less unique), weights ``UNIQUENESS_WEIGHTS``, divided by
  the largest value in the table, so the most isolated row scores 1 and a copied row less than it
  would alone (its nearest neighbour is at distance 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ALPHA", "UNIQUENESS_NEIGHBOURS", "UNIQUENESS_WEIGHTS", "Neighbours", "duplicate_groups", "label_scores",
           "originals", "uniqueness"]

ALPHA = 1.0  # pseudo-votes spread evenly over the classes
UNIQUENESS_WEIGHTS = np.array([0.6, 0.3, 0.1])  # nearest first (FiftyOne Brain's weighting)
UNIQUENESS_NEIGHBOURS = len(UNIQUENESS_WEIGHTS)


@dataclass
class Neighbours:
    """Each row's nearest other rows, nearest first: ``positions`` (-1 where fewer were found) and
    ``distances`` (the API's: squared L2, or 1 - cosine), both ``rows x m``."""

    positions: np.ndarray
    distances: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.positions.shape[0])


def duplicate_groups(hash_codes: np.ndarray | None, near: Neighbours, threshold: float) -> np.ndarray:
    """A group label per row (the smallest position in its group): rows with equal hash codes
    (``-1``: no hash) and rows within ``threshold`` of one another are in one group."""
    rows = near.rows
    edges: list[np.ndarray] = []
    if hash_codes is not None:
        has = hash_codes >= 0
        first = np.full(int(hash_codes.max(initial=-1)) + 1, rows, np.int64)
        np.minimum.at(first, hash_codes[has], np.flatnonzero(has))
        edges.append(np.stack([np.flatnonzero(has), first[hash_codes[has]]]))
    close = (near.positions >= 0) & (near.distances <= threshold)
    a, b = np.nonzero(close)
    edges.append(np.stack([a, near.positions[a, b]]))
    pairs = np.concatenate(edges, axis=1) if edges else np.zeros((2, 0), np.int64)
    pairs = pairs[:, pairs[0] != pairs[1]]
    return _components(rows, pairs[0], pairs[1])


def _components(rows: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components by label propagation with pointer jumping (each row ends with its
    component's smallest position); a few passes even for long chains."""
    label = np.arange(rows, dtype=np.int64)
    if not len(a):
        return label
    while True:
        low = np.minimum(label[a], label[b])
        before = label.copy()
        np.minimum.at(label, a, low)
        np.minimum.at(label, b, low)
        while True:  # jump: each label takes its label's label until nothing moves
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
        if np.array_equal(label, before):
            return label


def originals(groups: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For each row, the position of its group's original: the first row of the group in ``order``
    (positions sorted by ingestion time, then id). A row that is its own original is unduplicated
    or the original of its group."""
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    best = np.full(len(groups), len(order), np.int64)
    np.minimum.at(best, groups, rank)
    return order[best[groups]]


def label_scores(labels: np.ndarray, classes: int, near: Neighbours, groups: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(label_issue, suggested class)`` per row from the k nearest neighbours outside the row's
    duplicate group (``labels``: class codes, -1 for a missing label; a row without a label gets
    NaN as its issue, and its suggestion from its neighbours). Rows go by blocks of ``BLOCK``, so the
    temporaries stay small whatever the table (one pass first for the distance scale)."""
    rows = near.rows
    firsts = [_usable(labels, near, groups, rows_at)[1] for rows_at in _blocks(rows)]
    first = np.concatenate(firsts) if firsts else np.zeros(0)
    scale = float(np.nanmedian(first)) if np.isfinite(first).any() else 1.0
    scale = scale if scale > 0 else 1.0
    issue, suggested = np.full(rows, np.nan), np.zeros(rows, np.int64)
    for at in _blocks(rows):
        usable, _ = _usable(labels, near, groups, at)
        keep = usable & (np.cumsum(usable, axis=1) <= k)  # the first k usable neighbours
        weights = np.where(keep, np.exp(-np.maximum(near.distances[at], 0) / scale), 0.0)
        votes = np.full((len(weights), max(classes, 1)), ALPHA / max(classes, 1))
        voted = np.where(keep, labels[np.where(keep, near.positions[at], 0)], 0)
        np.add.at(votes, (np.repeat(np.arange(len(weights)), weights.shape[1]), voted.ravel()), weights.ravel())
        p = votes / votes.sum(axis=1, keepdims=True)
        suggested[at] = p.argmax(axis=1)
        own = np.where(labels[at] >= 0, labels[at], 0)
        mine = p[np.arange(len(p)), own]
        p[np.arange(len(p)), own] = -1.0
        block = np.clip((p.max(axis=1) - mine + 1.0) / 2.0, 0.0, 1.0)
        issue[at] = np.where(labels[at] >= 0, block, np.nan)
    return issue, suggested


BLOCK = 65_536  # rows scored at once


def _blocks(rows: int) -> list[slice]:
    return [slice(start, min(rows, start + BLOCK)) for start in range(0, rows, BLOCK)]


def _usable(labels: np.ndarray, near: Neighbours, groups: np.ndarray, at: slice) -> tuple[np.ndarray, np.ndarray]:
    """Which neighbours of the rows ``at`` may vote (a labelled row outside the row's duplicate group),
    and each row's distance to the nearest of them (NaN: none)."""
    positions = near.positions[at]
    valid = positions >= 0
    safe = np.where(valid, positions, 0)
    usable = valid & (groups[safe] != groups[at, None]) & (labels[safe] >= 0)
    nearest = near.distances[at][np.arange(len(positions)), usable.argmax(axis=1)]
    return usable, np.where(usable.any(axis=1), nearest, np.nan)


def uniqueness(near: Neighbours) -> np.ndarray:
    """0-1 per row: the weighted distance to its nearest rows over the table's largest."""
    m = min(UNIQUENESS_NEIGHBOURS, near.positions.shape[1])
    if m == 0 or near.rows == 0:
        return np.ones(near.rows)
    d = np.where(near.positions[:, :m] >= 0, np.maximum(near.distances[:, :m], 0), np.nan)
    w = np.where(np.isnan(d), 0.0, UNIQUENESS_WEIGHTS[:m])
    raw = np.nansum(np.nan_to_num(d) * w, axis=1) / np.maximum(w.sum(axis=1), 1e-12)
    raw = np.where(w.sum(axis=1) > 0, raw, np.nan)
    top = np.nanmax(raw) if np.isfinite(raw).any() else 0.0
    if not top > 0:
        return np.where(np.isnan(raw), 1.0, 0.0)
    return np.where(np.isnan(raw), 1.0, np.clip(raw / top, 0.0, 1.0))
