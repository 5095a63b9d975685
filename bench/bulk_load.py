"""A bulk load through the LanceDB client into a real ``lightbox serve``: the server's peak and settled
RSS beside the raw vectors (its own baseline), how long until the index is built and tuned, the
slowest index listing meanwhile, and how many background builds the burst cost.

``python -m bench.bulk_load`` loads 10 x 20k x 384 (293 MiB of vectors), three rounds (medians);
``--quick`` loads 5 x 20k x 128 once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import PROJECT_DIR, git_state, machine, machine_line, md_table, verdict, write_section

KEY = "bulk_load"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 x 20k x 128, one round")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave RESULTS.md alone")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(PROJECT_DIR))
    from tests.bulk_load import bulk_load
    from tests.test_bulk_load import bound

    batches, rows, dim = (5, 20_000, 128) if args.quick else (10, 20_000, 384)
    rounds = args.rounds or (1 if args.quick else 3)
    runs = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory(prefix="lightbox-bulk-") as tmp:
            out = bulk_load(Path(tmp) / "root", batches, rows, dim, lambda s, raw: 4 * bound(s, raw))
        runs.append(out)
        print(f"round {r + 1}: peak {out.peak_rss / 2**20:.0f} MiB, settled {out.settled_rss / 2**20:.0f} MiB, "
              f"load {out.load_seconds:.1f} s, indexed {out.indexed_seconds:.1f} s later, slowest listing "
              f"{out.slowest_listing * 1000:.0f} ms, builds {out.builds:.0f}, recall {out.index.get('recall')}",
              flush=True)
    mib = 2**20
    raw = runs[0].raw

    def med(values: list[float]) -> float:
        return statistics.median(values)

    peak = med([o.peak_rss - o.start_rss for o in runs])
    rows_md = [
        ["raw vectors", f"{raw / mib:.0f} MiB", "", ""],
        ["server RSS at start", f"{med([o.start_rss for o in runs]) / mib:.0f} MiB", "", ""],
        ["peak RSS above start", f"{peak / mib:.0f} MiB ({peak / raw:.2f}x the vectors)",
         "≤ 3x vectors + 512 MiB", verdict(all(o.peak_rss <= bound(o.start_rss, raw) for o in runs))],
        ["settled RSS", f"{med([o.settled_rss for o in runs]) / mib:.0f} MiB", "", ""],
        ["load (client side)", f"{med([o.load_seconds for o in runs]):.1f} s", "", ""],
        ["built and tuned, after the load", f"{med([o.indexed_seconds for o in runs]):.1f} s", "", ""],
        ["slowest index listing meanwhile", f"{max(o.slowest_listing for o in runs) * 1000:.0f} ms", "< 2 s",
         verdict(all(o.slowest_listing < 2 for o in runs))],
        ["background builds for the burst", ", ".join(f"{o.builds:.0f}" for o in runs), "≤ 2",
         verdict(all(o.builds <= 2 for o in runs))],
        ["held-out recall of the tuning", ", ".join(str(o.index.get("recall")) for o in runs), "≥ 0.95", ""],
    ]
    body = "\n".join([
        f"## Bulk load through the LanceDB client{' (quick)' if args.quick else ''}: "
        f"`python -m bench.bulk_load{' --quick' if args.quick else ''}`",
        "",
        f"{machine_line(machine())}; {git_state()}. {batches} batches of {rows:,} x {dim}-d float32 (an "
        f"overlapping Gaussian mixture) through `create_table` + `add`, into a `lightbox serve` process with "
        f"default settings; {rounds} round(s), medians.",
        "",
        md_table(["measure", "result", "target", ""], rows_md),
    ])
    print(body)
    if not args.no_write:
        write_section(KEY + ("_quick" if args.quick else ""), body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
