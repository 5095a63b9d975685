"""A batch's plain PNGs are probed at once from the Arrow column; every row must get what ``probe`` gives it.

The batch mixes PNGs the vectorised path reads (8-bit grey, RGB, RGBA, 16-bit) with every PNG
it must leave to ``probe`` (palettes, APNGs, ancillary chunks before the pixels, a truncated file, a file
cut inside its IDAT, an unknown bit depth, zero and huge sizes, an IHDR of the wrong length) and
with other formats, nulls and empty rows; the expected facts come from ``probe`` one file at a time.
"""

from __future__ import annotations

import hashlib
import io
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
import tifffile
from PIL import Image

from ingest.png_headers import png_headers
from ingest.probe import DEFAULT_MAX_PIXELS, ProbeError, probe
from ingest.work import Checks, Limits, check_images
from tests.test_probe import craft_png, png_chunk

LIMITS = Limits(max_file_bytes=10_000_000, max_pixels=DEFAULT_MAX_PIXELS, verify="header")


def pil_png(mode: str, size: tuple[int, int] = (28, 28), **save: object) -> bytes:
    img = Image.fromarray(np.random.default_rng(7).integers(0, 255, (size[1], size[0], 3), np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG", **save)
    return buf.getvalue()


def apng() -> bytes:
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def with_ihdr(data: bytes, width: int, height: int) -> bytes:
    body = struct.pack(">II", width, height) + data[24:29]
    return data[:8] + png_chunk(b"IHDR", body) + data[33:]


PLAIN = {
    "grey": pil_png("L"),
    "rgb": pil_png("RGB", (31, 17)),
    "rgba": pil_png("RGBA"),
    "grey16": craft_png(4, 3, 16, 0, b"\x00" + b"\x12\x34" * 4 * 3),
}
OTHERS = {
    "palette": pil_png("P"),  # its PLTE chunk comes before the pixels
    "apng": apng(),
    "text_first": PLAIN["grey"][:33] + png_chunk(b"tEXt", b"Comment\x00hi") + PLAIN["grey"][33:],
    "actl_first": PLAIN["grey"][:33] + png_chunk(b"acTL", struct.pack(">II", 3, 0)) + PLAIN["grey"][33:],
    "truncated": PLAIN["grey"][:-20],
    "idat_too_long": PLAIN["grey"][:33] + struct.pack(">I", 10_000) + PLAIN["grey"][37:],
    "bad_depth": PLAIN["grey"][:24] + b"\x07" + PLAIN["grey"][25:],
    "zero_width": with_ihdr(PLAIN["grey"], 0, 28),
    "bomb": with_ihdr(PLAIN["grey"], 100_000, 100_000),
    "overflow": with_ihdr(PLAIN["grey"], 0xFFFFFFFF, 0xFFFFFFFF),
    "ihdr_14": PLAIN["grey"][:8] + png_chunk(b"IHDR", PLAIN["grey"][16:29] + b"\x00") + PLAIN["grey"][33:],
    "jpeg": (lambda b: (Image.new("RGB", (9, 9)).save(b, format="JPEG"), b.getvalue())[1])(io.BytesIO()),
    "not_an_image": b"hello, this is text and not an image at all, long enough to look at" * 2,
    "empty": b"",
    "null": None,
}


def expected(data: bytes | None) -> tuple[str, ...]:
    try:
        info = probe(data or b"", max_pixels=LIMITS.max_pixels, verify="header")
    except ProbeError as exc:
        return ("skip", exc.reason, exc.message)
    return (info.mime, str(info.width), str(info.height), info.mode, str(info.frames),
            hashlib.sha256(data or b"").hexdigest())


def got(checks: Checks, i: int) -> tuple[str, ...]:
    if i in checks.skips:
        return ("skip", *checks.skips[i])
    facts = {k: v[0].as_py() for k, v in checks.facts([i]).items()}
    assert facts["sha256"] == checks.digest[i] and facts["size_bytes"] == checks.size[i]
    return (facts["mime"], str(facts["width"]), str(facts["height"]), facts["mode"], str(facts["frames"]),
            facts["sha256"])


@pytest.mark.parametrize("kind", [pa.binary(), pa.large_binary()])
def test_every_row_gets_what_probe_gives_it(kind: pa.DataType) -> None:
    names = [*PLAIN, *OTHERS] * 2
    values = [{**PLAIN, **OTHERS}[n] for n in names]
    column = pa.array([None, *values], kind).slice(1)  # an offset into its buffers, as a sliced batch has
    checks = check_images(column, LIMITS)
    for i, (name, data) in enumerate(zip(names, values, strict=True)):
        assert got(checks, i) == expected(data), name
        assert checks.size[i] == len(data or b""), name


def test_plain_pngs_are_read_at_once_and_nothing_else_is() -> None:
    values = [*PLAIN.values(), *OTHERS.values()]
    column = pa.array(values, pa.large_binary())
    offsets = np.frombuffer(column.buffers()[1], np.int64, len(values) + 1)
    data = np.frombuffer(column.buffers()[2], np.uint8)
    found = png_headers(data, offsets[:-1], np.diff(offsets), max_pixels=DEFAULT_MAX_PIXELS, max_bytes=10_000_000)
    assert found.rows.tolist() == list(range(len(PLAIN)))
    assert [found.modes[c] for c in found.mode] == [probe(v).mode for v in PLAIN.values()]  # type: ignore[arg-type]


def test_the_file_size_limit_and_decode_verification_are_probes_to_apply() -> None:
    data = PLAIN["grey"]
    small = check_images(pa.array([data]), Limits(len(data) - 1, DEFAULT_MAX_PIXELS, "header"))
    assert small.skips[0][0] == "too_large"
    broken = data[:41] + b"\x00" * (len(data) - 41 - 16) + data[-16:]  # IDAT bytes zeroed: headers fine
    decoded = check_images(pa.array([broken]), Limits(10_000_000, DEFAULT_MAX_PIXELS, "decode"))
    assert decoded.skips[0][0] == "corrupt"
    assert 0 not in check_images(pa.array([broken]), LIMITS).skips


def test_large_images_are_checked_on_the_pool_in_order() -> None:
    """Rows large enough for threads (TIFF stacks) go through ``probe`` on the pool, their results in row order."""
    rng = np.random.default_rng(3)
    tiffs = []
    for i in range(12):
        buf = io.BytesIO()
        tifffile.imwrite(buf, rng.integers(0, 65535, (700, 1000), np.uint16) + i, photometric="minisblack")
        tiffs.append(buf.getvalue())
    values = [*tiffs[:6], tiffs[6][:-1000], *tiffs[7:]]  # one cut short: skipped, in its place
    with ThreadPoolExecutor(2) as pool:
        checks = check_images(pa.array(values, pa.large_binary()), LIMITS, pool)
    assert [got(checks, i) for i in range(len(values))] == [expected(v) for v in values]
    assert list(checks.skips) == [6]
