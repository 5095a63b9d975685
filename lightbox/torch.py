"""PyTorch datasets over pinned table versions: ``table.at(tag="v1").torch_dataset(...)``.

>>> ds = client.table("digits").at(tag="v1").torch_dataset(filter="split = 'train'", columns=["label"])
>>> len(ds), ds[0]["image"].shape, ds[0]["image"].dtype, ds[0]["label"]
(1437, torch.Size([1, 8, 8]), torch.uint8, 0)
>>> loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)
>>> batch = next(iter(loader)); batch["image"].shape, batch["label"].shape
(torch.Size([32, 1, 8, 8]), torch.Size([32]))

**Pinned.** The dataset always reads one immutable point: a handle at a version or a tag is used
as is; any other handle (main's latest, ``at(as_of=...)``) is pinned to the version it reads when
the dataset is made, so rows written later (or concurrently, while training) are never seen. A
branch handle is refused (a branch moves): use ``at(version=N, branch=...)``, or tag the branch's
point and use ``at(tag=...)``.

**Rows.** The ids matching ``filter`` are fetched once, in the table's order; ``len`` is their
number. ``ds[i]`` is a dict: ``id``, ``image``, and the ``columns`` asked for (by default the
table's own metadata columns, such as ``label``, ``split``, ``ink``; not the standard image columns
or vectors). A DataLoader's batches are fetched with one ``POST /fetch`` each (``__getitems__``).

**Images.** With ``decode=True`` (the default) ``image`` is a CHW tensor of the first frame:
``torch.uint8`` for 8-bit images (L, RGB, RGBA; palette images become RGB or RGBA, 1-bit become
0/255), ``torch.int32`` holding the original 0..65535 values for 16-bit images (torch's uint16 has
few operations), ``torch.int32`` for 32-bit integer images and ``torch.float32`` for float images.
With ``decode=False`` it is the original file bytes. ``transform`` is applied to the image (either
kind); vector columns asked for in ``columns`` become float32 tensors, timestamps ISO strings.

**Workers.** HTTP connections are opened lazily per process (checked with ``os.getpid()``), so the
dataset is safe to use after fork (the DataLoader default on Linux) and picklable for spawn.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightbox._wire import Options
from lightbox.errors import LightboxError

if TYPE_CHECKING:
    from lightbox.client import Client, Table

__all__ = ["TableDataset", "decode_image"]
Sample = dict[str, Any]


class TableDataset(Dataset[Sample]):
    """A map-style dataset over the rows of one pinned table version (make it with ``Table.torch_dataset``)."""

    def __init__(self, options: Options, spec: dict[str, Any], *, transform: Callable[[Any], Any] | None = None,
                 decode: bool = True) -> None:
        self.options = options
        self.name: str = spec["name"]
        self.ref: dict[str, Any] = dict(spec["ref"])
        self.version: int = spec["version"]
        self.ids: list[str] = list(spec["ids"])
        self.columns: list[str] = list(spec["columns"])
        self.images: bool = bool(spec["images"])
        self.transform = transform
        self.decode = decode
        self._client: Client | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        pinned = ", ".join(f"{k}={v!r}" for k, v in self.ref.items())
        return f"TableDataset({self.name!r}, {pinned}, version={self.version}, rows={len(self)})"

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Sample:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[Sample]:
        """The samples at ``indices``, fetched in one request (the DataLoader calls this once per batch)."""
        ids = [self.ids[i] for i in indices]
        rows = self.table().fetch(ids, ["id", *self.columns], with_images=self.images)
        if rows.num_rows != len(ids):
            raise LightboxError(f"{len(ids) - rows.num_rows} row(s) of pinned {self.ref} are gone "
                                f"(was the version pruned?)", code="rows_missing")
        return [self._sample(row) for row in rows.to_pylist()]

    def table(self) -> Table:
        """The pinned table handle, on a client owned by the current process."""
        if self._client is None or self._pid != os.getpid():
            from lightbox.client import Client

            o = self.options  # a forked child never touches (or closes) its parent's connections
            self._client = Client(o.url, o.api_key, timeout=o.timeout, retries=o.retries, backoff=o.backoff)
            self._pid = os.getpid()
        return self._client.table(self.name).at(**self.ref)

    def close(self) -> None:
        """Close this process's connections (they are reopened on the next read)."""
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"], state["_pid"] = None, None
        return state

    def _sample(self, row: dict[str, Any]) -> Sample:
        sample: Sample = {"id": row["id"]}
        if self.images:
            data = row.get("image")
            image: Any = decode_image(data) if self.decode and data is not None else data
            sample["image"] = self.transform(image) if self.transform is not None else image
        for column in self.columns:
            sample[column] = _value(row.get(column))
        return sample


def decode_image(data: bytes) -> torch.Tensor:
    """Image bytes as a CHW tensor of the first frame (dtypes as in the module docstring)."""
    pixels = _pixels(data)
    if pixels.ndim == 2:
        pixels = pixels[None]
    elif pixels.ndim == 3:
        pixels = pixels.transpose(2, 0, 1)
    else:
        raise ValueError(f"cannot make a CHW tensor of pixels shaped {pixels.shape}")
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8) * 255
    elif pixels.dtype.kind in "iu" and pixels.dtype != np.uint8:
        pixels = pixels.astype(np.int64 if pixels.dtype.itemsize > 4 or pixels.dtype == np.uint32 else np.int32)
    elif pixels.dtype.kind == "f":
        pixels = pixels.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels))


_KEEP = {"L", "LA", "RGB", "RGBA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
_CONVERT = {"1": "L", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}


def _pixels(data: bytes) -> np.ndarray:
    """The first frame as a numpy array (HW or HWC) in its own depth; TIFFs Pillow cannot read go to tifffile."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.seek(0)
            mode = img.mode
            if mode == "P":
                target = "RGBA" if "transparency" in img.info else "RGB"
            else:
                target = mode if mode in _KEEP else _CONVERT.get(mode, "RGB")
            frame = img if target == mode else img.convert(target)
            return np.array(frame)  # a writable copy: torch will own it
    except (UnidentifiedImageError, OSError, ValueError):
        if data[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            raise
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        array = page.asarray()
        if array.ndim == 3 and getattr(page, "planarconfig", 1) == 2:  # separate planes: CHW
            array = array.transpose(1, 2, 0)
        return array


def _value(value: Any) -> Any:
    """A column value default_collate can batch: number lists become tensors, times ISO strings."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return torch.tensor(value, dtype=torch.float32)
    return value
