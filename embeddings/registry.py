"""Embedders by name, loaded once and kept: ``builtin``, ``clip[:<path>]`` or ``sentence-transformers:<model>``.

Heavy imports (torch, sentence-transformers) happen only when such a model is asked for.
"""

from __future__ import annotations

import threading

from embeddings.base import Embedder
from lightbox.extras import MissingExtra, need


class UnknownModel(ValueError):
    """A model name no backend understands, or one that cannot be loaded here."""


class ModelNeedsExtra(MissingExtra, UnknownModel):
    """The model's backend is not installed (``pip install 'lightbox[embeddings]'``): one line, no traceback."""


class Registry:
    """Caches embedders by name; one per process (models are big)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Embedder] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Embedder:
        with self._lock:
            found = self._loaded.get(name)
            if found is None:
                found = load(name)
                self._loaded[name] = found
            return found


def load(name: str) -> Embedder:
    """Build the embedder ``name`` names; ``UnknownModel`` when none can."""
    if name == "builtin":
        from embeddings.builtin import BuiltinImageEmbedder

        return BuiltinImageEmbedder()
    if name == "clip" or name.startswith("clip:"):
        from embeddings.sentence import ModelUnavailable, clip_embedder

        try:
            return clip_embedder(name[len("clip:"):] or None)
        except ModelUnavailable as exc:
            raise UnknownModel(str(exc)) from exc
    prefix = "sentence-transformers:"
    if name.startswith(prefix) and len(name) > len(prefix):
        for module in ("torch", "sentence_transformers"):
            try:
                need(module, "embeddings", f"the model {name!r}")
            except MissingExtra as exc:
                raise ModelNeedsExtra(exc.module, exc.extra, exc.what) from exc.__cause__
        from embeddings.sentence import ModelUnavailable, SentenceTransformerEmbedder

        try:
            return SentenceTransformerEmbedder(name[len(prefix):])
        except ModelUnavailable as exc:
            raise UnknownModel(str(exc)) from exc
    raise UnknownModel(
        f"unknown model {name!r}: use 'builtin', 'clip', 'clip:<local path>' or "
        "'sentence-transformers:<model name or local path>'"
    )
