"""Near-duplicate retrieval with the ``builtin`` image embedder: ``python -m bench.near_duplicates [--quick] [--grid]``.

Gallery: the real images that ship with scikit-image and scikit-learn (byte for byte) and
scikit-learn's digits written as 8x8 L-mode PNGs (as ``lightbox demo`` stores them). Every
original gets edited copies (resized, recompressed, cropped, brightened, contrast-changed,
rotated, noised, flipped); each copy is a query, and a hit is its original ranked in the top k
among all originals ("vs originals") or among all originals plus every copy of every *other*
original ("+ distractors"). Flips are reported but kept out of the overall figures.

Candidate feature sets are built from blocks on the same decoded 64x64 canvases (the chosen one,
``embeddings.builtin.RECIPE``, is checked against the public ``BuiltinImageEmbedder`` output) and
scored side by side; the chosen one is also timed through the public API. Results go to
``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import PIL
from PIL import Image, ImageEnhance, ImageOps

from bench.common import cap_threads, git_state, md_table, write_section
from bench.common import machine as machine_info
from embeddings import builtin as bi

Edit = Callable[[Image.Image], Image.Image]
SECTION = "bench.near_duplicates"
FULL_DIGITS, QUICK_DIGITS = 1797, 200


# -- transforms ---------------------------------------------------------------------------------
def _resize(f: float) -> Edit:
    return lambda im: im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.LANCZOS)


def _crop(f: float) -> Edit:
    def run(im: Image.Image) -> Image.Image:
        w, h = max(1, round(im.width * f)), max(1, round(im.height * f))
        left, top = (im.width - w) // 2, (im.height - h) // 2
        return im.crop((left, top, left + w, top + h))

    return run


def _noise(im: Image.Image) -> Image.Image:
    a = np.asarray(im, dtype=np.float32)
    noisy = a + np.random.default_rng(0).normal(0, 10.0, a.shape)
    return Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8), mode=im.mode)


def _bright(f: float) -> Edit:
    return lambda im: ImageEnhance.Brightness(im).enhance(f)


def _contrast(f: float) -> Edit:
    return lambda im: ImageEnhance.Contrast(im).enhance(f)


def _rotate(deg: float) -> Edit:
    return lambda im: im.rotate(deg, Image.Resampling.BICUBIC)  # same size, black corners


def _reshared(im: Image.Image) -> Image.Image:
    return _resize(0.5)(_bright(1.2)(_crop(0.9)(im)))


# name -> (edit, JPEG quality or None for a PNG copy)
TRANSFORMS: dict[str, tuple[Edit, int | None]] = {
    "resize 0.5x": (_resize(0.5), None),
    "resize 2x": (_resize(2.0), None),
    "JPEG q30": (lambda im: im, 30),
    "JPEG q60": (lambda im: im, 60),
    "resize 0.5x + JPEG q60": (_resize(0.5), 60),
    "crop center 90%": (_crop(0.9), None),
    "crop center 80%": (_crop(0.8), None),
    "brightness +30%": (_bright(1.3), None),
    "brightness -30%": (_bright(0.7), None),
    "contrast +30%": (_contrast(1.3), None),
    "contrast -30%": (_contrast(0.7), None),
    "rotate 5°": (_rotate(5), None),
    "rotate 10°": (_rotate(10), None),
    "gaussian noise sigma=10": (_noise, None),
    "re-shared: crop 90%, +20%, 0.5x, JPEG q50": (_reshared, 50),
    "flip horizontal": (ImageOps.mirror, None),
}
SEPARATE = frozenset({"flip horizontal"})  # reported, not in the overall figures


# -- candidate blocks and recipes ---------------------------------------------------------------------
def dct_low(rgb: np.ndarray, k: int = 8, size: int = 32) -> np.ndarray:
    """Low-frequency 2D DCT-II coefficients (top-left k x k, DC dropped) of the grayscale image."""
    n = np.arange(size)
    c = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * size)) * np.sqrt(2 / size)
    c[0] /= np.sqrt(2)
    return (c @ bi.pool(bi.gray(rgb), size) @ c.T)[:k, :k].ravel()[1:].astype(np.float32)


def phash(rgb: np.ndarray) -> np.ndarray:
    """pHash as a ±1 vector: signs of the 8x8 low DCT coefficients against their median."""
    d = dct_low(rgb)
    return bi.unit(np.where(d > np.median(d), 1.0, -1.0).astype(np.float32))


def hsv_hist(rgb: np.ndarray, hues: int = 12, sats: int = 3, grays: int = 4) -> np.ndarray:
    """Global colour histogram: hue x saturation (soft in hue), plus gray bins by relative value."""
    hsv = np.asarray(Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).convert("HSV"), np.float32) / 255
    h, s, v = hsv[..., 0].ravel(), hsv[..., 1].ravel(), hsv[..., 2].ravel()
    pos = h * hues - 0.5
    lo = np.floor(pos).astype(np.int64)
    f = pos - lo
    sb = np.minimum((s * sats).astype(np.int64), sats - 1)
    colourful = (s > 0.15) * v  # dark pixels have no reliable hue
    hist = np.bincount((lo % hues) * sats + sb, (1 - f) * colourful, hues * sats)
    hist += np.bincount(((lo + 1) % hues) * sats + sb, f * colourful, hues * sats)
    rel = np.clip(v / (v.mean() + 1e-3) / 2, 0, 0.999)  # value relative to the mean: brightness-free
    gray_hist = np.bincount((rel * grays).astype(np.int64), 1 - np.minimum(colourful * 4, 1), grays)
    out = np.sqrt(np.concatenate([hist, gray_hist]) / max(len(h), 1))
    return bi.unit((out - out.mean()).astype(np.float32))


BLOCK_VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "thumb16": lambda rgb: bi.thumb(rgb, 16, sigma=0),
    "thumb8": lambda rgb: bi.thumb(rgb, 8, sigma=0),
    "thumb8w": bi.thumb,
    "dct8": lambda rgb: bi.unit(dct_low(rgb)),
    "phash": phash,
    "hsv": hsv_hist,
    "hog_u8": lambda rgb: bi.hog(rgb, 4, bins=8, signed=False, sigma=0),
    "hog_pyr": lambda rgb: bi.unit(np.concatenate(
        [bi.hog(rgb, c, bins=8, signed=False, sigma=0) * np.sqrt(w) for c, w in ((1, 0.2), (2, 0.3), (4, 0.5))])),
    "hog": bi.hog,
    "chroma": bi.chroma,
    "chroma8": lambda rgb: bi.chroma(rgb, 8),
}
CHOSEN = "HOG 4x4 s12 win + chroma4 *0.3"
CANDIDATES: dict[str, bi.Recipe] = {
    "thumb 16x16 (mean/std normalised)": (("thumb16", 1.0),),
    "thumb 8x8": (("thumb8", 1.0),),
    "DCT 8x8 low frequencies (real)": (("dct8", 1.0),),
    "pHash (DCT 8x8 signs, +-1)": (("phash", 1.0),),
    "HSV colour histogram": (("hsv", 1.0),),
    "HOG 4x4, 8 unsigned": (("hog_u8", 1.0),),
    "HOG pyramid 1+2+4, 8 unsigned": (("hog_pyr", 1.0),),
    "HOG 4x4, 12 signed, centre window": (("hog", 1.0),),
    "thumb16 + HOG 4x4 u8 + HSV (equal)": (("thumb16", 1.0), ("hog_u8", 1.0), ("hsv", 1.0)),
    "HOG 4x4 s12 win + thumb8 win *0.3": (("hog", 1.0), ("thumb8w", 0.3)),
    "HOG 4x4 s12 win + thumb8 win *0.3 + chroma4 *0.3": (("hog", 1.0), ("thumb8w", 0.3), ("chroma", 0.3)),
    "HOG 4x4 s12 win + thumb8 win *0.15 + HSV *0.3": (("hog", 1.0), ("thumb8w", 0.15), ("hsv", 0.3)),
    "HOG 4x4 s12 win + HSV *0.3": (("hog", 1.0), ("hsv", 0.3)),
    CHOSEN: (("hog", 1.0), ("chroma", 0.3)),
}
CHOSEN_AS_SHIPPED = {"hog": "hog", "thumb8w": "thumb", "chroma": "chroma"}  # candidate block -> bi.BLOCKS name
GRID_COLOURS, GRID_THUMB, GRID_COLOUR_W = ("chroma", "chroma8", "hsv"), (0.0, 0.15, 0.3, 0.5), (0.15, 0.3, 0.5)


# -- data: originals, copies, and their blocks (computed in worker processes) ---------------------------
@dataclass(frozen=True)
class Item:
    group: str  # "photos" or "digits"
    source: int  # index of the original
    transform: str  # "" for an original


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode(im: Image.Image, quality: int | None) -> bytes:
    """A JPEG copy at ``quality``, or a lossless one: BMP, same pixels as a PNG and far cheaper to write and read."""
    buf = io.BytesIO()
    if quality is None:
        im.save(buf, format="BMP")
    else:
        im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def originals(n_digits: int) -> list[tuple[str, str, bytes]]:
    """(group, name, bytes) of every distinct original: photos as shipped, digits as 8x8 PNGs."""
    from sklearn.datasets import load_digits

    from lightbox.demo import sample_files

    found = [("photos", p.name, p.read_bytes()) for p in sample_files()]
    digits = load_digits()
    for i in np.linspace(0, len(digits.images) - 1, n_digits).round().astype(int) if n_digits else []:
        pixels = Image.fromarray((digits.images[i] * 15).astype(np.uint8), mode="L")
        found.append(("digits", f"digit{i:04d}:{digits.target[i]}", png(pixels)))
    seen: set[str] = set()
    unique = []
    for group, name, data in found:  # chessboard_RGB.png holds the same pixels as chessboard_GRAY.png
        key = hashlib.sha256(np.asarray(bi.decode(data).convert("RGB")).tobytes()).hexdigest()
        if key not in seen:
            seen.add(key)
            unique.append((group, name, data))
    return unique


def blocks_of(data: bytes) -> dict[str, np.ndarray]:
    rgb = bi.canvas(bi.decode(data))
    return {name: fn(rgb) for name, fn in BLOCK_VARIANTS.items()}


def make_copy(original: bytes, transform: str) -> bytes:
    edit, quality = TRANSFORMS[transform]
    return encode(edit(bi.decode(original)), quality)


def _work(job: tuple[int, str, bytes]) -> tuple[list[Item], list[dict[str, np.ndarray]]]:
    """An original and all its copies: items and their blocks."""
    index, group, data = job
    base = bi.decode(data)
    items, feats = [Item(group, index, "")], [blocks_of(data)]
    for name, (edit, quality) in TRANSFORMS.items():
        items.append(Item(group, index, name))
        feats.append(blocks_of(encode(edit(base), quality)))
    return items, feats


@dataclass
class Corpus:
    items: list[Item]
    blocks: dict[str, np.ndarray]  # block name -> (n, d)
    originals: list[tuple[str, str, bytes]]  # (group, name, bytes) by source index


def build(n_digits: int, workers: int) -> Corpus:
    found = originals(n_digits)
    jobs = [(i, group, data) for i, (group, _, data) in enumerate(found)]
    jobs.sort(key=lambda j: -len(j[2]))  # big photos first, so the pool stays busy
    items: list[Item] = []
    feats: list[dict[str, np.ndarray]] = []
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for its, fs in pool.map(_work, jobs, chunksize=1 if n_digits < 500 else 4):
            items += its
            feats += fs
    blocks = {name: np.stack([f[name] for f in feats]) for name in BLOCK_VARIANTS}
    return Corpus(items, blocks, found)


# -- scoring ------------------------------------------------------------------------------------------
def vectors(corpus: Corpus, recipe: bi.Recipe) -> np.ndarray:
    parts = [np.sqrt(w) * corpus.blocks[name] for name, w in recipe]
    v = np.concatenate(parts, axis=1).astype(np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), bi.EPS)


def ranks(v: np.ndarray, items: Sequence[Item]) -> tuple[np.ndarray, np.ndarray]:
    """Per copy: items outranking (or tying) its original among originals, and among originals + other copies."""
    src = np.array([it.source for it in items])
    is_orig = np.array([it.transform == "" for it in items])
    orig_row = {it.source: i for i, it in enumerate(items) if it.transform == ""}
    queries = np.flatnonzero(~is_orig)
    vs_orig, vs_all = np.empty(len(queries), np.int64), np.empty(len(queries), np.int64)
    for lo in range(0, len(queries), 512):
        q = queries[lo : lo + 512]
        s = v[q] @ v.T
        own = s[np.arange(len(q)), [orig_row[x] for x in src[q]]]
        s[src[q][:, None] == src[None, :]] = -np.inf  # the query's own family: not a competitor
        beats = s >= own[:, None]
        vs_orig[lo : lo + len(q)] = (beats & is_orig[None, :]).sum(1)
        vs_all[lo : lo + len(q)] = beats.sum(1)
    return vs_orig, vs_all


@dataclass
class Score:
    recall: dict[tuple[str, str, str], float]  # (group, transform or "overall", metric) -> value
    colour_kept: float  # copies of colour photos ranking their original above its channel-swapped twin
    colour_cos: float  # median cosine between a colour photo and its channel-swapped twin
    digits_nn: float  # leave-one-out 1-NN label accuracy over the digit originals
    photo_misses: list[tuple[int, str, int, int]]  # (source, transform, rank vs originals, rank + distractors)


def score(corpus: Corpus, recipe: bi.Recipe, swapped: Mapping[int, dict[str, np.ndarray]]) -> Score:
    v = vectors(corpus, recipe)
    vs_orig, vs_all = ranks(v, corpus.items)
    copies = [it for it in corpus.items if it.transform]
    recall: dict[tuple[str, str, str], float] = {}
    groups: dict[str, Callable[[Item], bool]] = {"all": lambda it: True, "photos": lambda it: it.group == "photos",
              "digits": lambda it: it.group == "digits"}
    for gname, pick in groups.items():
        for tname in [*TRANSFORMS, "overall"]:
            m = np.array([pick(it) and (it.transform == tname or (tname == "overall" and it.transform not in SEPARATE))
                          for it in copies])
            if m.any():
                recall[gname, tname, "r1"] = float((vs_orig[m] < 1).mean())
                recall[gname, tname, "r10"] = float((vs_orig[m] < 10).mean())
                recall[gname, tname, "r1d"] = float((vs_all[m] < 1).mean())
    kept, cos = _colour(corpus, v, recipe, swapped)
    misses = [(it.source, it.transform, int(a), int(b)) for it, a, b in zip(copies, vs_orig, vs_all, strict=True)
              if it.group == "photos" and it.transform not in SEPARATE and (a or b)]
    return Score(recall, kept, cos, _digits_nn(corpus, v), misses)


def selection_score(s: Score) -> float:
    """How the recipe was chosen: photos and digits, each plain and with distractors, and colour, equally."""
    r = s.recall
    parts = [r["photos", "overall", "r1"], r["photos", "overall", "r1d"], r["digits", "overall", "r1"],
             r["digits", "overall", "r1d"], s.colour_kept]
    return float(np.mean(parts))


def _colour(corpus: Corpus, v: np.ndarray, recipe: bi.Recipe,
            swapped: Mapping[int, dict[str, np.ndarray]]) -> tuple[float, float]:
    row = {it.source: i for i, it in enumerate(corpus.items) if it.transform == ""}
    kept, cos = [], []
    for src, blocks in swapped.items():
        twin = np.concatenate([np.sqrt(w) * blocks[name] for name, w in recipe])
        twin = twin / max(float(np.linalg.norm(twin)), bi.EPS)
        cos.append(float(twin @ v[row[src]]))
        for i, it in enumerate(corpus.items):
            if it.source == src and it.transform and it.transform not in SEPARATE:
                kept.append(float(v[i] @ v[row[src]] > v[i] @ twin))
    return (float(np.mean(kept)), float(np.median(cos))) if kept else (float("nan"), float("nan"))


def _digits_nn(corpus: Corpus, v: np.ndarray) -> float:
    idx = [i for i, it in enumerate(corpus.items) if it.group == "digits" and not it.transform]
    if len(idx) < 2:
        return float("nan")
    s = v[idx] @ v[idx].T
    np.fill_diagonal(s, -np.inf)
    truth = np.array([corpus.originals[corpus.items[i].source][1].rsplit(":", 1)[1] for i in idx])
    return float((truth[s.argmax(1)] == truth).mean())


def colour_twins(corpus: Corpus) -> dict[int, dict[str, np.ndarray]]:
    """Blocks of each colourful photo with its channels rotated (RGB -> BRG): same structure, other colours."""
    out = {}
    for source, (group, _, data) in enumerate(corpus.originals):
        if group == "photos":
            rgb = bi.canvas(bi.decode(data))
            if float(np.abs(rgb - rgb.mean(-1, keepdims=True)).mean()) > 0.03:
                out[source] = {name: fn(rgb[..., [2, 0, 1]]) for name, fn in BLOCK_VARIANTS.items()}
    return out


# -- speed and consistency ------------------------------------------------------------------------------
def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def _canvas_of(data: bytes) -> np.ndarray:
    return bi.canvas(bi.decode(data))


def _features_of(rgb: np.ndarray) -> np.ndarray:
    return bi.combine({name: bi.BLOCKS[name](rgb) for name, _ in bi.RECIPE}, bi.RECIPE)


def speed(repeat: int) -> list[tuple[str, int, float, float, float]]:
    """(input, bytes, ms for embed_image, ms to decode to the canvas, ms for the features), medians."""
    from sklearn.datasets import load_digits

    from lightbox.demo import sample_files

    emb = bi.BuiltinImageEmbedder()
    astronaut = next(p for p in sample_files() if p.name == "astronaut.png").read_bytes()
    buf = io.BytesIO()
    Image.open(io.BytesIO(astronaut)).save(buf, format="JPEG", quality=90)
    digit = png(Image.fromarray((load_digits().images[0] * 15).astype(np.uint8), mode="L"))
    rows = []
    for name, data in (("512x512 RGB PNG (astronaut.png as shipped)", astronaut),
                       ("512x512 RGB JPEG q90 (astronaut)", buf.getvalue()), ("8x8 L PNG (a digit)", digit)):
        total = _median_ms(partial(emb.embed_image, data), repeat)
        decode = _median_ms(partial(_canvas_of, data), repeat)
        features = _median_ms(partial(_features_of, bi.canvas(bi.decode(data))), repeat)
        rows.append((name, len(data), total, decode, features))
    return rows


def check_shipped(corpus: Corpus, v: np.ndarray, every: int) -> int:
    """The chosen candidate must be exactly what ``BuiltinImageEmbedder`` ships; returns items checked."""
    assert [(CHOSEN_AS_SHIPPED[n], w) for n, w in CANDIDATES[CHOSEN]] == list(bi.RECIPE), "CHOSEN != bi.RECIPE"
    emb = bi.BuiltinImageEmbedder()
    picked = list(range(0, len(corpus.items), every))
    data = [corpus.originals[it.source][2] for it in (corpus.items[i] for i in picked)]
    data = [make_copy(d, corpus.items[i].transform) if corpus.items[i].transform else d
            for d, i in zip(data, picked, strict=True)]
    got = emb.embed_images(data)
    if not np.allclose(got, v[picked], atol=1e-5):
        raise AssertionError("the bench's chosen recipe differs from BuiltinImageEmbedder output")
    return len(picked)


# -- report -----------------------------------------------------------------------------------------------
def _f(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def candidates_table(scores: Mapping[str, Score], dims: Mapping[str, int]) -> str:
    rows = []
    for name, s in scores.items():
        r = s.recall
        label = f"**{name}** (chosen)" if name == CHOSEN else name
        overall = [r[g, "overall", m] for g, m in (("all", "r1"), ("all", "r10"), ("all", "r1d"), ("photos", "r1"),
                                                     ("photos", "r1d"), ("digits", "r1"), ("digits", "r1d"))]
        rows.append([label, dims[name], *map(_f, overall), _f(r["photos", "flip horizontal", "r1"]),
                     _f(s.colour_kept), _f(s.colour_cos), _f(s.digits_nn), _f(selection_score(s))])
    return md_table(["candidate", "dim", "R@1", "R@10", "R@1 +distr.", "photos R@1", "photos R@1 +distr.",
                     "digits R@1", "digits R@1 +distr.", "flip R@1 (photos)", "recoloured twin rejected",
                     "cos(orig, recoloured)", "digits 1-NN label acc.", "selection score"], rows)


def transforms_table(s: Score) -> str:
    rows = []
    for t in [*TRANSFORMS, "overall"]:
        label = f"{t} (not in overall)" if t in SEPARATE else ("**overall**" if t == "overall" else t)
        cells = [s.recall[g, t, m] for g in ("photos", "digits", "all") for m in ("r1", "r10", "r1d")]
        rows.append([label, *map(_f, cells)])
    heads = [f"{g} {m}" for g in ("photos", "digits", "all") for m in ("R@1", "R@10", "R@1 +distr.")]
    return md_table(["transform", *heads], rows)


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _misses(corpus: Corpus, s: Score) -> str:
    items = [f"{corpus.originals[src][1]} / {t} ({a}, {b})" for src, t, a, b in s.photo_misses]
    return ("Photo copies not ranked first, as original / edit (originals ranked above it, items ranked above it "
            "with distractors): " + ("; ".join(items) if items else "none") + ".")


def _choice(scores: Mapping[str, Score], dims: Mapping[str, int]) -> str:
    ranked = sorted(scores, key=lambda n: (-round(selection_score(scores[n]), 3), dims[n]))
    best = selection_score(scores[ranked[0]])
    near = [n for n in ranked if selection_score(scores[n]) >= best - 0.002]
    return (f"Rule: the highest selection score, ties (within 0.002) going to fewer dimensions. Best here: "
            f"{ranked[0]} ({best:.3f}); within 0.002 of it: {'; '.join(near)}. Shipped (`embeddings.builtin.RECIPE`): "
            f"**{CHOSEN}** ({selection_score(scores[CHOSEN]):.3f}, {dims[CHOSEN]}-d).")


def report(args: argparse.Namespace, corpus: Corpus, scores: Mapping[str, Score], dims: Mapping[str, int],
           speeds: Sequence[tuple[str, int, float, float, float]], checked: int, n_colour: int, grid_table: str,
           elapsed: float) -> str:
    info = machine_info()
    n_photos = sum(1 for it in corpus.items if not it.transform and it.group == "photos")
    n_digits = sum(1 for it in corpus.items if not it.transform and it.group == "digits")
    emb = bi.BuiltinImageEmbedder()
    title = "## Built-in embedder: near-duplicate retrieval" + (" (quick)" if args.quick else "")
    speed_rows = [[name, f"{size:,}", f"{total:.2f}", f"{decode:.2f}", f"{features:.2f}"]
                  for name, size, total, decode, features in speeds]
    return "\n".join([
        title, "",
        f"- command: `python -m bench.near_duplicates{' --quick' if args.quick else ''}"
        f"{' --grid' if args.grid else ''}` ({elapsed:.0f} s wall clock, {_cpu_seconds():.0f} s CPU incl. workers; "
        f"the machine was shared, load average {os.getloadavg()[0]:.1f} at the end)",
        f"- date: {info['date']}",
        f"- machine: {info['nproc']} cores ({info['cpu']}), {info['ram']} RAM, Linux {info['kernel']}, "
        f"Python {info['python']}, numpy {np.__version__}, Pillow {PIL.__version__}; {info['threads']}",
        f"- code: {git_state()}",
        f"- data: {n_photos} distinct photos/scans shipped with scikit-image and scikit-learn (byte for byte; "
        f"chessboard_RGB.png dropped, same pixels as chessboard_GRAY.png) + {n_digits} scikit-learn digits as 8x8 "
        f"L PNGs = {n_photos + n_digits} originals; {len(TRANSFORMS)} copies each "
        f"= {len(corpus.items) - n_photos - n_digits} queries. Lossless copies are BMPs, the others JPEGs; "
        "the rotations keep the size and fill the corners black.",
        "- method: each copy queries by cosine. **R@k**: its original is among the k nearest of all originals. "
        "**+distr.**: the gallery also holds every copy of every *other* original (ties count against). "
        "Overall = all transforms but the flip. **recoloured twin rejected**: share of the copies of the "
        f"{n_colour} colourful photos that rank their original above the "
        "original with its channels rotated (RGB→BRG); **cos(orig, recoloured)**: median cosine of the pair "
        "(lower = colour matters). **digits 1-NN label acc.**: leave-one-out nearest-neighbour label accuracy "
        "over the digit originals (a look-alike check, not near duplicates). **selection score**: the mean of "
        "photos R@1, photos R@1 +distr., digits R@1, digits R@1 +distr. and recoloured twin rejected. "
        "Candidates share the decoded 64x64 canvas; the chosen row was checked equal to "
        f"`BuiltinImageEmbedder` output on {checked} images.",
        "",
        "### Candidates", "",
        candidates_table(scores, dims), "",
        _choice(scores, dims), "",
        *(["### Weight grid (selection score)", "", grid_table, ""] if grid_table else []),
        f"### Chosen: {CHOSEN} ({emb.dim}-d), per transform", "",
        transforms_table(scores[CHOSEN]), "",
        _misses(corpus, scores[CHOSEN]), "",
        "Reading it: brightness, contrast, noise, recompression and upscaling leave the vector where it was. "
        "The digits are the stress test: 8 pixels wide, a 0.5x copy keeps 4x4 pixels and a 90% crop drops a "
        "row and a column, so what is left matches other digits about as well as its own (and the same edit "
        "made to other digits matches better still: the +distr. columns). motorcycle_left/right.png are the two "
        "views of a stereo pair, so with distractors each one's edited copies meet the other's. Flips are not "
        "invariant by design (a mirrored photo is usually a different picture, and text reads wrong).", "",
        "### Speed (`BuiltinImageEmbedder.embed_image`, one image, one thread, median ms)", "",
        md_table(["input", "bytes", "ms / image", "decode + resample to 64x64", "features from the canvas"],
                 speed_rows), "",
    ])


def grid(corpus: Corpus, twins: Mapping[int, dict[str, np.ndarray]]) -> str:
    """Selection scores of HOG + thumb8 win x w + colour block x w', for every colour block and both weights."""
    rows = []
    for colour, cw in ((c, w) for c in GRID_COLOURS for w in GRID_COLOUR_W):
        cells = []
        for tw in GRID_THUMB:
            recipe = (("hog", 1.0), *((("thumb8w", tw),) if tw else ()), (colour, cw))
            cells.append(_f(selection_score(score(corpus, recipe, twins))))
        rows.append([f"{colour} *{cw}", *cells])
        print("grid", rows[-1], flush=True)
    return md_table(["HOG 4x4 s12 win + colour block", *(f"thumb8 win *{w}" for w in GRID_THUMB)], rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_DIGITS} digits instead of {FULL_DIGITS}")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--grid", action="store_true", help="also score a grid of block weights (slow)")
    args = parser.parse_args(argv)
    cap_threads()
    started = time.perf_counter()
    corpus = build(QUICK_DIGITS if args.quick else FULL_DIGITS, args.workers)
    print(f"built {len(corpus.items)} images in {time.perf_counter() - started:.1f} s", flush=True)
    twins = colour_twins(corpus)
    scores, dims = {}, {}
    for name, recipe in CANDIDATES.items():
        scores[name] = score(corpus, recipe, twins)
        dims[name] = sum(corpus.blocks[b].shape[1] for b, _ in recipe)
        r = scores[name].recall
        print(f"{name:50s} R@1 {r['all', 'overall', 'r1']:.3f}  +distr {r['all', 'overall', 'r1d']:.3f}  "
              f"photos {r['photos', 'overall', 'r1']:.3f}  digits {r['digits', 'overall', 'r1']:.3f}", flush=True)
    grid_table = grid(corpus, twins) if args.grid else ""
    checked = check_shipped(corpus, vectors(corpus, CANDIDATES[CHOSEN]), every=97 if args.quick else 211)
    speeds = speed(repeat=15 if args.quick else 100)
    body = report(args, corpus, scores, dims, speeds, checked, len(twins), grid_table, time.perf_counter() - started)
    print(body)
    write_section(SECTION + (" --quick" if args.quick else ""), body)


if __name__ == "__main__":
    main()
