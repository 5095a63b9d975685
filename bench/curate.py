"""Curation quality and cost: ``python -m bench.curate [--calibrate] [--scale N ...]``.

Quality, on a public and reproducible protocol: scikit-learn's 1,797 digits written as 8x8 L PNGs
(as ``lightbox demo`` stores them), ``FLIPS`` labels changed at random to another class (seeded),
``EXACT`` byte-identical copies and ``NEAR`` near copies (brightness x0.8/0.9/1.1/1.2, re-encoded as
JPEG q90) of randomly chosen digits, each copy carrying its original's (possibly flipped) label. The
table is ingested with builtin vectors and curated through the SDK in this process
(``lightbox.connect(root)``), with the defaults. Scored: the flipped labels among the highest
``label_issue`` of the 1,797 digits, ``suggested_label`` against the true digit, copies linked to their
original, and other digits wrongly marked as duplicates.

``--calibrate`` measures the near-duplicate threshold of the builtin model (``NEAR_THRESHOLDS``): the
distance between each digit and its brightness-shifted re-encoded copies, and each digit's nearest
other digit.

Cost (``--scale N``): synthetic rows that share the digits' images: row i holds digit ``i mod 1797``'s PNG
bytes, label, and builtin vector plus Gaussian noise (``NOISE`` per dimension, renormalised), and a
unique ``sha256`` (sha256 of the row id: rows sharing an image are not exact copies here). Written
through the store in 100k-row batches (opened with the service's default cache sizes), its vector index
built by the keeper (timed apart), then curated with a label column; each size runs in a fresh process
so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from bench.common import PROJECT_DIR, cap_threads, git_state, machine_line, md_table, scratch, write_section
from bench.common import machine as machine_info

SECTION = "bench.curate"
SEED = 20
FLIPS, EXACT, NEAR = 60, 100, 100
BRIGHTNESS = (0.8, 0.9, 1.1, 1.2)
NOISE = 0.02
RESULT = "CURATE_RESULT "


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _near_copy(image: Image.Image, factor: float) -> bytes:
    out = io.BytesIO()
    ImageEnhance.Brightness(image).enhance(factor).save(out, format="JPEG", quality=90)
    return out.getvalue()


def digits() -> tuple[list[Image.Image], np.ndarray]:
    from sklearn.datasets import load_digits

    found = load_digits()
    return [Image.fromarray((x * 15).astype(np.uint8), mode="L") for x in found.images], found.target.astype(int)


def make_set(folder: Path) -> dict[str, Any]:
    """The digits, flipped labels and copies as files plus ``labels.csv``; what was planted where."""
    images, truth = digits()
    rng = np.random.default_rng(SEED)
    n = len(images)
    labels = truth.copy()
    flipped = rng.choice(n, FLIPS, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, FLIPS)) % 10
    exact, near = rng.choice(n, EXACT, replace=False), rng.choice(n, NEAR, replace=False)
    (folder / "images").mkdir(parents=True)
    rows = [(f"d{i:04d}.png", _png(im), labels[i]) for i, im in enumerate(images)]
    rows += [(f"exact{j:03d}.png", rows[i][1], labels[i]) for j, i in enumerate(exact)]
    rows += [(f"near{j:03d}.jpg", _near_copy(images[i], float(rng.choice(BRIGHTNESS))), labels[i])
             for j, i in enumerate(near)]
    with open(folder / "labels.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["file", "label"])
        for name, data, label in rows:
            (folder / "images" / name).write_bytes(data)
            out.writerow([name, int(label)])
    return {"n": n, "truth": truth, "labels": labels, "flipped": flipped, "exact": exact, "near": near}


def quality() -> dict[str, Any]:
    import lightbox
    from app.store import Store
    from ingest.pipeline import IngestOptions, run_ingest

    work = scratch("curate-")
    try:
        plan = make_set(work / "set")
        root = work / "data"
        started = time.perf_counter()
        run_ingest(Store(str(root)), IngestOptions(table="digits", sources=[str(work / "set" / "images")],
                                                   metadata=str(work / "set" / "labels.csv"), key="file",
                                                   embed="builtin", progress=False, workers=1))
        ingest_s = time.perf_counter() - started
        with lightbox.connect(str(root)) as client:
            table = client.table("digits")
            started = time.perf_counter()
            report = table.curate(label="label", message="bench")
            curate_s = time.perf_counter() - started
            got = table.query(columns=["id", *CURATE_COLUMNS], limit=None).to_pylist()
        return {**score(plan, {r["id"]: r for r in got}), "report": report, "ingest_s": ingest_s,
                "curate_s": curate_s}
    finally:
        shutil.rmtree(work, ignore_errors=True)


CURATE_COLUMNS = ["label_issue", "suggested_label", "duplicate_of", "uniqueness"]


def score(plan: dict[str, Any], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    n, flipped = plan["n"], plan["flipped"]
    ids = [f"d{i:04d}.png" for i in range(n)]
    issue = np.array([rows[i]["label_issue"] for i in ids], np.float64)
    ranked = np.argsort(-issue, kind="stable")
    hits = {k: len(set(flipped) & set(ranked[:k].tolist())) for k in (60, 100)}
    suggested = sum(int(rows[ids[i]]["suggested_label"]) == int(plan["truth"][i]) for i in flipped)
    copies = [("exact", f"exact{j:03d}.png", i) for j, i in enumerate(plan["exact"])]
    copies += [("near", f"near{j:03d}.jpg", i) for j, i in enumerate(plan["near"])]
    linked = {"exact": 0, "near": 0}
    for kind, copy, i in copies:
        linked[kind] += _linked(rows, copy, ids[i])
    copied = {ids[i] for i in (*plan["exact"], *plan["near"])}
    others = [i for i in ids if i not in copied]
    false = [i for i in others if rows[i]["duplicate_of"] is not None or any(
        r["duplicate_of"] == i for r in rows.values() if not r["id"].startswith(("exact", "near")))]
    return {"top60": hits[60], "top100": hits[100], "precision60": hits[60] / 60, "recall100": hits[100] / FLIPS,
            "suggested": suggested, "exact": linked["exact"], "near": linked["near"], "false": len(false),
            "others": len(others), "false_ids": false[:10]}


def _linked(rows: dict[str, dict[str, Any]], copy: str, original: str) -> bool:
    """The copy and its original end in one group: one points at the other, or both at a third."""
    a, b = rows[copy]["duplicate_of"] or copy, rows[original]["duplicate_of"] or original
    return a == b


# -- calibration ---------------------------------------------------------------------------
def calibrate() -> dict[str, Any]:
    from embeddings.builtin import BuiltinImageEmbedder

    images, _ = digits()
    embedder = BuiltinImageEmbedder()
    base = np.asarray(embedder.embed_images([_png(im) for im in images]), np.float32)
    copies = {f: np.asarray(embedder.embed_images([_near_copy(im, f) for im in images]), np.float32)
              for f in BRIGHTNESS}
    dist = np.concatenate([1 - (v * base).sum(1) for v in copies.values()])
    sims = base @ base.T
    np.fill_diagonal(sims, -1)
    nearest = 1 - sims.max(1)
    return {"copy_q": np.quantile(dist, [0.5, 0.9, 0.95, 0.99, 1]).tolist(),
            "nn_q": np.quantile(nearest, [0.001, 0.005, 0.01, 0.05, 0.5]).tolist(),
            "per_factor_q95": {str(f): float(np.quantile(1 - (v * base).sum(1), 0.95)) for f, v in copies.items()}}


# -- scale ---------------------------------------------------------------------------------
def scale_child(rows: int) -> dict[str, Any]:
    """In a fresh process: build ``rows`` synthetic rows, index them, curate; times and peak RSS."""
    import pyarrow as pa

    from app.services.curate import CurateSpec, curate
    from app.settings import Settings
    from app.store import Store
    from app.store.schema import blob_values, image_schema, vector_array, vector_field
    from app.store.vectors import IndexKeeper
    from app.store.writes import append_stream
    from bench.common import _peak_rss_mb
    from embeddings.builtin import BuiltinImageEmbedder

    images, truth = digits()
    pngs = [_png(im) for im in images]
    base = np.asarray(BuiltinImageEmbedder().embed_images(pngs), np.float32)
    field = vector_field("vector", base.shape[1], model="builtin", source="image", metric="cosine")
    schema = image_schema([pa.field("label", pa.int64()), field])
    work = scratch("curate-scale-")
    rng = np.random.default_rng(SEED)
    try:
        settings = Settings(uri=str(work / "data"))  # the service's caches, as `lightbox serve` opens its store
        store = Store(settings.uri, index_cache_bytes=settings.index_cache_bytes,
                      metadata_cache_bytes=settings.metadata_cache_bytes)
        started = time.perf_counter()

        def batches() -> Any:
            for start in range(0, rows, 100_000):
                idx = np.arange(start, min(rows, start + 100_000))
                which = idx % len(pngs)
                vec = base[which] + rng.normal(0, NOISE, (len(idx), base.shape[1])).astype(np.float32)
                vec /= np.linalg.norm(vec, axis=1, keepdims=True)
                ids = [f"r{i:08d}" for i in idx]
                cols = {"id": ids, "image": blob_values([pngs[w] for w in which]),
                        "sha256": [hashlib.sha256(i.encode()).hexdigest() for i in ids],
                        "label": truth[which], "vector": vector_array(list(vec), field)}
                full = {f.name: cols.get(f.name, pa.nulls(len(idx), f.type)) for f in schema}
                yield pa.RecordBatch.from_pydict(full, schema=schema)

        append_stream(store, "synthetic", schema, batches())
        write_s = time.perf_counter() - started
        keeper = IndexKeeper(store, min_rows=10_000)
        started = time.perf_counter()
        keeper.fold("synthetic")
        index_s = time.perf_counter() - started
        rss_before = _peak_rss_mb()
        rss_base = _reset_peak_rss()
        started = time.perf_counter()
        report = curate(store, keeper, "synthetic", CurateSpec(label="label"))
        curate_s = time.perf_counter() - started
        return {"rows": rows, "write_s": write_s, "index_s": index_s, "curate_s": curate_s,
                "peak_rss_mb_before_curate": rss_before, "rss_mb_at_curate_start": rss_base,
                "peak_rss_mb": _peak_rss_mb(),
                "report": {k: v for k, v in report.items() if k != "seconds"}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _reset_peak_rss() -> float:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux ``clear_refs`` 5), so the peak read
    after the curate is the curate's own; the RSS now, in MB."""
    from bench.common import _rss_now_mb

    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _rss_now_mb()


