"""``/array``: a stored image's pixels as a NumPy ``.npy`` stream, one frame or page at a time.

Arrays keep what the file holds: a 16-bit TIFF stays uint16, a multi-page TIFF or an animated GIF is
frames x H x W (x C). A 50 KB GIF can hold 120 frames of 1000² (480 MB of pixels), so:

- the answer is capped in bytes (``LIGHTBOX_MAX_ARRAY_BYTES``): past it, a 422 says how large it
  would be and how to ask for one frame (``?frame=N``, 0-based; a page of a TIFF);
- frames are decoded one at a time and sent as they are decoded, so memory holds about one frame
  (reserved from the server's memory budget for as long as the stream runs) whatever the count.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from app.errors import BadRequest, LightboxError, Unprocessable
from app.services.budget import MemoryBudget
from app.services.decode import Undecodable, pil_bytes

CHUNK = 1024**2  # bytes a frame is sent in
_EIGHT_BIT = {"L", "LA", "RGB", "RGBA"}


class ArrayTooLarge(Unprocessable):
    code = "array_too_large"


@dataclass
class ArrayPlan:
    """What an ``/array`` answer will hold, known before its pixels are decoded."""

    data: bytes
    mime: str
    frames: list[int]  # which frames or pages, in order
    stacked: bool  # frames first in the shape (more than one frame in the image, none chosen)
    frame_shape: tuple[int, ...]
    dtype: np.dtype
    frame_cost: int  # bytes held while one frame is decoded and sent
    mode: str | None = None  # Pillow: the mode every frame is converted to

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.frames), *self.frame_shape) if self.stacked else self.frame_shape

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def header(self) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                   "fortran_order": False, "shape": self.shape})
        return buf.getvalue()


def plan_array(data: bytes, mime: str, frame: int | None, limit: int) -> ArrayPlan:
    """The answer's dtype and shape from the image's header; 422 past ``limit`` bytes, 400 for a frame
    the image does not have."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan = _tiff_plan(data, frame) if mime == "image/tiff" else _pillow_plan(data, frame)
    except LightboxError:
        raise
    except Exception as exc:
        raise Undecodable(f"the stored image cannot be decoded: {exc}") from exc
    check_size(plan, limit)
    return plan


def check_size(plan: ArrayPlan, limit: int) -> None:
    size = plan.nbytes
    if size > limit:
        count = len(plan.frames)
        hint = f"; ask for one frame with ?frame=0..{count - 1}" if plan.stacked else ""
        raise ArrayTooLarge(f"the array would be {size:,} bytes ({'x'.join(map(str, plan.shape))} {plan.dtype}), "
                            f"over the limit of {limit:,} (LIGHTBOX_MAX_ARRAY_BYTES){hint}",
                            bytes=size, limit=limit, shape=list(plan.shape), frames=count)


def _chosen(count: int, frame: int | None) -> tuple[list[int], bool]:
    if frame is None:
        return list(range(count)), count > 1
    if not 0 <= frame < count:
        raise BadRequest(f"frame must be from 0 to {count - 1} (the image has {count}), got {frame}",
                         frames=count)
    return [frame], False


def _tiff_plan(data: bytes, frame: int | None) -> ArrayPlan:
    import tifffile

    with io.BytesIO(data) as stream, tifffile.TiffFile(stream) as tif:  # the stream too: see ingest.probe
        frames, stacked = _chosen(len(tif.pages), frame)
        pages = [tif.pages[i] for i in frames]
        shapes = {(tuple(p.shape), str(p.dtype)) for p in pages}
        if len(shapes) > 1:
            raise Undecodable(f"the pages differ in shape or type ({sorted(shapes)}); ask for one with ?frame=",
                              frames=len(tif.pages))
        first = pages[0]
        dtype = np.dtype(first.dtype)
        cost = 2 * int(np.prod(first.shape, dtype=np.int64)) * dtype.itemsize
    return ArrayPlan(data, "image/tiff", frames, stacked, tuple(first.shape), dtype, cost)


