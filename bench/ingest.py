"""Ingest: ``lightbox ingest --uri`` against an LMDB ``putmulti`` script and a plain read of the files.

    python -m bench.ingest [--quick] [--n 100000] [--tiffs 900] [--reps 3] [--no-record]

Goals: at 100,000 small PNGs, Lightbox's throughput at least 1.5x LMDB's (while also probing,
hashing and joining the labels CSV, which the LMDB script does not) with a peak RSS of at most
500 MB; on 900 1.3 MB 16-bit TIFFs with a CSV of metadata, at least 1.0x LMDB's, every stored
image byte-identical to its file (checked after the timed span).

Small PNGs: ``n // 10`` and ``n`` (quick: 2,000 and 10,000) MNIST-like 28x28 PNGs in label folders plus a labels CSV
(generated once, cached under bench/data/). Every contender runs in a fresh interpreter (so its
peak RSS is its own), three times, interleaved, after one read of every file to warm the page cache
(it cannot be dropped on this machine); figures are medians. The contenders:

- floor: walk the folder, read every file's bytes (one thread);
- LMDB: walk, read, ``cursor.putmulti`` in batches of 1,000 in one write transaction (key =
  relative path, value = bytes) into a fresh env, synced at the end;
- Lightbox: what ``lightbox ingest --uri`` runs, ``lightbox.connect(root).table(t).ingest(...)`` (the
  SDK over the service in this process: walk, read, join the CSV and the folder labels here; probe,
  sha256, and one Lance version in the upload service) into a fresh data root; the timed span
  includes starting the in-process service (about 0.1 s: building the app and its lifespan).

Then uncompressed 1024x672 16-bit TIFFs (1.38 MB each) with a CSV of metadata (file, plate, well,
channel, exposure), same three contenders, in MB/s; Lightbox joins the CSV.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from bench.common import (
    DataSet,
    cap_threads,
    git_state,
    machine,
    machine_line,
    make_pngs,
    make_tiffs,
    md_table,
    median,
    run_child,
    scratch,
    verdict,
    warm,
    write_section,
)

CONTENDERS = ("floor", "lmdb", "lightbox")
LABELS = {"floor": "read files (floor)", "lmdb": "LMDB putmulti x1,000", "lightbox": "Lightbox ingest --uri"}
RATIO_TARGET = 1.5
RSS_LIMIT_MB = 500.0
RSS_GROWTH = 1.5
TIFF_RATIO_TARGET = 1.0


def measure(data: DataSet, reps: int, *, labels: bool, verify: bool = False) -> dict[str, list[dict[str, Any]]]:
    """``reps`` interleaved rounds of every contender on ``data``, each in a fresh process; Lightbox joins the
    data's CSV (by its ``file`` column), takes folder labels when ``labels``, and ``verify`` checks its bytes."""
    warm(data)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS}
    for rep in range(reps):
        for contender in CONTENDERS:
            out = scratch(contender)
            job: dict[str, Any] = {"job": contender, "folder": str(data.folder), "out": str(out)}
            if contender == "lightbox":
                job.update(labels=labels, csv=str(data.labels_csv) if data.labels_csv else None, verify=verify)
            try:
                result = run_child(job)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            if result["count"] != data.count or result["bytes"] != data.bytes:
                raise RuntimeError(f"{contender} stored {result['count']} files / {result['bytes']} B, "
                                   f"expected {data.count} / {data.bytes}")
            if verify and contender == "lightbox" and result.get("identical") != data.count:
                raise RuntimeError(f"lightbox stored {result.get('identical')} of {data.count} images byte-identical")
            runs[contender].append(result)
            print(f"  n={data.count} rep {rep + 1}/{reps} {contender:8s} {result['seconds']:7.3f} s "
                  f"{data.count / result['seconds']:9,.0f} img/s  peak RSS {result['rss_peak_mb']:6.1f} MB",
                  file=sys.stderr)
    return runs


def rate(data: DataSet, runs: list[dict[str, Any]], unit: str) -> tuple[float, float, float]:
    """Median, min and max throughput over the runs, in img/s or MB/s."""
    amount = data.count if unit == "img/s" else data.bytes / 1e6
    rates = [amount / r["seconds"] for r in runs]
    return median(rates), min(rates), max(rates)


def med_of(runs: list[dict[str, Any]], key: str) -> float:
    return median([float(r[key]) for r in runs])


