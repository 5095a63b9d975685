"""The probe reads format, size, mode and frames from headers; it must agree with a full decode.

Every expectation here comes from opening the same bytes fully with Pillow (or tifffile for TIFF),
never from the probe's own tables, and every damaged input is made from a real image.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from ingest.probe import ImageInfo, ProbeError, probe, sniff

SAMPLES = (
    "astronaut.png", "camera.png", "horse.png", "chessboard_GRAY.png", "rocket.jpg", "china.jpg",
    "no_time_for_that_tiny.gif", "multipage.tif", "multipage_rgb.tif", "camera16.tif", "camera.webp",
    "camera.bmp",
)
RNG_SEED = 20240611


# -- helpers -----------------------------------------------------------------------------------
def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def craft_png(width: int, height: int, depth: int, color: int, rows: bytes, plte: bytes = b"") -> bytes:
    """A PNG written by hand, for layouts Pillow cannot save (16-bit RGB, 2-bit grey, ...)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr)
    if plte:
        chunks += png_chunk(b"PLTE", plte)
    return b"\x89PNG\r\n\x1a\n" + chunks + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")


def bomb_png() -> bytes:
    """A well-formed PNG (valid IHDR, IDAT, IEND, CRCs) claiming 100000 x 100000 grey pixels."""
    return craft_png(100_000, 100_000, 8, 0, b"\x00" * 1000)


def scanlines(pixels: np.ndarray, row_bytes: int) -> bytes:
    """Filter type 0 before each row of already-packed big-endian bytes."""
    raw = pixels.tobytes()
    return b"".join(b"\x00" + raw[i : i + row_bytes] for i in range(0, len(raw), row_bytes))


def pillow_truth(data: bytes) -> ImageInfo:
    """What Pillow says after decoding every frame."""
    with Image.open(io.BytesIO(data)) as img:
        frames = getattr(img, "n_frames", 1)
        for i in range(frames):
            img.seek(i)
            img.load()
        img.seek(0)
        return ImageInfo(Image.MIME[img.format], img.width, img.height, img.mode, frames)


