"""Lightbox: versioned image tables on Lance. This package is the SDK; ``lightbox.cli`` is the command.

>>> import lightbox
>>> client = lightbox.Client("http://127.0.0.1:8000")
>>> client.table("digits").query("label = 3", columns=["id"], limit=5)
"""

from lightbox.client import Client, Table, TableInfo
from lightbox.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LightboxError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Unauthorized,
    Unprocessable,
)

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "LightboxError",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "Table",
    "TableInfo",
    "Unauthorized",
    "Unprocessable",
    "__version__",
]