def png_rows(sets: list[tuple[DataSet, dict[str, list[dict[str, Any]]]]]) -> list[list[str]]:
    rows = []
    for data, runs in sets:
        for c in CONTENDERS:
            med, lo, hi = rate(data, runs[c], "img/s")
            rss = [r["rss_peak_mb"] for r in runs[c]]
            rows.append([f"{data.count:,}", LABELS[c], f"{med:,.0f}", f"{lo:,.0f}-{hi:,.0f}",
                         f"{med_of(runs[c], 'seconds'):.2f}", f"{med_of(runs[c], 'cpu_seconds'):.2f}",
                         f"{median(rss):.0f} (max {max(rss):.0f})", f"{med_of(runs[c], 'rss_ready_mb'):.0f}"])
    return rows


def tiff_rows(data: DataSet, runs: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    rows = []
    for c in CONTENDERS:
        med, lo, hi = rate(data, runs[c], "MB/s")
        rss = [r["rss_peak_mb"] for r in runs[c]]
        rows.append([f"{data.count}", LABELS[c], f"{med:,.0f}", f"{lo:,.0f}-{hi:,.0f}",
                     f"{data.count * median([1 / r['seconds'] for r in runs[c]]):,.0f}",
                     f"{med_of(runs[c], 'seconds'):.2f}", f"{med_of(runs[c], 'cpu_seconds'):.2f}",
                     f"{median(rss):.0f} (max {max(rss):.0f})"])
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2k and 10k PNGs, 50 TIFFs (under a minute)")
    parser.add_argument("--n", type=int, default=None, help="the larger PNG count (default 100000, quick 10000)")
    parser.add_argument("--n-small", type=int, default=None,
                        help="the smaller PNG count, for the RSS-flatness check (default n/10, quick 2000)")
    parser.add_argument("--tiffs", type=int, default=None, help="TIFF count (default 900, quick 50)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each contender (medians reported)")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    return parser.parse_args(argv)


def ingest_ratios(quick: bool = False, reps: int = 3, record: bool = False) -> dict[str, float]:
    """For a combined benchmark: both ingest comparisons, side by side with LMDB in fresh processes.

    Returns ``{"png": Lightbox img/s / LMDB img/s at the larger PNG count (goal >= 1.5), "png_rss_mb": its
    peak RSS (goal <= 500), "tiff": Lightbox MB/s / LMDB MB/s on the TIFFs (goal >= 1.0)}``; ``record``
    also writes the report to bench/RESULTS.md."""
    argv = [*(["--quick"] if quick else []), "--reps", str(reps), *([] if record else ["--no-record"])]
    return run(parse_args(argv), "python -m bench.ingest " + " ".join(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run(args, " ".join(["python -m bench.ingest", *(argv if argv is not None else sys.argv[1:])]))
    return 0


def run(args: argparse.Namespace, command: str) -> dict[str, float]:
    """Generate (or reuse) the data, measure every contender, print (and record) the report; the ratios come back."""
    n = args.n or (10_000 if args.quick else 100_000)
    n_small = args.n_small or (min(2_000, n) if args.quick else max(1, n // 10))
    n_tiffs = args.tiffs or (50 if args.quick else 900)
    cap_threads()
    info = machine()

    sets = []
    for size in (n_small, n):
        data = make_pngs(size)
        sets.append((data, measure(data, args.reps, labels=True)))
    tiffs = make_tiffs(n_tiffs)
    tiff_runs = measure(tiffs, args.reps, labels=False, verify=True)

    (small, small_runs), (big, big_runs) = sets
    ratios = {d.count: rate(d, r["lightbox"], "img/s")[0] / rate(d, r["lmdb"], "img/s")[0] for d, r in sets}
    floor_ratio = rate(big, big_runs["lightbox"], "img/s")[0] / rate(big, big_runs["floor"], "img/s")[0]
    cpu_ratio = med_of(big_runs["lmdb"], "cpu_seconds") / med_of(big_runs["lightbox"], "cpu_seconds")
    rss_small = med_of(small_runs["lightbox"], "rss_peak_mb")
    rss_big = med_of(big_runs["lightbox"], "rss_peak_mb")
    tiff_mbs = rate(tiffs, tiff_runs["lightbox"], "MB/s")[0]
    tiff_vs_lmdb = tiff_mbs / rate(tiffs, tiff_runs["lmdb"], "MB/s")[0]
    tiff_vs_floor = tiff_mbs / rate(tiffs, tiff_runs["floor"], "MB/s")[0]
    ok_ratio = ratios[big.count] >= RATIO_TARGET
    ok_rss = rss_big <= RSS_LIMIT_MB and rss_big <= RSS_GROWTH * rss_small
    ok_tiff = tiff_vs_lmdb >= TIFF_RATIO_TARGET

    png_table = md_table(
        ["N", "contender", "img/s (median)", "img/s (min-max)", "wall s", "CPU s", "peak RSS MB",
         "RSS after imports MB"],
        png_rows(sets),
    )
    tiff_table = md_table(
        ["TIFFs", "contender", "MB/s (median)", "MB/s (min-max)", "img/s", "wall s", "CPU s", "peak RSS MB"],
        tiff_rows(tiffs, tiff_runs),
    )
    targets = md_table(
        ["target", "measured", "result"],
        [
            [f"Lightbox ≥ {RATIO_TARGET}x LMDB at {big.count:,} PNGs", f"{ratios[big.count]:.2f}x", verdict(ok_ratio)],
            [f"(same at {small.count:,} PNGs, for reference)", f"{ratios[small.count]:.2f}x", ""],
            ["(Lightbox / floor at the larger N, for reference)", f"{floor_ratio:.2f}x", ""],
            ["(LMDB CPU s / Lightbox CPU s at the larger N: the ratio by CPU time, less sensitive to load)",
             f"{cpu_ratio:.2f}x", ""],
            [f"peak RSS ≤ {RSS_LIMIT_MB:.0f} MB and flat ({big.count:,} within {RSS_GROWTH}x of {small.count:,})",
             f"{rss_big:.0f} MB vs {rss_small:.0f} MB ({rss_big / rss_small:.2f}x)", verdict(ok_rss)],
            [f"TIFF ingest ≥ {TIFF_RATIO_TARGET}x LMDB, bytes identical", f"{tiff_vs_lmdb:.2f}x ({tiff_mbs:,.0f} MB/s; "
             f"{tiff_vs_floor:.2f}x raw read); {tiffs.count} of {tiffs.count} identical", verdict(ok_tiff)],
        ],
    )
    avg = big.bytes / big.count
    body = "\n\n".join([
        f"## Ingest{' (quick)' if args.quick else ''}: `{command}`",
        f"- date: {info['date']}\n- machine: {machine_line(info)}\n- code: {git_state()}\n"
        f"- data: {small.count:,} and {big.count:,} synthetic 28x28 grayscale PNGs ({avg:.0f} B average) in "
        f"`0..9/` folders + labels CSV (file,label,split); {tiffs.count} uncompressed 1024x672 uint16 TIFFs "
        f"({tiffs.bytes / tiffs.count / 1e6:.2f} MB each)\n"
        f"- method: each contender in a fresh `python` process, {args.reps} interleaved runs, medians; the page "
        "cache is warmed by reading every file once first (it cannot be dropped here), so these are warm-cache "
        "figures. Time covers the folder walk through the final commit/sync, not interpreter start or imports. "
        "CPU s is the child's user+system time over the same span, all threads (less sensitive to other load on "
        "this shared machine than wall time). Peak RSS is the child's VmHWM (whole process, imports "
        "included); \"RSS after imports\" is its RSS just before the timed work. "
        "LMDB: one write transaction, `putmulti` per 1,000 files, `sync` at the end. "
        "Lightbox: `with lightbox.connect(fresh root) as c: c.table(t).ingest([folder], labels_from_dirs=True, "
        "metadata=csv, key='file')` (what `lightbox ingest --uri` runs; the span includes starting the "
        "in-process service); TIFFs with their CSV (`metadata=csv, key='file'`), no labels; after the timed span "
        "every stored TIFF is read back and compared with its file.",
        png_table,
        tiff_table,
        targets,
        f"Load average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}.",
    ])
    print(body)
    if not args.no_record:
        write_section("bench.ingest" + (" --quick" if args.quick else ""), body)
        print("\nrecorded in bench/RESULTS.md", file=sys.stderr)
    return {"png": ratios[big.count], "png_rss_mb": rss_big, "tiff": tiff_vs_lmdb}


if __name__ == "__main__":
    raise SystemExit(main())