def _pillow_plan(data: bytes, frame: int | None) -> ArrayPlan:
    with Image.open(io.BytesIO(data)) as img:
        frames, stacked = _chosen(int(getattr(img, "n_frames", 1)), frame)
        img.seek(frames[0])
        mode = _array_mode(img)
        return _pillow_shape(data, frames, stacked, img.size, mode)


def _pillow_shape(data: bytes, frames: list[int], stacked: bool, size: tuple[int, int], mode: str) -> ArrayPlan:
    sample = np.asarray(Image.new(mode, (1, 1)))
    frame_shape = (size[1], size[0], *sample.shape[2:])
    out = size[0] * size[1] * int(np.prod(sample.shape[2:], dtype=np.int64)) * sample.dtype.itemsize
    cost = pil_bytes(size, "RGBA") + pil_bytes(size, mode) + 2 * out
    return ArrayPlan(data, "pillow", frames, stacked, frame_shape, sample.dtype, cost, mode)


def _array_mode(img: Image.Image) -> str:
    """A palette image's pixels are its colours (RGBA when it has a transparent colour), never indices."""
    if img.mode == "P":
        return "RGBA" if "transparency" in img.info else "RGB"
    if img.mode == "PA":
        return "RGBA"
    return img.mode


def stream_array(plan: ArrayPlan, budget: MemoryBudget, limit: int) -> Iterator[bytes]:
    """The ``.npy`` bytes. Everything that can fail (the budget, the frames' modes, the first frame)
    happens before the first chunk is yielded, so a caller that takes it first still answers an error."""
    reservation = budget.reserve(plan.frame_cost, "a frame of this image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = _decoded(plan, limit)
            first = next(frames)
            yield plan.header()
            yield from _chunks(first)
            for pixels in frames:
                yield from _chunks(pixels)
    except LightboxError:
        raise
    except Exception as exc:
        raise Undecodable(f"the stored image cannot be decoded: {exc}") from exc
    finally:
        reservation.release()


def _chunks(pixels: np.ndarray) -> Iterator[bytes]:
    view = memoryview(np.ascontiguousarray(pixels)).cast("B")
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start:start + CHUNK])


def _decoded(plan: ArrayPlan, limit: int) -> Iterator[np.ndarray]:
    if plan.mime == "image/tiff":
        import tifffile

        with io.BytesIO(plan.data) as stream, tifffile.TiffFile(stream) as tif:
            for i in plan.frames:
                yield np.asarray(tif.pages[i].asarray(maxworkers=1))
        return
    with Image.open(io.BytesIO(plan.data)) as img:
        if len(plan.frames) > 1:
            _settle_mode(img, plan, limit)
        for i in plan.frames:
            img.seek(i)
            yield _frame(img, plan)


def _settle_mode(img: Image.Image, plan: ArrayPlan, limit: int) -> None:
    """Frames of an animation may differ in mode (a GIF's first frame is a palette, later ones RGB or
    RGBA): one mode for all, found by a first pass, so every frame has the shape the header states."""
    modes, sizes = set(), set()
    for i in plan.frames:
        img.seek(i)
        modes.add(_array_mode(img))
        sizes.add(img.size)
    if len(sizes) > 1:
        raise Undecodable(f"the frames differ in size ({sorted(sizes)}); ask for one with ?frame=")
    if len(modes) > 1 and not modes <= _EIGHT_BIT:
        raise Undecodable(f"the frames differ in pixel type ({sorted(modes)}); ask for one with ?frame=")
    if len(modes) > 1:
        mode = "RGBA" if modes & {"RGBA", "LA"} else "RGB"
        shaped = _pillow_shape(plan.data, plan.frames, plan.stacked, sizes.pop(), mode)
        plan.frame_shape, plan.dtype, plan.mode = shaped.frame_shape, shaped.dtype, mode
        check_size(plan, limit)


def _frame(img: Image.Image, plan: ArrayPlan) -> Any:
    frame = img if img.mode == plan.mode else img.convert(plan.mode)
    pixels = np.asarray(frame)
    if pixels.shape != plan.frame_shape or pixels.dtype != plan.dtype:
        raise Undecodable(f"frame {img.tell()} decodes to {pixels.shape} {pixels.dtype}, not "
                          f"{plan.frame_shape} {plan.dtype} like the others; ask for one with ?frame=")
    return pixels
