"""Small web renders of stored images: thumbnails and resized copies, in 8 bits.

Thumbnails render anything (16-bit, float, multi-page, CMYK, palette, alpha) to 8-bit: deep images
are stretched between their 0.5th and 99.5th percentiles so a microscopy frame that uses a tenth of
its range still shows. A render decodes no more than it needs and reserves what it will hold from
the server's memory budget first (``app.services.decode``, ``app.services.budget``); the pixels
themselves, as arrays, are ``app.services.arrays``.
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from PIL import Image

from app.errors import BadRequest, LightboxError
from app.services import decode
from app.services.budget import MemoryBudget
from app.services.decode import Undecodable
from app.store.stats import CacheStats

ThumbFormat = Literal["jpeg", "png", "webp"]
MEDIA = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
SAMPLE = 1 << 20  # values the stretch's percentiles are taken from (a strided sample of a larger image)
ROWS_AT_ONCE = 1 << 20  # values converted to 8 bits per step
__all__ = ["MEDIA", "ThumbFormat", "ThumbnailCache", "Undecodable", "check_size", "render_resized",
           "render_thumbnail", "resize_request"]


def render_thumbnail(data: bytes, mime: str, size: int, fmt: ThumbFormat | None,
                     budget: MemoryBudget) -> tuple[bytes, str]:
    """A thumbnail no larger than ``size`` on its long side; JPEG, or PNG when it has alpha."""
    return _render(data, mime, (size, size), fmt, budget, None)


def render_resized(data: bytes, mime: str, width: int | None, height: int | None, fmt: ThumbFormat | None,
                   budget: MemoryBudget) -> tuple[bytes, str]:
    """The image scaled to fit ``width`` x ``height`` (either may be None: aspect ratio kept; never
    enlarged), as ``fmt``, or the original's format when it is a web format (else PNG/JPEG)."""
    own = next((name for name, media in MEDIA.items() if media == mime), None)
    return _render(data, mime, (width, height), fmt, budget, own)


