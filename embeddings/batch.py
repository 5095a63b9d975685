"""Embedding a batch of values where some may be missing or refused: the ingest pipeline and the
embed service both fill vector columns this way, so one bad image never costs its batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from embeddings.base import Embedder


def embed_values(embedder: Embedder, values: list[Any], is_image: bool) -> list[np.ndarray | None]:
    """One vector per value; None for a missing value or one the model cannot take."""
    out: list[np.ndarray | None] = [None] * len(values)
    present = [i for i, v in enumerate(values) if v]
    if not present:
        return out
    embed = embedder.embed_images if is_image else embedder.embed_texts
    try:
        matrix = embed([values[i] for i in present])
        for i, row in zip(present, matrix, strict=True):
            out[i] = row
    except Exception:  # one bad image must not cost the batch: retry one by one
        for i in present:
            try:
                out[i] = embed([values[i]])[0]
            except Exception:
                out[i] = None
    return out
