"""The speed goals side by side with the LMDB scripts users write, in one run: three ratios.

    python -m bench.speed [--quick] [--reps 3] [--no-record]

- ingest of 100,000 small PNGs with a labels CSV (``bench.ingest``): Lightbox / LMDB ``putmulti``
  throughput, goal >= 1.5x, with Lightbox's peak RSS <= 500 MB;
- ingest of 900 1.3 MB 16-bit TIFFs with a CSV of metadata (``bench.ingest``): goal >= 1.0x, bytes
  identical;
- HTTP image GET of 20,000 small PNGs (``bench.http``): throughput at 16 connections >= 1.0x the
  FastAPI+LMDB endpoint's, p50 at 1 connection <= 1.0x its p50, production settings on.

Every comparison runs whole processes, interleaved, medians of rounds (see each module). Each
module records its own report in bench/RESULTS.md; this one adds a summary section with the
command, the commit and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from bench.common import cap_threads, git_state, machine, md_table, verdict, write_section

GOALS = {"png": (1.5, ">="), "png_rss_mb": (500.0, "<="), "tiff": (1.0, ">="), "throughput_16": (1.0, ">="),
         "p50_1": (1.0, "<=")}
LABELS = {"png": "ingest 100k small PNGs + CSV (throughput)", "png_rss_mb": "same, Lightbox peak RSS (MB)",
          "tiff": "ingest 900 x 1.3 MB 16-bit TIFFs + CSV (MB/s)",
          "throughput_16": "HTTP image GET, 16 connections (req/s)", "p50_1": "same, p50 at 1 connection"}


def http_ratios(quick: bool, reps: int, record: bool) -> dict[str, float]:
    """``bench.http``'s two ratios: throughput at 16 connections and p50 at 1, production settings on."""
    from bench.http import image_get_ratios

    kwargs: dict[str, Any] = {"reps": reps, "record": record}
    if quick:
        kwargs.update(rows=10_000, seconds=2.0)
    return dict(image_get_ratios(**kwargs))


def met(key: str, value: float) -> bool:
    goal, way = GOALS[key]
    return value >= goal if way == ">=" else value <= goal


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and shorter runs (a few minutes)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved rounds of each comparison")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)
    command = " ".join(["python -m bench.speed", *(argv if argv is not None else sys.argv[1:])])
    cap_threads()
    info = machine()
    from bench.ingest import ingest_ratios

    found: dict[str, float] = dict(ingest_ratios(args.quick, args.reps, record=not args.no_record))
    found.update(http_ratios(args.quick, args.reps, record=not args.no_record))
    rows = [[LABELS[k], f"{found[k]:,.0f} MB" if k == "png_rss_mb" else f"{found[k]:.2f}x",
             f"{GOALS[k][1]} {GOALS[k][0]:g}" + ("" if k == "png_rss_mb" else "x"), verdict(met(k, found[k]))]
            for k in GOALS if k in found]
    body = "\n\n".join([
        f"## Speed against the LMDB scripts{' (quick)' if args.quick else ''}: `{command}`",
        f"- date: {info['date']}\n- code: {git_state()}\n- load average at start: {info['load']}; at the end: "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min; the machine is shared)",
        "Ratios are Lightbox / LMDB, each side in its own process, interleaved rounds, medians "
        f"({args.reps} rounds; details in the sections of bench.ingest and bench.http).",
        md_table(["comparison", "Lightbox / LMDB", "goal", "result"], rows),
    ])
    print(body)
    if not args.no_record:
        write_section("bench.speed" + (" --quick" if args.quick else ""), body)
        print("\nrecorded in bench/RESULTS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
