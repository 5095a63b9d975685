"""``builtin``: a weight-free image embedder for near-duplicate and look-alike search.

Every image, whatever its format, depth or size, is decoded to its first frame, flattened to
8-bit RGB (alpha over white, deep and float images stretched between their 0.5th and 99.5th
percentiles) and resampled to a 64x64 canvas. Two blocks of features are taken from it, both
independent of brightness and contrast, and concatenated with fixed weights (``RECIPE``):

- ``hog`` (192 values, weight 1): gradient-orientation histograms, 12 signed orientations
  soft-binned, pooled on a 4x4 grid of overlapping (tent-weighted) cells under a centred Gaussian
  window, unit length, square-rooted and mean-removed. Edges, their polarity and texture;
  tolerant of rescaling, recompression, noise, crops and small rotations (the window plays down
  the borders, where crops and rotations act).
- ``chroma`` (32 values, weight 0.3): the two opponent colour channels on a 4x4 grid, relative to
  the image's luminance contrast, length at most 1 (zero for grayscale images), so a recoloured
  image is not taken for the original.

The cosine of two vectors is then close to the weighted mean of the blocks' cosines. Vectors are
float32, L2-normalised, meant for cosine similarity, and deterministic. ``thumb`` (a windowed
grayscale thumbnail) is kept as a candidate block. ``bench/near_duplicates.py`` scores this recipe
against the candidates it was chosen from (thumbnails, DCT, pHash, colour histograms, HOG
variants and weighted mixes); see ``bench/RESULTS.md``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import cache

import numpy as np
from PIL import Image

from embeddings.base import not_an_image

CANVAS = 64  # every image is resampled to CANVAS x CANVAS RGB before features are taken
GRID = 32  # gradients are taken on a GRID x GRID grayscale version of the canvas
WINDOW = 0.3  # sigma of the centring window, as a fraction of the image side
EPS = 1e-8
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
Recipe = Sequence[tuple[str, float]]  # (block name, weight)


# -- decoding ----------------------------------------------------------------------------------
def decode(data: bytes) -> Image.Image:
    """The first frame of an encoded image as an 8-bit ``L`` or ``RGB`` Pillow image.

    Raises ``ValueError`` for bytes that are not a decodable image.
    """
    if not data:
        raise ValueError("the image is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if bytes(data[:4]) in TIFF_MAGIC:
            try:
                return _tiff_first_page(data)
            except Exception:  # e.g. a compression tifffile has no codec for: Pillow may still read it
                pass
        try:
            img = Image.open(io.BytesIO(data))
            img.seek(0)
            if img.format == "JPEG":  # let libjpeg decode at a reduced scale: much faster, same result here
                img.draft(None, (2 * CANVAS, 2 * CANVAS))
            img.load()
            return _to_8bit(img)
        except Image.UnidentifiedImageError:
            raise ValueError(not_an_image(data)) from None
        except Exception as exc:  # Pillow raises many types for damaged or unknown files
            raise ValueError(f"cannot decode image: {exc}") from exc


def _tiff_first_page(data: bytes) -> Image.Image:
    import tifffile

    return from_array(np.asarray(tifffile.imread(io.BytesIO(data), key=0)))


def _to_8bit(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode in ("P", "PA", "LA", "La", "RGBA", "RGBa"):
        has_alpha = mode != "P" or "transparency" in img.info
        if not has_alpha:
            return img.convert("RGB")
        rgba = img.convert("RGBA")
        flat = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), rgba)
        return flat.convert("L" if mode in ("LA", "La") else "RGB")
    if mode == "1":
        return img.convert("L")
    if mode.startswith(("I", "F")):
        return from_array(np.asarray(img))  # I;16, I, F: stretch to 8 bits
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX


def from_array(array: np.ndarray) -> Image.Image:
    """An 8-bit ``L``/``RGB`` image from a numeric array: one frame, channels last or first, alpha over white."""
    a = np.asarray(array)
    while a.ndim > 3 or (a.ndim == 3 and a.shape[0] == 1):
        a = a[0]  # the first plane of a stack
    if a.ndim == 3 and a.shape[-1] > 4:
        a = np.moveaxis(a, 0, -1) if a.shape[0] <= 4 else a[0]  # planar channels, or a stack of planes
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValueError(f"cannot make an image from an array of shape {np.shape(array)}")
    alpha = None
    if a.ndim == 3 and a.shape[-1] in (2, 4):
        a, alpha = a[..., :-1], _opacity(a[..., -1])
    if a.ndim == 3 and a.shape[-1] != 3:
        a = a[..., 0]
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = stretch(a)
    if alpha is not None:
        alpha = alpha[..., None] if a.ndim == 3 else alpha
        a = (a * alpha + 255 * (1 - alpha) + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))


def _opacity(alpha: np.ndarray) -> np.ndarray:
    """An alpha channel as float32 in [0, 1]: integers by their type's range, floats clipped."""
    if np.issubdtype(alpha.dtype, np.integer):
        return alpha.astype(np.float32) / np.float32(np.iinfo(alpha.dtype).max)
    return np.clip(np.nan_to_num(alpha.astype(np.float32), nan=1.0), 0, 1)


