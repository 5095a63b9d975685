"""Decoded pixels: ``.npy`` arrays with dtype and shape preserved, and small web thumbnails.

Arrays keep what the file holds: a 16-bit TIFF stays uint16, a multi-page TIFF or an animated
GIF is frames x H x W (x C). Thumbnails render anything (16-bit, float, multi-page, CMYK, palette,
alpha) to 8-bit: deep images are stretched between their 0.5th and 99.5th percentiles so a
microscopy frame that uses a tenth of its range still shows.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from typing import Any, Literal

import numpy as np
from PIL import Image

from app.errors import BadRequest, Unprocessable
from app.store.stats import CacheStats

ThumbFormat = Literal["jpeg", "png", "webp"]
MEDIA = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


class Undecodable(Unprocessable):
    code = "undecodable_image"


def decode_array(data: bytes, mime: str) -> np.ndarray:
    """All pixels of an image, frames stacked first when there is more than one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mime == "image/tiff":
                import tifffile

                with tifffile.TiffFile(io.BytesIO(data)) as tif:
                    pages = len(tif.pages)
                    return np.asarray(tif.asarray(key=range(pages) if pages > 1 else 0))
            with Image.open(io.BytesIO(data)) as img:
                count = int(getattr(img, "n_frames", 1))
                planes = []
                for i in range(count):
                    img.seek(i)
                    planes.append(_pil_array(img))
                return planes[0] if count == 1 else np.stack(planes)
    except Exception as exc:
        raise Undecodable(f"the stored image cannot be decoded: {exc}") from exc


def to_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _pil_array(img: Image.Image) -> np.ndarray:
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    return np.asarray(img)


def render_thumbnail(data: bytes, mime: str, size: int, fmt: ThumbFormat | None) -> tuple[bytes, str]:
    """A thumbnail no larger than ``size`` on its long side; JPEG, or PNG when it has alpha."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = _first_frame(data, mime)
            img.thumbnail((size, size), Image.Resampling.LANCZOS)
    except Undecodable:
        raise
    except Exception as exc:
        raise Undecodable(f"the stored image cannot be rendered: {exc}") from exc
    return _encode(img, fmt)


def _first_frame(data: bytes, mime: str) -> Image.Image:
    if mime == "image/tiff":
        import tifffile

        return _from_array(np.asarray(tifffile.imread(io.BytesIO(data), key=0)))
    img = Image.open(io.BytesIO(data))
    img.seek(0)
    img.load()
    if img.mode in ("RGB", "RGBA", "L", "LA"):
        return img
    if img.mode in ("P", "PA"):
        return img.convert("RGBA")
    if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    if img.mode == "1":
        return img.convert("L")
    return _from_array(np.asarray(img))  # I;16, I, F: stretch to 8 bits


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
    return Image.fromarray(a)


def _stretch(a: np.ndarray) -> np.ndarray:
    values = a.astype(np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = np.percentile(finite, (0.5, 99.5))
    if hi <= lo:
        hi = lo + 1
    scaled = (np.nan_to_num(values, nan=lo) - lo) / (hi - lo)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


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


def render_resized(data: bytes, mime: str, width: int | None, height: int | None,
                   fmt: ThumbFormat | None) -> tuple[bytes, str]:
    """The image scaled to fit ``width`` x ``height`` (either may be None: aspect ratio kept; never
    enlarged), as ``fmt``, or the original's format when it is a web format (else PNG/JPEG)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = _first_frame(data, mime)
            w, h = img.size
            scale = min(1.0, (width or w) / w, (height or h) / h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            if size != img.size:
                img = img.resize(size, Image.Resampling.LANCZOS)
    except Exception as exc:
        raise Undecodable(f"the stored image cannot be rendered: {exc}") from exc
    own = next((name for name, media in MEDIA.items() if media == mime), None)
    return _encode(img, fmt or own)


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