def tiff_truth(data: bytes) -> ImageInfo:
    """What tifffile says after decoding every page; mode per the contract (numpy dtype)."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        pages = list(tif.pages)
        first = pages[0]
        pixels = [page.asarray() for page in pages]
        width, height, samples = first.imagewidth, first.imagelength, first.samplesperpixel
        assert pixels[0].size == width * height * samples
        dtype = str(pixels[0].dtype)
        if samples == 1:
            mode = dtype
        elif dtype == "uint8" and first.photometric == tifffile.PHOTOMETRIC.RGB:
            mode = {3: "RGB", 4: "RGBA"}[samples]
        else:
            mode = f"{dtype}x{samples}"
        return ImageInfo("image/tiff", width, height, mode, len(pages))


def save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(height: int, width: int, channels: int = 3) -> Image.Image:
    rng = np.random.default_rng(RNG_SEED)
    return Image.fromarray(rng.integers(0, 256, (height, width, channels), dtype=np.uint8))


def reason_of(data: bytes, **kw: object) -> str:
    with pytest.raises(ProbeError) as caught:
        probe(data, **kw)  # type: ignore[arg-type]
    return caught.value.reason


# -- real sample files -------------------------------------------------------------------------
def test_samples_dir_holds_exactly_the_probed_files(samples_dir: Path) -> None:
    assert sorted(p.name for p in samples_dir.iterdir()) == sorted(SAMPLES)


@pytest.mark.parametrize("name", SAMPLES)
def test_probe_agrees_with_a_full_decode(samples_dir: Path, name: str) -> None:
    data = (samples_dir / name).read_bytes()
    truth = tiff_truth(data) if name.endswith(".tif") else pillow_truth(data)
    assert probe(data) == truth


def test_samples_cover_the_interesting_layouts(samples_dir: Path) -> None:
    """Guard the parametrized test above: the samples really include these cases."""
    info = {name: probe((samples_dir / name).read_bytes()) for name in SAMPLES}
    assert info["multipage.tif"].frames == 2
    assert info["camera16.tif"].mode == "uint16"
    assert info["no_time_for_that_tiny.gif"].frames > 1
    assert info["horse.png"].mode == "RGBA"
    assert {i.mime for i in info.values()} == {
        "image/png", "image/jpeg", "image/gif", "image/tiff", "image/webp", "image/bmp"}


# -- PNG header fast path ----------------------------------------------------------------------
def _pillow_png(mode: str) -> bytes:
    base = noise(19, 23)
    if mode == "I;16":
        wide = np.asarray(base.convert("L")).astype(np.uint16) * 257
        return save(Image.fromarray(wide), "PNG")
    if mode == "P+transparency":
        return save(base.convert("P"), "PNG", transparency=3)
    if mode == "L+transparency":
        return save(base.convert("L"), "PNG", transparency=7)
    if mode == "P 4-bit":
        return save(base.quantize(16), "PNG", bits=4)
    if mode == "APNG":
        return save(base, "PNG", save_all=True, append_images=[base.rotate(90), base.rotate(180)])
    return save(base.convert(mode), "PNG")


@pytest.mark.parametrize(
    "mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "P+transparency", "L+transparency", "P 4-bit", "APNG"]
)
def test_png_header_mode_matches_pillow(mode: str) -> None:
    data = _pillow_png(mode)
    assert sniff(data) == "PNG"
    truth = pillow_truth(data)
    if mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        assert truth.mode == mode  # the file really has the layout the test names
    assert probe(data) == truth


def _crafted_png(layout: str) -> bytes:
    rng = np.random.default_rng(RNG_SEED)
    w, h = 13, 7

    def wide(channels: int) -> np.ndarray:
        return rng.integers(0, 65536, (h, w, channels), dtype=np.uint16).astype(">u2")

    if layout == "RGB 16-bit":
        return craft_png(w, h, 16, 2, scanlines(wide(3), w * 6))
    if layout == "RGBA 16-bit":
        return craft_png(w, h, 16, 6, scanlines(wide(4), w * 8))
    if layout == "LA 16-bit":
        return craft_png(w, h, 16, 4, scanlines(wide(2), w * 4))
    if layout == "L 2-bit":
        row = (w * 2 + 7) // 8
        return craft_png(w, h, 2, 0, scanlines(rng.integers(0, 256, (h, row), dtype=np.uint8), row))
    if layout == "L 4-bit":
        row = (w * 4 + 7) // 8
        return craft_png(w, h, 4, 0, scanlines(rng.integers(0, 256, (h, row), dtype=np.uint8), row))
    if layout == "P 2-bit":
        row = (w * 2 + 7) // 8
        plte = bytes(range(12))
        return craft_png(w, h, 2, 3, scanlines(rng.integers(0, 256, (h, row), dtype=np.uint8), row), plte)
    raise AssertionError(layout)


@pytest.mark.parametrize("layout", ["RGB 16-bit", "RGBA 16-bit", "LA 16-bit", "L 2-bit", "L 4-bit", "P 2-bit"])
def test_png_header_mode_matches_pillow_for_other_bit_depths(layout: str) -> None:
    data = _crafted_png(layout)
    assert probe(data) == pillow_truth(data)


# -- JPEG header fast path ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_header_matches_pillow(mode: str, progressive: bool) -> None:
    data = save(noise(37, 53).convert(mode), "JPEG", quality=85, progressive=progressive)
    truth = pillow_truth(data)
    assert truth.mode == mode
    assert probe(data) == truth


def test_jpeg_with_exif_before_the_frame_header() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Lightbox test camera"  # Make
    exif[0x0110] = "x" * 3000  # Model: a large APP1 segment before SOF
    data = save(noise(40, 60), "JPEG", exif=exif.tobytes())
    assert data.index(b"\xff\xe1") < data.index(b"\xff\xc0")  # APP1 (EXIF) precedes the frame header
    assert probe(data) == pillow_truth(data)


# -- damaged and hostile bytes -----------------------------------------------------------------
def test_empty() -> None:
    assert reason_of(b"") == "empty"


def test_text_and_random_bytes_are_not_images() -> None:
    assert reason_of(b"id,label\n1,cat\n2,dog\n" * 20) == "not_an_image"
    rng = np.random.default_rng(RNG_SEED)
    junk = b"\x00" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert sniff(junk) is None
    assert reason_of(junk) == "not_an_image"


@pytest.mark.parametrize("name", ["astronaut.png", "horse.png", "china.jpg", "rocket.jpg",
                                  "camera16.tif", "multipage.tif", "multipage_rgb.tif",
                                  "no_time_for_that_tiny.gif", "camera.bmp"])
@pytest.mark.parametrize("keep", [0.5, 0.9, -1])
def test_truncated_files(samples_dir: Path, name: str, keep: float) -> None:
    data = (samples_dir / name).read_bytes()
    cut = data[:-1] if keep == -1 else data[: int(len(data) * keep)]
    assert reason_of(cut) == "truncated"


def test_truncated_multipage_tiff_is_not_stored_as_a_shorter_one(samples_dir: Path) -> None:
    """Cut inside the second page: tifffile alone would report one valid page and say nothing."""
    data = (samples_dir / "multipage.tif").read_bytes()
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        second = tif.pages[1].offset
    assert reason_of(data[: second + 4]) == "truncated"


def test_truncated_jpeg_with_an_embedded_thumbnail() -> None:
    """A thumbnail's end-of-image marker near the cut must not pass for the main image's."""
    thumb = save(noise(16, 16), "JPEG")
    main = save(noise(256, 256), "JPEG")
    comment = b"\xff\xfe" + struct.pack(">H", len(thumb) + 2) + thumb
    whole = main[:2] + comment + main[2:]
    assert probe(whole) == pillow_truth(whole)
    assert reason_of(whole[: 2 + len(comment) + 1000]) == "truncated"


def test_decompression_bomb_png_header() -> None:
    """A structurally valid PNG that claims 100000 x 100000 pixels: refused without decoding."""
    bomb = bomb_png()
    assert bomb.endswith(png_chunk(b"IEND", b"")) and len(bomb) < 2000
    assert reason_of(bomb) == "decompression_bomb"


def test_decompression_bomb_jpeg_header() -> None:
    data = bytearray(save(noise(20, 30), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    assert reason_of(bytes(data)) == "decompression_bomb"


@pytest.mark.parametrize("name", ["camera.png", "china.jpg", "camera16.tif", "camera.bmp", "camera.webp"])
def test_max_pixels_applies_to_every_reader(samples_dir: Path, name: str) -> None:
    data = (samples_dir / name).read_bytes()
    assert probe(data, max_pixels=1_000_000).width >= 512
    assert reason_of(data, max_pixels=512 * 400) == "decompression_bomb"


def tiff_pages(*pages: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        for page in pages:
            tif.write(page, compression="zlib")
    return buf.getvalue()


def test_the_bomb_limit_holds_for_every_page_not_just_the_first() -> None:
    """A tiny first page in front of a huge one: the huge one is what a decode of the file holds."""
    data = tiff_pages(np.zeros((10, 10), np.uint8), np.zeros((2000, 2000), np.uint8))
    assert len(data) < 20_000
    assert reason_of(data, max_pixels=1_000_000) == "decompression_bomb"
    assert probe(data, max_pixels=4_000_000).frames == 2


def test_the_bomb_limit_counts_every_frame_in_bytes() -> None:
    """Forty frames each within the pixel limit still decode to more bytes than one frame at the limit
    in 16-bit RGBA; a deep pixel type costs its bytes, not one pixel."""
    frames = [Image.new("L", (100, 100), i * 5) for i in range(40)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert probe(buf.getvalue(), max_pixels=1_000_000).frames == 40
    assert reason_of(buf.getvalue(), max_pixels=20_000) == "decompression_bomb"  # 40 x 100² x 4 > 20000 x 8
    deep = tiff_pages(np.zeros((100, 100, 4), np.float64))  # 10000 pixels of 32 bytes each
    assert reason_of(deep, max_pixels=10_000) == "decompression_bomb"
    assert probe(tiff_pages(np.zeros((100, 100, 4), np.uint16)), max_pixels=10_000).mode == "uint16x4"


def test_png_with_impossible_bit_depth_is_corrupt() -> None:
    data = craft_png(4, 4, 3, 2, b"\x00" * 20)  # 3-bit RGB does not exist
    assert reason_of(data) == "corrupt"


def test_decode_verification_catches_damaged_pixels(samples_dir: Path) -> None:
    """The header probe trusts a well-formed chunk chain; ``verify="decode"`` decodes the pixels."""
    data = bytearray((samples_dir / "camera.png").read_bytes())
    pos = data.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", data[pos : pos + 4])
    body = bytearray(data[pos + 8 : pos + 8 + length])
    body[10 : length - 10] = bytes(length - 20)  # wipe the deflate stream, keep the chunk valid
    data[pos + 8 : pos + 8 + length] = body
    data[pos + 8 + length : pos + 12 + length] = struct.pack(">I", zlib.crc32(b"IDAT" + bytes(body)))
    damaged = bytes(data)
    assert probe(damaged).mode == "L"
    with pytest.raises(ProbeError) as caught:
        probe(damaged, verify="decode")
    assert caught.value.reason == "corrupt"
    assert probe(bytes((samples_dir / "camera.png").read_bytes()), verify="decode").mode == "L"


@pytest.mark.parametrize("verify", ["header", "full"])
def test_a_tiff_probe_leaves_no_open_stream_holding_its_bytes(verify: str) -> None:
    """tifffile's objects refer to one another, so a stream left open lives (with every byte of the file)
    until the cyclic collector runs, which an ingest runs rarely: 900 TIFFs held 1.2 GB."""
    import gc

    out = io.BytesIO()
    tifffile.imwrite(out, np.zeros((2, 64, 64), np.uint16))
    data = out.getvalue()
    out.close()
    gc.collect()
    gc.disable()
    try:
        assert probe(data, verify=verify).frames == 2  # type: ignore[arg-type]
        left = [o for o in gc.get_objects() if type(o) is io.BytesIO and not o.closed
                and o.getbuffer().nbytes == len(data)]
    finally:
        gc.enable()
    assert not left
