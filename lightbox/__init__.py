"""Lightbox: versioned image tables on Lance. This package is the SDK; ``lightbox.cli`` is the command.

>>> import lightbox
>>> client = lightbox.Client("http://127.0.0.1:8000")
>>> t = client.table("digits")
>>> t.query("label = 3", columns=["id"], limit=5)          # a pyarrow.Table
>>> ds = t.at(tag="v1").torch_dataset(columns=["label"])    # a torch Dataset (lightbox.torch; torch optional)

``lightbox.AsyncClient`` has the same calls for asyncio. Importing ``lightbox`` imports neither
torch nor the service.
"""

from lightbox._wire import TableInfo
from lightbox.async_client import AsyncClient, AsyncTable
from lightbox.client import Client, Table, connect
from lightbox.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidId,
    LightboxError,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    ReadOnly,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    Unreachable,
    UnsupportedMediaType,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncTable",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidId",
    "LightboxError",
    "NotFound",
    "PayloadTooLarge",
    "RangeNotSatisfiable",
    "ReadOnly",
    "ServerError",
    "ServiceUnavailable",
    "Table",
    "TableInfo",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "Unreachable",
    "UnsupportedMediaType",
    "__version__",
    "connect",
]
