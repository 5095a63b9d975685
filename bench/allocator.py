"""Arrow's memory pool under the small-file ingest: glibc (the service's default) against pyarrow's mimalloc.

    python -m bench.allocator [--n 100000] [--reps 6] [--no-record]

The Lightbox job of ``bench.ingest`` (``lightbox.connect(root).table(t).ingest(folder, labels, CSV)``,
what ``lightbox ingest --uri`` runs) over the same 100,000 small PNGs, each run in a fresh interpreter,
alternating ``LIGHTBOX_ARROW_MEMORY_POOL=system`` (the default) with ``default`` (pyarrow's own pool,
mimalloc 3, whose eagerly committed arena is backed by transparent huge pages: see
``app/arrow_pool.py``). Reports the medians and ranges of wall time, kernel time and peak RSS, and the
ratio of the medians. The page cache is warmed first, as in ``bench.ingest``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from bench.common import (
    cap_threads,
    git_state,
    machine,
    machine_line,
    make_pngs,
    md_table,
    median,
    run_child,
    scratch,
    warm,
    write_section,
)

POOLS = {"system": "glibc (default)", "default": "pyarrow's mimalloc"}


def measure(n: int, reps: int) -> dict[str, list[dict[str, Any]]]:
    data = make_pngs(n)
    warm(data)
    runs: dict[str, list[dict[str, Any]]] = {pool: [] for pool in POOLS}
    for rep in range(reps):
        for pool in POOLS:
            out = scratch("allocator")
            job = {"job": "lightbox", "folder": str(data.folder), "out": str(out), "labels": True,
                   "csv": str(data.labels_csv)}
            try:
                result = run_child(job, env={"LIGHTBOX_ARROW_MEMORY_POOL": pool})
            finally:
                shutil.rmtree(out, ignore_errors=True)
            if result["count"] != data.count:
                raise RuntimeError(f"stored {result['count']} of {data.count} files")
            runs[pool].append(result)
            print(f"  rep {rep + 1}/{reps} {pool:8s} {result['seconds']:.3f} s, "
                  f"kernel {result['system_seconds']:.2f} s, peak RSS {result['rss_peak_mb']:.0f} MB", file=sys.stderr)
    return runs


def spread(runs: list[dict[str, Any]], key: str, fmt: str) -> str:
    values = [float(r[key]) for r in runs]
    return f"{median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.allocator", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="small PNGs ingested (default 100,000)")
    parser.add_argument("--reps", type=int, default=6, help="runs of each pool, alternating")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)
    command = " ".join(["python -m bench.allocator", *(argv if argv is not None else sys.argv[1:])])
    cap_threads()
    info = machine()
    runs = measure(args.n, args.reps)
    rows = [[POOLS[p], spread(runs[p], "seconds", ".3f"), spread(runs[p], "system_seconds", ".2f"),
             spread(runs[p], "cpu_seconds", ".2f"), spread(runs[p], "rss_peak_mb", ".0f")] for p in POOLS]
    ratio = median([r["seconds"] for r in runs["default"]]) / median([r["seconds"] for r in runs["system"]])
    body = "\n\n".join([
        f"## Arrow's memory pool under the small-file ingest: `{command}`",
        f"- date: {info['date']}\n- machine: {machine_line(info)}\n- code: {git_state()}\n"
        f"- method: `bench.ingest`'s Lightbox job on {args.n:,} small PNGs + labels CSV, each run in a fresh "
        f"process, {args.reps} runs of each pool alternating, warm page cache; medians (min-max)",
        md_table(["Arrow memory pool", "wall s", "kernel s", "CPU s", "peak RSS MB"], rows),
        f"glibc's pool is {ratio:.2f}x as fast (median wall time of mimalloc's / glibc's). Load average at the "
        f"end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}.",
    ])
    print(body)
    if not args.no_record:
        write_section("bench.allocator", body)
        print("\nrecorded in bench/RESULTS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