def _render(data: bytes, mime: str, box: tuple[int | None, int | None], fmt: ThumbFormat | None,
            budget: MemoryBudget, own: ThumbFormat | None) -> tuple[bytes, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mime == "image/tiff":
                import tifffile

                with tifffile.TiffFile(io.BytesIO(data)) as tif:
                    page, step = decode.tiff_source(tif, box)
                    with budget.hold(decode.tiff_cost(page, step)):
                        img = _from_array(decode.tiff_read(page, step))
                        return _encode(_fitted(img, box), fmt or own)
            img = decode.open_first_frame(data, box)
            with budget.hold(decode.pillow_cost(img)):
                img.load()
                return _encode(_fitted(_eight_bit(img, box), box), fmt or own)
    except LightboxError:
        raise
    except Exception as exc:
        raise Undecodable(f"the stored image cannot be rendered: {exc}") from exc


def _fitted(img: Image.Image, box: tuple[int | None, int | None]) -> Image.Image:
    size = decode.fit(img.size, box)
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _eight_bit(img: Image.Image, box: tuple[int | None, int | None]) -> Image.Image:
    if img.mode in ("RGB", "RGBA", "L", "LA"):
        return img
    if img.mode in ("P", "PA"):
        return img.convert("RGBA")
    if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    if img.mode == "1":
        return img.convert("L")
    pixels = np.asarray(img)  # I;16, I, F: stretch to 8 bits, from every n-th pixel when the render is small
    step = decode.step_for(img.size, decode.fit(img.size, box))
    return _from_array(pixels[::step, ::step] if step > 1 else pixels)


def _from_array(array: np.ndarray) -> Image.Image:
    """An 8-bit L/RGB/RGBA image from any numeric array (channels last or first)."""
    a = np.squeeze(array)
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[-1] not in (3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] > 4:
        a = a[..., :3]
    if a.ndim == 3 and a.shape[-1] == 2:
        a = a[..., 0]
    if a.ndim > 3 or a.ndim < 2:
        a = a.reshape(a.shape[-2:]) if a.ndim > 3 else np.atleast_2d(a)
    if a.dtype != np.uint8:
        a = _stretch(a)
    return Image.fromarray(np.ascontiguousarray(a))


def _stretch(a: np.ndarray) -> np.ndarray:
    """8 bits between the 0.5th and 99.5th percentiles, taken from a strided sample of at most
    ``SAMPLE`` values (all of them in a smaller image); converted a block of rows at a time, so a
    large image costs its 8-bit result and one block, not several float64 copies of itself."""
    flat = a.reshape(-1)
    sample = flat[::max(1, flat.size // SAMPLE)].astype(np.float64)
    finite = sample[np.isfinite(sample)]
    out = np.zeros(a.shape, np.uint8)
    if finite.size == 0:
        return out
    lo, hi = np.percentile(finite, (0.5, 99.5))
    if hi <= lo:
        hi = lo + 1
    rows = max(1, ROWS_AT_ONCE // max(1, flat.size // max(1, a.shape[0])))
    for start in range(0, a.shape[0], rows):
        block = np.nan_to_num(a[start:start + rows].astype(np.float64), nan=lo)
        out[start:start + rows] = (np.clip((block - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    return out


MAX_RESIZE = 4096


def resize_request(width: str | None, height: str | None, fmt: str | None) -> tuple[int | None, int | None,
                                                                                   ThumbFormat | None]:
    """``?width=&height=&format=`` of an image request, checked: sizes 1..4096 pixels, a web format."""
    sizes = []
    for name, text in (("width", width), ("height", height)):
        if text is None:
            sizes.append(None)
            continue
        try:
            value = int(text)
        except ValueError:
            raise BadRequest(f"{name} must be a whole number of pixels, got {text!r}") from None
        if not 1 <= value <= MAX_RESIZE:
            raise BadRequest(f"{name} must be between 1 and {MAX_RESIZE} pixels, got {value}")
        sizes.append(value)
    if fmt is not None and fmt not in MEDIA:
        raise BadRequest(f"format must be one of {', '.join(MEDIA)}, got {fmt!r}")
    return sizes[0], sizes[1], fmt  # type: ignore[return-value]


def _encode(img: Image.Image, fmt: ThumbFormat | None) -> tuple[bytes, str]:
    has_alpha = img.mode in ("RGBA", "LA")
    fmt = fmt or ("png" if has_alpha else "jpeg")
    if fmt == "jpeg" and has_alpha:
        img = img.convert("RGB" if img.mode == "RGBA" else "L")
    buf = io.BytesIO()
    img.save(buf, format=fmt.upper(), **({"quality": 85} if fmt in ("jpeg", "webp") else {}))
    return buf.getvalue(), MEDIA[fmt]


def check_size(size: int) -> int:
    if not 8 <= size <= 2048:
        raise BadRequest(f"thumbnail size must be between 8 and 2048 pixels, got {size}")
    return size


class ThumbnailCache:
    """Rendered thumbnails by (sha256, size, format): content-addressed, so any version shares them."""

    def __init__(self, max_bytes: int = 64 * 1024**2) -> None:
        self._items: OrderedDict[tuple[Any, ...], tuple[bytes, str]] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()
        self.stats = CacheStats()  # for /metrics

    def get(self, key: tuple[Any, ...]) -> tuple[bytes, str] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.stats.hit()
            else:
                self.stats.miss()
            return found

    def put(self, key: tuple[Any, ...], value: tuple[bytes, str]) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += len(value[0])
            while self._bytes > self._max and self._items:
                _, (old, _) = self._items.popitem(last=False)
                self._bytes -= len(old)

    def rendered(self, key: tuple[Any, ...], render: Callable[[], tuple[bytes, str]]) -> tuple[bytes, str]:
        """The rendering cached under ``key``, made by ``render`` (and kept) when there is none."""
        found = self.get(key)
        if found is None:
            started = time.perf_counter()
            found = render()
            self.stats.built(time.perf_counter() - started)
            self.put(key, found)
        return found
