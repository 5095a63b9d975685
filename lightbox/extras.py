"""Optional dependencies: a missing one is a ``MissingExtra`` that names the pip command to run.

The heavy or rarely needed packages (pandas, torch, sentence-transformers, ...) are imported only
where they are used. When one is absent the user needs one line saying what to install, not a
traceback: the command line prints ``str(exc)`` and exits with status 2.

>>> pd = need("pandas", "pandas", "Table.to_pandas")
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtra", "install_hint", "need"]


class MissingExtra(ImportError):
    """An optional dependency is not installed; ``extra`` is the ``lightbox[...]`` extra that brings it."""

    def __init__(self, module: str, extra: str, what: str) -> None:
        self.module, self.extra, self.what = module, extra, what
        super().__init__(f"{what} needs {module!r}, which is not installed: {install_hint(extra)}", name=module)


def install_hint(extra: str) -> str:
    return f"pip install 'lightbox[{extra}]'"


def need(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise ``MissingExtra`` when it (or a package it needs) is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if isinstance(exc, MissingExtra) or _ours(exc):
            raise
        raise MissingExtra((exc.name or module).split(".")[0], extra, what) from exc  # the one not installed


def _ours(exc: ImportError) -> bool:
    """An import error inside this project's own code is a bug, not a missing extra."""
    name = exc.name or ""
    return name.split(".")[0] in {"lightbox", "app", "ingest", "embeddings"}