def stretch(a: np.ndarray) -> np.ndarray:
    """Deep or float pixels to uint8, linearly between the 0.5th and 99.5th percentiles."""
    values = a.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    sample = values[finite]
    if sample.size > 1 << 20:
        sample = sample[:: sample.size >> 20]
    lo, hi = np.percentile(sample, (0.5, 99.5))
    if hi <= lo:
        hi = lo + 1
    scaled = (np.where(finite, values, lo) - lo) / (hi - lo)
    return (np.clip(scaled, 0, 1) * 255 + 0.5).astype(np.uint8)


def canvas(img: Image.Image, size: int = CANVAS) -> np.ndarray:
    """``img`` resampled (antialiased) to ``size`` x ``size`` RGB, float32 in [0, 1]."""
    img = img if img.mode == "RGB" else img.convert("RGB")
    factor = min(img.width, img.height) // (4 * size)
    if factor >= 2:  # a cheap box reduction first; the filter below still sees 4x the target
        img = img.reduce(factor)
    small = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32) / 255.0


# -- feature blocks (each takes a canvas) -------------------------------------------------------
def gray(rgb: np.ndarray) -> np.ndarray:
    return rgb @ LUMA


def pool(x: np.ndarray, n: int) -> np.ndarray:
    """Area-average the last two axes (multiples of ``n``) down to ``n`` x ``n``."""
    h, w = x.shape[-2:]
    return x.reshape(*x.shape[:-2], n, h // n, n, w // n).mean(axis=(-3, -1))


def unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > EPS else np.zeros_like(v)


@cache
def window(size: int, sigma: float) -> np.ndarray:
    """A ``size`` x ``size`` Gaussian window centred on the image; ``sigma`` as a fraction of the side."""
    x = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    w = np.exp(-0.5 * (x / sigma) ** 2) if sigma > 0 else np.ones(size, np.float32)
    out = np.outer(w, w).astype(np.float32)
    out.flags.writeable = False  # cached and shared
    return out


@cache
def tent(size: int, cells: int) -> np.ndarray:
    """``cells`` x ``size`` pooling weights: each pixel split linearly between its two nearest cells."""
    pos = (np.arange(size, dtype=np.float32) + 0.5) * cells / size - 0.5
    lo = np.floor(pos)
    frac = pos - lo
    w = np.zeros((cells, size), np.float32)
    idx = np.arange(size)
    for cell, weight in ((lo, 1 - frac), (lo + 1, frac)):
        ok = (cell >= 0) & (cell < cells)
        w[cell[ok].astype(np.int64), idx[ok]] += weight[ok]
    w.flags.writeable = False  # cached and shared
    return w


def orientation_maps(g: np.ndarray, bins: int = 12, signed: bool = True) -> np.ndarray:
    """``bins`` x H x W gradient magnitudes, each pixel's split between its two nearest orientations."""
    p = np.pad(g, 1, mode="edge")
    gx = p[1:-1, 2:] - p[1:-1, :-2]
    gy = p[2:, 1:-1] - p[:-2, 1:-1]
    mag = np.hypot(gx, gy)
    span = 2 * np.pi if signed else np.pi
    pos = (np.arctan2(gy, gx) % span) * (bins / span) - 0.5
    lo = np.floor(pos)
    frac = pos - lo
    lo_i = lo.astype(np.int64) % bins
    b = np.arange(bins)[:, None, None]
    return (np.where(b == lo_i, mag * (1 - frac), 0) + np.where(b == (lo_i + 1) % bins, mag * frac, 0)).astype(
        np.float32
    )


def hog(rgb: np.ndarray, cells: int = 4, bins: int = 12, signed: bool = True, sigma: float = WINDOW,
        size: int = GRID) -> np.ndarray:
    """Orientation histograms on a ``cells`` x ``cells`` grid: unit length, square-rooted, mean removed."""
    maps = orientation_maps(pool(gray(rgb), size), bins, signed) * window(size, sigma)
    w = tent(size, cells)
    h = np.sqrt(unit((w @ maps @ w.T).transpose(1, 2, 0).ravel()))
    return unit(h - h.mean())


def thumb(rgb: np.ndarray, n: int = 8, sigma: float = WINDOW) -> np.ndarray:
    """An ``n`` x ``n`` grayscale thumbnail, mean removed, under the centring window, unit length."""
    t = pool(gray(rgb), n)
    return unit(((t - t.mean()) * window(n, sigma)).ravel())


def chroma(rgb: np.ndarray, n: int = 4) -> np.ndarray:
    """Opponent colours on an ``n`` x ``n`` grid relative to the luminance contrast; length at most 1."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    opp = np.stack([pool(r - g, n) / np.sqrt(2), pool(r + g - 2 * b, n) / np.sqrt(6)]).ravel()
    lum = gray(rgb)
    v = opp / ((float(lum.std()) + 0.25 * float(lum.mean()) + 0.02) * n)
    return v / max(1.0, float(np.linalg.norm(v)))


BLOCKS: Mapping[str, Callable[[np.ndarray], np.ndarray]] = {"hog": hog, "thumb": thumb, "chroma": chroma}
RECIPE: Recipe = (("hog", 1.0), ("chroma", 0.3))


def combine(blocks: Mapping[str, np.ndarray], recipe: Recipe) -> np.ndarray:
    """Weighted concatenation, L2-normalised: its cosine ~ the weighted mean of the blocks' cosines."""
    v = unit(np.concatenate([np.sqrt(weight) * blocks[name] for name, weight in recipe]).astype(np.float32))
    if not v.any():  # a flat gray image has no features: all such images share one vector
        v = np.full(v.shape, 1 / np.sqrt(v.size), np.float32)
    return v


# -- the embedder ------------------------------------------------------------------------------
class BuiltinImageEmbedder:
    """Weight-free image embedder (see the module docstring): images only, 224-d, cosine."""

    name = "builtin"
    modalities = frozenset({"image"})
    metric = "cosine"

    def __init__(self) -> None:
        blank = np.zeros((CANVAS, CANVAS, 3), np.float32)
        self.dim: int = sum(BLOCKS[name](blank).size for name, _ in RECIPE)

    def embed_image(self, data: bytes) -> np.ndarray:
        """One image's float32 vector of length ``dim``; ``ValueError`` if the bytes cannot be decoded."""
        rgb = canvas(decode(data))
        return combine({name: BLOCKS[name](rgb) for name, _ in RECIPE}, RECIPE)

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        """An (n, dim) float32 array of unit rows; ``ValueError`` naming the first image that fails.

        Callers that want to skip bad images call ``embed_image`` per image instead.
        """
        out = np.empty((len(images), self.dim), np.float32)
        for i, data in enumerate(images):
            try:
                out[i] = self.embed_image(data)
            except ValueError as exc:
                raise ValueError(f"image {i} cannot be embedded: {exc}") from exc
        return out

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise ValueError("the builtin embedder embeds images only")
