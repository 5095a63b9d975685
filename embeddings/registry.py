"""Embedders by name, loaded once and kept: ``builtin``, ``clip[:<path>]`` or ``sentence-transformers:<model>``.

Heavy imports (torch, sentence-transformers) happen only when such a model is asked for.
"""

from __future__ import annotations

import importlib
import threading

from embeddings.base import Embedder


class UnknownModel(ValueError):
    """A model name no backend understands, or one that cannot be loaded here."""


class ModelNeedsExtra(UnknownModel, ImportError):
    """The model's backend is not installed (``pip install 'lightbox[embeddings]'``): one line, no traceback."""

    def __init__(self, module: str, extra: str, what: str) -> None:
        self.module, self.extra, self.what = module, extra, what
        super().__init__(f"{what} needs {module!r}, which is not installed: pip install 'lightbox[{extra}]'")


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
                importlib.import_module(module)
            except ImportError as exc:
                raise ModelNeedsExtra(module, "embeddings", f"the model {name!r}") from exc
        from embeddings.sentence import ModelUnavailable, SentenceTransformerEmbedder

        try:
            return SentenceTransformerEmbedder(name[len(prefix):])
        except ModelUnavailable as exc:
            raise UnknownModel(str(exc)) from exc
    raise UnknownModel(
        f"unknown model {name!r}: use 'builtin', 'clip', 'clip:<local path>' or "
        "'sentence-transformers:<model name or local path>'"
    )