def run_scale(rows: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.curate", "--child", str(rows)], cwd=PROJECT_DIR,
                          capture_output=True, text=True, check=False, env={**os.environ, "LANCE_LOG": "error"})
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT):
            return dict(json.loads(line[len(RESULT):]))
    raise RuntimeError(f"scale run of {rows} rows failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


# -- report --------------------------------------------------------------------------------
def render(command: str, q: dict[str, Any] | None, cal: dict[str, Any] | None, scales: list[dict[str, Any]],
           wall: float) -> str:
    lines = ["## Curate: label issues, duplicates, uniqueness", "",
             f"- command: `{command}` ({wall:.0f} s wall clock)",
             f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
             f"- machine: {machine_line(machine_info())}", f"- code: {git_state()}", ""]
    if q is not None:
        r = q["report"]
        lines += ["### Digits (1,797 + 100 exact + 100 near copies, 60 labels flipped, seed 20, builtin vectors)", "",
                  f"Curated with the defaults (k={r['k']}, near threshold {r['near_threshold']} = "
                  f"{r['threshold_source']}; neighbours: {r['neighbours']}) in {q['curate_s']:.1f} s "
                  f"(ingest with embedding {q['ingest_s']:.1f} s).", "",
                  md_table(["measure", "result", "goal"], [
                      ["flipped labels in the top 60 label_issue (precision@60)",
                       f"{q['top60']} / 60 ({q['precision60']:.3f})", ">= 55"],
                      ["flipped labels in the top 100 (recall@100)", f"{q['top100']} / 60 ({q['recall100']:.3f})",
                       "60"],
                      ["suggested_label right for the flipped rows", f"{q['suggested']} / 60", ">= 54 (90%)"],
                      ["exact copies linked to their original", f"{q['exact']} / {EXACT}", f"{EXACT}"],
                      ["near copies linked to their original", f"{q['near']} / {NEAR}", f">= {int(0.9 * NEAR)}"],
                      ["other digits marked duplicates (false positives)",
                       f"{q['false']} / {q['others']} ({q['false'] / q['others']:.2%})", "<= 1%"],
                  ]), ""]
        if q["false_ids"]:
            lines += [f"False positives (first ten): {', '.join(q['false_ids'])}.", ""]
    if cal is not None:
        lines += ["### Near-duplicate threshold of the builtin model (`--calibrate`)", "",
                  "1 - cosine between each of the 1,797 digits and its brightness-shifted (x0.8, 0.9, 1.1, 1.2) "
                  "JPEG q90 copy, and between each digit and its nearest other digit:", "",
                  md_table(["distances", "quantiles"], [
                      ["copy: q50, q90, q95, q99, max", ", ".join(f"{v:.4f}" for v in cal["copy_q"])],
                      ["nearest other digit: q0.1%, q0.5%, q1%, q5%, q50", ", ".join(f"{v:.4f}" for v in cal["nn_q"])],
                      ["copy q95 per factor", ", ".join(f"x{k}: {v:.4f}" for k, v in cal["per_factor_q95"].items())],
                  ]), ""]
    if scales:
        lines += ["### Cost at scale (synthetic rows sharing the digits' images, builtin vectors + noise)", "",
                  md_table(["rows", "write s", "index build s (keeper)", "curate s", "curate ms / row",
                            "peak RSS MB (write + index)", "RSS MB at curate start", "peak RSS MB during curate",
                            "neighbours"],
                           [[f"{s['rows']:,}", f"{s['write_s']:.0f}", f"{s['index_s']:.0f}", f"{s['curate_s']:.0f}",
                             f"{1000 * s['curate_s'] / s['rows']:.3f}", f"{s['peak_rss_mb_before_curate']:.0f}",
                             f"{s['rss_mb_at_curate_start']:.0f}", f"{s['peak_rss_mb']:.0f}",
                             s["report"]["neighbours"]] for s in scales]), ""]
    return "\n".join(lines)


def seeds(count: int) -> list[dict[str, Any]]:
    """The quality protocol with other random flips and copies: how much the figures move."""
    global SEED
    runs = []
    for seed in range(SEED, SEED + count):
        SEED = seed
        runs.append({"seed": seed, **{k: v for k, v in quality().items() if k != "report"}})
        print(json.dumps(runs[-1], default=str), flush=True)
    return runs


def render_seeds(command: str, runs: list[dict[str, Any]], wall: float) -> str:
    cols = [("top60", "flipped in top 60", ">= 55"), ("top100", "flipped in top 100", "60"),
            ("suggested", "suggested right (of 60)", ">= 54"), ("exact", f"exact linked (of {EXACT})", f"{EXACT}"),
            ("near", f"near linked (of {NEAR})", f">= {int(0.9 * NEAR)}"), ("false", "other digits marked", "<= 16")]
    rows = [[label, min(r[k] for r in runs), f"{np.median([r[k] for r in runs]):g}", max(r[k] for r in runs), goal]
            for k, label, goal in cols]
    return "\n".join(["## Curate: the digits protocol over several seeds", "",
                      f"- command: `{command}` ({wall:.0f} s wall clock)",
                      f"- date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
                      f"- code: {git_state()}",
                      f"- seeds {runs[0]['seed']}-{runs[-1]['seed']}: other flipped labels, other copied digits and "
                      "brightness factors each time; defaults (k=10, builtin threshold 0.01)", "",
                      md_table(["measure", "min", "median", "max", "goal"], rows), "",
                      "Per seed (flipped in top 60 / top 100, suggested right): "
                      + ", ".join(f"{r['seed']}: {r['top60']}/{r['top100']}/{r['suggested']}" for r in runs) + ".",
                      ""])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.curate", description=__doc__.split("\n")[0])
    parser.add_argument("--calibrate", action="store_true", help="also measure the builtin near-copy distances")
    parser.add_argument("--scale", type=int, nargs="*", default=[], help="row counts to time (e.g. 100000 1000000)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--seeds", type=int, default=0,
                        help="only the quality protocol, over this many seeds (20, 21, ...): its spread")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cap_threads()
    os.environ.setdefault("LANCE_LOG", "error")
    if args.child:
        print(RESULT + json.dumps(scale_child(args.child), default=str))
        return
    started = time.perf_counter()
    if args.seeds:
        runs = seeds(args.seeds)
        write_section(SECTION + " --seeds", render_seeds(f"python -m bench.curate --seeds {args.seeds}", runs,
                                                         time.perf_counter() - started))
        return
    q = None if args.skip_quality else quality()
    if q is not None:
        print(json.dumps({k: v for k, v in q.items() if k != "report"}, default=str))
    cal = calibrate() if args.calibrate else None
    scales = []
    for rows in args.scale:
        scales.append(run_scale(rows))
        print(json.dumps(scales[-1], default=str))
    command = "python -m bench.curate " + " ".join(sys.argv[1:])
    write_section(SECTION if not args.skip_quality else SECTION + " --scale",
                  render(command.strip(), q, cal, scales, time.perf_counter() - started))


if __name__ == "__main__":
    main()
