"""The ``builtin`` image embedder on real images: formats, invariances, failures and retrieval."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageEnhance

from embeddings.base import Embedder
from embeddings.builtin import BuiltinImageEmbedder, decode
from lightbox.demo import sample_files


@pytest.fixture(scope="module")
def emb() -> BuiltinImageEmbedder:
    return BuiltinImageEmbedder()


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"compress_level": 1} if fmt == "PNG" else {}), **options)
    return buf.getvalue()


def tiff(array: np.ndarray, **options: Any) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **options)
    return buf.getvalue()


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def sample(name: str) -> bytes:
    return next(p for p in sample_files() if p.name == name).read_bytes()


# -- the protocol, shapes, determinism ------------------------------------------------------------
def test_implements_the_protocol(emb: BuiltinImageEmbedder) -> None:
    as_protocol: Embedder = emb
    assert as_protocol.name == "builtin"
    assert emb.dim == 224
    assert emb.modalities == frozenset({"image"})
    assert emb.metric == "cosine"
    with pytest.raises(ValueError, match=r"^the builtin embedder embeds images only$"):
        emb.embed_texts(["a cat"])


def test_shape_dtype_and_unit_rows(emb: BuiltinImageEmbedder, samples_dir: Path) -> None:
    files = sorted(p for p in samples_dir.iterdir() if p.is_file())
    vecs = emb.embed_images([p.read_bytes() for p in files])
    assert vecs.shape == (len(files), emb.dim)
    assert vecs.dtype == np.float32
    assert np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert emb.embed_images([]).shape == (0, emb.dim)


def test_deterministic(samples_dir: Path) -> None:
    data = [(samples_dir / n).read_bytes() for n in ("astronaut.png", "rocket.jpg", "camera16.tif")]
    first = BuiltinImageEmbedder().embed_images(data)
    again = BuiltinImageEmbedder().embed_images(data)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[1], BuiltinImageEmbedder().embed_image(data[1]))


def test_flat_image_still_gets_a_unit_vector(emb: BuiltinImageEmbedder) -> None:
    gray, white = (emb.embed_image(encode(Image.new("L", (40, 30), v), "PNG")) for v in (128, 255))
    assert float(np.linalg.norm(gray)) == pytest.approx(1.0, abs=1e-6)
    assert cos(gray, white) == pytest.approx(1.0, abs=1e-6)  # blank images are duplicates of each other


# -- every format Lightbox stores ------------------------------------------------------------------
def test_every_sample_format_embeds(emb: BuiltinImageEmbedder, samples_dir: Path) -> None:
    seen = set()
    for path in sorted(samples_dir.iterdir()):
        vec = emb.embed_image(path.read_bytes())
        assert vec.shape == (emb.dim,) and abs(float(np.linalg.norm(vec)) - 1) < 1e-5, path.name
        seen.add(path.suffix)
    assert {".png", ".jpg", ".gif", ".tif", ".webp", ".bmp"} <= seen


def test_same_pixels_in_other_containers_are_the_same_image(emb: BuiltinImageEmbedder, samples_dir: Path) -> None:
    camera = emb.embed_image((samples_dir / "camera.png").read_bytes())
    assert cos(camera, emb.embed_image((samples_dir / "camera.bmp").read_bytes())) > 0.9999
    assert cos(camera, emb.embed_image((samples_dir / "camera.webp").read_bytes())) > 0.98  # lossy q80
    assert cos(camera, emb.embed_image((samples_dir / "camera16.tif").read_bytes())) > 0.99  # 16-bit


def test_deep_and_float_tiffs_are_stretched(emb: BuiltinImageEmbedder) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(sample("camera.png"))))
    camera = emb.embed_image(sample("camera.png"))
    dim16 = tiff(pixels.astype(np.uint16) * 25)  # uses a tenth of the 16-bit range
    as_float = tiff(pixels.astype(np.float32) / 255 * 3.7 - 1.2)
    assert cos(camera, emb.embed_image(dim16)) > 0.99
    assert cos(camera, emb.embed_image(as_float)) > 0.99


def test_deep_tiff_alpha_is_composited_over_white(emb: BuiltinImageEmbedder) -> None:
    astro = np.asarray(Image.open(io.BytesIO(sample("astronaut.png"))))
    alpha = np.full((512, 512, 1), 65535, np.uint16)
    alpha[:, :64] = 0
    rgba16 = tiff(np.concatenate([astro.astype(np.uint16) * 257, alpha], -1), photometric="rgb",
                  extrasamples=["unassalpha"])
    white_border = astro.copy()
    white_border[:, :64] = 255
    assert cos(emb.embed_image(rgba16), emb.embed_image(encode(Image.fromarray(white_border), "PNG"))) > 0.999


def test_multipage_tiff_uses_the_first_page(emb: BuiltinImageEmbedder) -> None:
    astro = np.asarray(Image.open(io.BytesIO(sample("astronaut.png"))))
    camera = np.asarray(Image.open(io.BytesIO(sample("camera.png"))).convert("RGB"))
    stack = tiff(np.stack([astro, camera]), photometric="rgb")
    assert cos(emb.embed_image(stack), emb.embed_image(sample("astronaut.png"))) > 0.999
    shipped = emb.embed_image(sample("multipage.tif"))
    first = tifffile.imread(io.BytesIO(sample("multipage.tif")), key=0)
    assert cos(shipped, emb.embed_image(encode(Image.fromarray(first), "PNG"))) > 0.9999
    planar = tifffile.imread(io.BytesIO(sample("multipage_rgb.tif")))  # float64 pages x channels x H x W
    assert planar.ndim == 4
    assert np.isfinite(emb.embed_image(sample("multipage_rgb.tif"))).all()


def test_animated_gif_uses_the_first_frame(emb: BuiltinImageEmbedder) -> None:
    data = sample("no_time_for_that_tiny.gif")
    with Image.open(io.BytesIO(data)) as gif:
        assert getattr(gif, "n_frames", 1) > 1
        first = encode(gif.convert("RGB"), "PNG")
    assert cos(emb.embed_image(data), emb.embed_image(first)) > 0.9999


def test_palette_cmyk_and_alpha(emb: BuiltinImageEmbedder) -> None:
    astro = Image.open(io.BytesIO(sample("astronaut.png"))).convert("RGB")
    reference = emb.embed_image(encode(astro, "JPEG", quality=95))
    palette = encode(astro.quantize(256), "PNG")
    cmyk = encode(astro.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(palette)).mode == "P" and Image.open(io.BytesIO(cmyk)).mode == "CMYK"
    assert cos(reference, emb.embed_image(palette)) > 0.97
    assert cos(reference, emb.embed_image(cmyk)) > 0.99
    # alpha is composited over white: a transparent border reads as a white one
    rgba = astro.convert("RGBA")
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:, :64] = 0
    rgba.putalpha(Image.fromarray(alpha))
    white_border = np.asarray(astro).copy()
    white_border[:, :64] = 255
    assert cos(emb.embed_image(encode(rgba, "PNG")), emb.embed_image(encode(Image.fromarray(white_border), "PNG"))) \
        > 0.9999
    horse = sample("horse.png")  # RGBA as shipped
    assert Image.open(io.BytesIO(horse)).mode == "RGBA"
    assert np.isfinite(emb.embed_image(horse)).all()


# -- failures ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [b"", b"definitely not an image", sample("camera.png")[:2000], b"II*\x00" + b"\x00" * 64],
    ids=["empty", "text", "truncated-png", "broken-tiff"],
)
def test_undecodable_bytes_raise_value_error(emb: BuiltinImageEmbedder, data: bytes) -> None:
    with pytest.raises(ValueError):
        emb.embed_image(data)


def test_batch_error_names_the_failing_index(emb: BuiltinImageEmbedder) -> None:
    good = sample("camera.png")
    with pytest.raises(ValueError, match=r"^image 2 cannot be embedded: "):
        emb.embed_images([good, good, b"garbage", good])


# -- what it is for: finding copies ---------------------------------------------------------------------
def _copies(img: Image.Image) -> dict[str, bytes]:
    half = img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.Resampling.LANCZOS)
    w, h = img.width, img.height
    return {
        "resized 0.5x": encode(half, "PNG"),
        "JPEG q40": encode(img, "JPEG", quality=40),
        "brightened +30%": encode(ImageEnhance.Brightness(img).enhance(1.3), "PNG"),
        "darkened -30%": encode(ImageEnhance.Brightness(img).enhance(0.7), "PNG"),
        "cropped 90%": encode(img.crop((w // 20, h // 20, w - w // 20, h - h // 20)), "PNG"),
    }


def test_copies_find_their_originals(emb: BuiltinImageEmbedder) -> None:
    """scikit-image's and scikit-learn's photos and scans, 5 edits each: measured 149 of 150 found at rank 1."""
    originals = [p for p in sample_files() if p.name != "chessboard_RGB.png"]  # same pixels as _GRAY
    gallery = emb.embed_images([p.read_bytes() for p in originals])
    hits, total, misses = 0, 0, []
    for i, path in enumerate(originals):
        img = decode(path.read_bytes())  # first frame, 8-bit L or RGB (TIFFs through tifffile)
        for name, data in _copies(img).items():
            best = int(np.argmax(gallery @ emb.embed_image(data)))
            hits += best == i
            total += 1
            if best != i:
                misses.append(f"{path.name} {name} -> {originals[best].name}")
    assert hits / total >= 0.95, misses


def test_a_copy_is_closer_than_a_scrambled_or_unrelated_image(emb: BuiltinImageEmbedder) -> None:
    img = Image.open(io.BytesIO(sample("chelsea.png"))).convert("RGB")
    original = emb.embed_image(encode(img, "PNG"))
    pixels = np.asarray(img).reshape(-1, 3).copy()
    np.random.default_rng(0).shuffle(pixels)  # same colours and histogram, no structure
    scrambled = emb.embed_image(encode(Image.fromarray(pixels.reshape(np.asarray(img).shape)), "PNG"))
    unrelated = emb.embed_image(sample("coffee.png"))
    assert cos(original, scrambled) < 0.8 and cos(original, unrelated) < 0.8  # measured 0.66 and 0.60
    for data in _copies(img).values():
        copy = emb.embed_image(data)  # measured 0.96 (the crop) to 1.0
        assert cos(original, copy) > 0.9
        assert cos(original, copy) > max(cos(original, scrambled), cos(original, unrelated)) + 0.15
