"""Probe image bytes: format, size, pixel mode and frame count, without decoding pixels.

The common formats are read from their headers directly (PNG, JPEG) or through a header-only
parser (TIFF via tifffile), and checked for truncation by their structure (PNG chunk chain and
IEND, JPEG end-of-image marker, TIFF strip extents). Other formats go through Pillow, which
decodes the first frame. ``verify="decode"`` decodes every image fully for the paranoid.

Every failure is a ``ProbeError`` with a short machine-readable reason; ingest reports it and
skips the file, the run goes on.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image, PngImagePlugin

# Pillow's own bomb threshold (2 x MAX_IMAGE_PIXELS): decoding past it is refused by default. It bounds
# every frame or page; all of them together may decode to at most BYTES_PER_PIXEL_LIMIT x that many bytes
# (one frame at the limit in 16-bit RGBA, or eight 8-bit grey ones).
DEFAULT_MAX_PIXELS = 2 * 89_478_485
BYTES_PER_PIXEL_LIMIT = 8
# Bytes per pixel as Pillow holds a frame (every 8-bit multi-band mode takes four); anything else is a
# numpy dtype name (tifffile's modes), costed by its item size.
PIL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}
PNG_SIG = b"\x89PNG\r\n\x1a\n"
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
Verify = Literal["header", "decode"]

MIME_BY_FORMAT = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "ICO": "image/x-icon",
    "PPM": "image/x-portable-anymap",
    "JPEG2000": "image/jp2",
}


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    width: int
    height: int
    mode: str
    frames: int
    # the largest frame or page, in pixels, and every frame decoded, in bytes (0: from the first frame)
    frame_pixels: int = field(default=0, compare=False)
    decoded_bytes: int = field(default=0, compare=False)


def frame_bytes(width: int, height: int, mode: str, frames: int = 1) -> int:
    """Bytes ``frames`` frames of this size and mode take decoded; an animation's frames after the
    first are RGB(A), four bytes a pixel in Pillow, whatever the first frame's mode."""
    per_pixel = PIL_BYTES.get(mode) or np_itemsize(mode)
    first = width * height * per_pixel
    return first + (frames - 1) * width * height * max(per_pixel, 4)


def np_itemsize(mode: str) -> int:
    """A tifffile mode (``uint16``, ``float32x3``) in bytes per pixel; Pillow's 8-bit multi-band modes are 4."""
    import numpy as np

    dtype, _, samples = mode.partition("x")
    try:
        return np.dtype(dtype).itemsize * (int(samples) if samples else 1)
    except (TypeError, ValueError):
        return 4


