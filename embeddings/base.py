"""The ``Embedder`` protocol every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Turns images (raw file bytes) and/or texts into float32 vectors of one dimension."""

    name: str
    dim: int
    modalities: frozenset[str]  # {"image"}, {"text"} or both
    metric: str  # the distance the vectors are meant for: "cosine", "l2" or "dot"

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


def not_an_image(data: bytes) -> str:
    """A message a person can read for bytes no decoder recognises (Pillow's names its file object instead)."""
    if not data:
        return "the image is empty"
    return (f"the {len(data)} bytes are not an image in a format this service reads (PNG, JPEG, GIF, WebP, "
            f"TIFF, BMP, ...); they start with {data[:12]!r}")