class ProbeError(Exception):
    """A file that cannot be stored as an image; ``reason`` is a short stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def sniff(data: bytes) -> str | None:
    """The format named by the leading magic bytes, or None."""
    head = data[:16]
    if head.startswith(PNG_SIG):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    return None


def probe(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, verify: Verify = "header") -> ImageInfo:
    """Describe an image from its bytes; raise ``ProbeError`` for anything not storable."""
    if not data:
        raise ProbeError("empty", "the file is empty")
    fmt = sniff(data)
    if fmt == "PNG":
        info = _probe_png(data)
    elif fmt == "JPEG":
        info = _probe_jpeg(data)
    elif fmt == "TIFF":
        info = _probe_tiff(data)
    elif fmt == "GIF" and not data.rstrip(b"\x00").endswith(b";"):
        # Pillow counts the frames it finds and stops quietly, so a cut GIF would pass as a shorter one.
        raise ProbeError("truncated", "GIF ends before its trailer")
    else:
        info = _probe_pillow(data, fmt, max_pixels)
    if info.width <= 0 or info.height <= 0:
        raise ProbeError("corrupt", f"image reports size {info.width}x{info.height}")
    _check_bomb(info, max_pixels)
    if verify == "decode":
        _decode_check(data, info)
    return info


def _check_bomb(info: ImageInfo, max_pixels: int) -> None:
    """Every frame or page within ``max_pixels``, and all of them within ``max_pixels x 8`` bytes decoded."""
    largest = info.frame_pixels or info.width * info.height
    if largest > max_pixels:
        where = "" if info.frames == 1 else " (its largest frame or page)"
        raise ProbeError("decompression_bomb",
                         f"{info.width}x{info.height} image{where}: {largest} pixels exceeds the limit of {max_pixels}")
    decoded = info.decoded_bytes or frame_bytes(info.width, info.height, info.mode, info.frames)
    if decoded > max_pixels * BYTES_PER_PIXEL_LIMIT:
        raise ProbeError("decompression_bomb",
                         f"{info.frames} frame(s) of {info.width}x{info.height} {info.mode} decode to {decoded} bytes, "
                         f"over the limit of {max_pixels * BYTES_PER_PIXEL_LIMIT}")


def _probe_png(data: bytes) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ProbeError("truncated", "PNG header is incomplete")
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    mode = PngImagePlugin._MODES.get((depth, color))
    if mode is None:
        raise ProbeError("corrupt", f"PNG has an invalid bit depth/colour type ({depth}, {color})")
    frames, pos, end, size = 1, 8, len(data), len(data)
    seen_end = False
    complete = data.endswith(PNG_END)  # then only the chunks before the pixel data need reading
    while pos + 8 <= end:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if pos + 12 + length > size:
            raise ProbeError("truncated", f"PNG chunk {kind!r} runs past the end of the file")
        if kind == b"acTL" and length >= 8:
            (frames,) = struct.unpack(">I", data[pos + 8 : pos + 12])
        if kind == b"IDAT" and complete:  # acTL comes before IDAT; the file ends with its IEND
            seen_end = True
            break
        if kind == b"IEND":
            seen_end = True
            break
        pos += 12 + length
    if not seen_end:
        raise ProbeError("truncated", "PNG ends before its IEND chunk")
    return ImageInfo("image/png", width, height, mode[0], max(frames, 1))


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}


def _probe_jpeg(data: bytes) -> ImageInfo:
    tail = data[-65536:].rstrip(b"\x00")
    if b"\xff\xd9" not in tail[-4096:]:
        raise ProbeError("truncated", "JPEG has no end-of-image marker")
    pos, size = 2, len(data)
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            raise ProbeError("corrupt", f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 10 > size:
                break
            if data.rfind(b"\xff\xd9") < pos:  # the only end marker belongs to an embedded thumbnail
                raise ProbeError("truncated", "JPEG has no end-of-image marker after its frame header")
            height, width, comps = struct.unpack(">HHB", data[pos + 5 : pos + 10])
            return ImageInfo("image/jpeg", width, height, _JPEG_MODES.get(comps, f"{comps}ch"), 1)
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise ProbeError("corrupt", "JPEG has no frame header")


def _probe_tiff(data: bytes) -> ImageInfo:
    import tifffile

    _check_tiff_layout(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the stream is closed with the file: tifffile's objects refer to one another, so an open stream
            # (holding every byte) would wait for the cyclic collector, which an ingest runs rarely
            with io.BytesIO(data) as stream, tifffile.TiffFile(stream) as tif:
                pages = tif.pages
                frames = len(pages)
                first = pages.first
                width, height = int(first.imagewidth), int(first.imagelength)
                mode = _tiff_mode(first, tifffile.PHOTOMETRIC.RGB)
                size, largest, decoded = len(data), 0, 0
                for page in pages:
                    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                        if offset + count > size:
                            raise ProbeError("truncated", "TIFF image data runs past the end of the file")
                    largest = max(largest, int(page.imagewidth) * int(page.imagelength))
                    decoded += int(page.nbytes)
    except ProbeError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise ProbeError("corrupt", f"unreadable TIFF: {exc}") from exc
    return ImageInfo("image/tiff", width, height, mode, frames, largest, decoded)


# Bytes per value of each TIFF field type (BYTE, ASCII, SHORT, LONG, RATIONAL, ..., LONG8, IFD8).
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
                    16: 8, 17: 8, 18: 8}


def _check_tiff_layout(data: bytes) -> None:
    """Every IFD and every out-of-line tag value must lie inside the file.

    tifffile only logs a page or tag that points past the end and then drops it, so without this a
    truncated multi-page TIFF would be stored as a shorter, apparently valid one.
    """
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    word, count_fmt, entry = ("Q", "Q", 20) if big else ("I", "H", 12)
    word_size, size = struct.calcsize(word), len(data)

    def read(fmt: str, pos: int) -> int:
        if pos + struct.calcsize(order + fmt) > size:
            raise ProbeError("truncated", "TIFF structure runs past the end of the file")
        return struct.unpack_from(order + fmt, data, pos)[0]

    offset, seen = read(word, 8 if big else 4), set()
    while offset and offset not in seen:
        seen.add(offset)
        count = read(count_fmt, offset)
        first = offset + struct.calcsize(count_fmt)
        for at in range(first, first + count * entry, entry):
            nbytes = _TIFF_TYPE_SIZES.get(read("H", at + 2), 1) * read(word, at + 4)
            if nbytes > word_size and read(word, at + 4 + word_size) + nbytes > size:
                raise ProbeError("truncated", "a TIFF tag value runs past the end of the file")
        offset = read(word, first + count * entry)


def _tiff_mode(page: object, rgb: object) -> str:
    """numpy dtype for one-sample pages (``uint16``); ``RGB``/``RGBA`` for 8-bit colour; else dtype x samples."""
    dtype = str(page.dtype) if page.dtype is not None else "unknown"  # type: ignore[attr-defined]
    samples = int(page.samplesperpixel)  # type: ignore[attr-defined]
    if samples == 1:
        return dtype
    if dtype == "uint8" and page.photometric == rgb and samples in (3, 4):  # type: ignore[attr-defined]
        return "RGB" if samples == 3 else "RGBA"
    return f"{dtype}x{samples}"


def _probe_pillow(data: bytes, fmt: str | None, max_pixels: int) -> ImageInfo:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ProbeError("decompression_bomb", str(exc)) from exc
    except Exception as exc:
        if fmt is None:
            raise ProbeError("not_an_image", "not a recognised image format") from exc
        raise ProbeError("corrupt", f"unreadable {fmt}: {exc}") from exc
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise ProbeError(
                "decompression_bomb", f"{width}x{height} pixels exceeds the limit of {max_pixels}"
            )
        try:
            frames = int(getattr(img, "n_frames", 1))
            img.seek(0)
            img.load()
        except Exception as exc:
            raise ProbeError("truncated", f"{img.format} data is incomplete or damaged: {exc}") from exc
        fmt_name = img.format or fmt or "unknown"
        mime = MIME_BY_FORMAT.get(fmt_name) or Image.MIME.get(fmt_name, "application/octet-stream")
        return ImageInfo(mime, width, height, img.mode, frames)


def _decode_check(data: bytes, info: ImageInfo) -> None:
    """Decode every pixel once; used when the caller asked for full verification."""
    try:
        if info.mime == "image/tiff":
            import tifffile

            with io.BytesIO(data) as stream:  # closed at once, as in _probe_tiff
                tifffile.imread(stream, key=range(info.frames))
            return
        with Image.open(io.BytesIO(data)) as img:
            for frame in range(info.frames):
                img.seek(frame)
                img.load()
    except Exception as exc:
        raise ProbeError("corrupt", f"pixel data does not decode: {exc}") from exc
