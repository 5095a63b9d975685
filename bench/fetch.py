"""Target 2 (fetch by id, store level): original bytes of one small image, and of 256 at once.

    python -m bench.fetch [--quick] [--n 100000] [--samples 2000] [--batches 100] [--no-record]

Builds a table of ``n`` small PNG rows with ``run_ingest`` (quick: 10,000; the generated files are
reused from bench/data/) and an LMDB env of the same files (key = relative path = the row id), each
in a fresh process, then in this process, on the same random ids:

- Lightbox, one id at a time, the way a request does it: ``Store.snapshot(name)`` +
  ``RowReader.image_ref`` + ``RowReader.image_bytes`` (the store's latest handle is re-checked at
  most once a second, as in the service); and the same with the snapshot held;
- Lightbox, 256 ids at once: RowReader has no batch API, so this is the ``IdIndex`` lookup of the
  256 ids plus one ``snap.ds.read_blobs("image", ids=row_ids, preserve_order=True)``;
- LMDB: ``txn.get`` with a read transaction per lookup, and inside one held transaction; and 256
  ``get`` in one transaction for the batch.

Every returned byte string is checked against the LMDB copy. The one-off ``IdIndex`` build (a scan
of id, mime, sha256, size_bytes with row ids) is timed on its own.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    cap_threads,
    git_state,
    machine,
    machine_line,
    make_pngs,
    md_table,
    median,
    percentile,
    run_child,
    scratch,
    verdict,
    walk,
    warm,
    write_section,
)

TABLE = "bench"
BATCH = 256
SINGLE_P50_MS = 1.0
BATCH_MS = 10.0
WARMUP = 200


def timed(fn: Callable[[Any], Any], args: Sequence[Any]) -> list[float]:
    """Milliseconds of ``fn(arg)`` for every arg, one at a time."""
    out = []
    clock = time.perf_counter_ns
    for arg in args:
        started = clock()
        fn(arg)
        out.append((clock() - started) / 1e6)
    return out


def stats(ms: list[float]) -> dict[str, float]:
    return {"p50": percentile(ms, 50), "p90": percentile(ms, 90), "p99": percentile(ms, 99),
            "max": max(ms), "mean": sum(ms) / len(ms)}


def fmt_ms(value: float) -> str:
    return f"{value * 1000:.1f} µs" if value < 0.1 else f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fetch", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k rows (under a minute)")
    parser.add_argument("--n", type=int, default=None, help="rows in the table (default 100000, quick 10000)")
    parser.add_argument("--samples", type=int, default=2000, help="random ids fetched one at a time")
    parser.add_argument("--batches", type=int, default=100, help=f"batches of {BATCH} random ids")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)
    command = " ".join(["python -m bench.fetch", *(argv if argv is not None else sys.argv[1:])])
    n = args.n or (10_000 if args.quick else 100_000)
    cap_threads()
    info = machine()

    data = make_pngs(n)
    warm(data)
    root, env_dir = scratch("fetch-lightbox"), scratch("fetch-lmdb")
    try:
        built = run_child({"job": "lightbox", "folder": str(data.folder), "out": str(root), "labels": True,
                           "csv": str(data.labels_csv), "table": TABLE})
        lmdb_built = run_child({"job": "lmdb", "folder": str(data.folder), "out": str(env_dir)})
        print(f"  built: Lightbox {n / built['seconds']:,.0f} img/s, LMDB {n / lmdb_built['seconds']:,.0f} img/s",
              file=sys.stderr)
        result = measure(root, env_dir, data.folder, n, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(env_dir, ignore_errors=True)

    single, held, batch = result["single"], result["held"], result["batch"]
    l_get, l_held, l_batch = result["lmdb_get"], result["lmdb_held"], result["lmdb_batch"]
    ok_single = single["p50"] <= SINGLE_P50_MS
    ok_batch = batch["p50"] <= BATCH_MS
    rows = [
        ["1 id: `Store.snapshot` + `RowReader.image_ref` + `image_bytes` (per-request path)",
         *(fmt_ms(single[k]) for k in ("p50", "p90", "p99", "max")), f"{args.samples:,}"],
        ["1 id: same, snapshot held", *(fmt_ms(held[k]) for k in ("p50", "p90", "p99", "max")), f"{args.samples:,}"],
        ["1 id: LMDB `env.begin()` + `txn.get` per lookup",
         *(fmt_ms(l_get[k]) for k in ("p50", "p90", "p99", "max")), f"{args.samples:,}"],
        ["1 id: LMDB `txn.get` in one held transaction",
         *(fmt_ms(l_held[k]) for k in ("p50", "p90", "p99", "max")), f"{args.samples:,}"],
        [f"{BATCH} ids: `IdIndex.row_id` x{BATCH} + `snap.ds.read_blobs(\"image\", ids=..., preserve_order=True)`",
         *(fmt_ms(batch[k]) for k in ("p50", "p90", "p99", "max")), f"{args.batches:,}"],
        [f"{BATCH} ids: LMDB `txn.get` x{BATCH} in one transaction",
         *(fmt_ms(l_batch[k]) for k in ("p50", "p90", "p99", "max")), f"{args.batches:,}"],
    ]
    table = md_table(["operation", "p50", "p90", "p99", "max", "samples"], rows)
    index_ms = result["index_ms"]
    extra = md_table(["one-off", "figure"], [
        ["`IdIndex` build, first (cold) / median of 3 rebuilds",
         f"{index_ms[0]:.0f} ms / {median(index_ms[1:]):.0f} ms for {n:,} rows"],
        ["open latest handle (`Store.snapshot`, first call)", f"{result['open_ms']:.1f} ms"],
        ["first fetch after open (cold handle, index already built)", f"{result['first_fetch_ms']:.2f} ms"],
        ["table build (`run_ingest`, fresh process)",
         f"{built['seconds']:.1f} s ({n / built['seconds']:,.0f} img/s; LMDB load {lmdb_built['seconds']:.2f} s)"],
    ])
    targets = md_table(["target", "measured", "result"], [
        [f"1 id, p50 ≤ {SINGLE_P50_MS:g} ms (per-request path)",
         f"{fmt_ms(single['p50'])} (p99 {fmt_ms(single['p99'])}; LMDB {fmt_ms(l_get['p50'])}, "
         f"{single['p50'] / l_get['p50']:.0f}x)", verdict(ok_single)],
        [f"{BATCH} ids ≤ {BATCH_MS:g} ms (p50)", f"{fmt_ms(batch['p50'])} (p99 {fmt_ms(batch['p99'])}; LMDB "
         f"{fmt_ms(l_batch['p50'])})", verdict(ok_batch)],
    ])
    body = "\n\n".join([
        f"## Fetch by id, store level{' (quick)' if args.quick else ''}: `{command}`",
        f"- date: {info['date']}\n- machine: {machine_line(info)}\n- code: {git_state()}\n"
        f"- data: a {n:,}-row image table built by `run_ingest` from the generated 28x28 PNGs "
        f"({data.bytes / n:.0f} B average; labels from folders + CSV), and an LMDB env of the same files; "
        f"{args.samples:,} random ids one at a time (after {WARMUP} warm-up fetches), {args.batches} random "
        f"batches of {BATCH}; all reads from a warm page cache; every byte string checked against LMDB.\n"
        "- RowReader has no batch API: the batch row is the IdIndex lookups plus one `read_blobs` call, "
        "which is what a batch endpoint would do.",
        table,
        extra,
        targets,
    ])
    print(body)
    if not args.no_record:
        write_section("bench.fetch" + (" --quick" if args.quick else ""), body)
        print("\nrecorded in bench/RESULTS.md", file=sys.stderr)
    return 0


def measure(root: Path, env_dir: Path, folder: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """All the timed fetches, Lightbox and LMDB, on the same random ids."""
    import lmdb

    from app.store import RowReader, Store
    from app.store.rows import IdIndex

    keys = walk(folder)
    if len(keys) != n:
        raise RuntimeError(f"{folder} holds {len(keys)} files, expected {n}")
    rng = random.Random(args.seed)
    sample = [rng.choice(keys) for _ in range(args.samples)]
    warmup = [rng.choice(keys) for _ in range(WARMUP)]
    batches = [rng.sample(keys, BATCH) for _ in range(args.batches)]

    env = lmdb.open(str(env_dir), readonly=True, lock=False, readahead=False)
    with env.begin() as txn:
        truth = {k: bytes(txn.get(k.encode()) or b"") for k in {*sample, *warmup, *(k for b in batches for k in b)}}

    store = Store(str(root))
    started = time.perf_counter()
    snap = store.snapshot(TABLE)
    open_ms = (time.perf_counter() - started) * 1000
    index_ms = []
    started = time.perf_counter()
    reader = RowReader()
    index = reader.index(snap)
    index_ms.append((time.perf_counter() - started) * 1000)
    for _ in range(3):
        started = time.perf_counter()
        IdIndex(snap._ds)
        index_ms.append((time.perf_counter() - started) * 1000)
    if len(index) != n:
        raise RuntimeError(f"table has {len(index)} rows, expected {n}")

    started = time.perf_counter()
    first = reader.image_bytes(snap, reader.image_ref(snap, warmup[0]))
    first_fetch_ms = (time.perf_counter() - started) * 1000
    if first != truth[warmup[0]]:
        raise RuntimeError(f"bytes of {warmup[0]} differ from the file")

    def lightbox(key: str) -> bytes:
        s = store.snapshot(TABLE)
        return reader.image_bytes(s, reader.image_ref(s, key))

    def lightbox_held(key: str) -> bytes:
        return reader.image_bytes(snap, reader.image_ref(snap, key))

    def lightbox_batch(keys: list[str]) -> list[tuple[int, bytes | None]]:
        s = store.snapshot(TABLE)
        idx = reader.index(s)
        return s._ds.read_blobs("image", ids=[idx.row_id(k) for k in keys], preserve_order=True)

    def lmdb_get(key: str) -> bytes | None:
        with env.begin() as t:
            return t.get(key.encode())

    held_txn = env.begin()

    def lmdb_held(key: str) -> bytes | None:
        return held_txn.get(key.encode())

    def lmdb_batch(keys: list[str]) -> list[bytes | None]:
        with env.begin() as t:
            return [t.get(k.encode()) for k in keys]

    for key in warmup:  # correctness, and warm both sides
        if lightbox(key) != truth[key] or lightbox_held(key) != truth[key] or lmdb_get(key) != truth[key]:
            raise RuntimeError(f"bytes of {key} differ between Lightbox and LMDB")
    for keys_ in batches[:3]:
        got = lightbox_batch(keys_)
        if [d for _, d in got] != [truth[k] for k in keys_] or lmdb_batch(keys_) != [truth[k] for k in keys_]:
            raise RuntimeError("batch bytes differ between Lightbox and LMDB")

    out: dict[str, Any] = {"open_ms": open_ms, "index_ms": index_ms, "first_fetch_ms": first_fetch_ms}
    out["single"] = stats(timed(lightbox, sample))
    out["held"] = stats(timed(lightbox_held, sample))
    out["lmdb_get"] = stats(timed(lmdb_get, sample))
    out["lmdb_held"] = stats(timed(lmdb_held, sample))
    out["batch"] = stats(timed(lightbox_batch, batches))
    out["lmdb_batch"] = stats(timed(lmdb_batch, batches))
    held_txn.abort()
    env.close()
    for name in ("single", "held", "lmdb_get", "lmdb_held", "batch", "lmdb_batch"):
        s = out[name]
        print(f"  {name:10s} p50 {s['p50']:.4f} ms  p99 {s['p99']:.4f} ms  max {s['max']:.3f} ms", file=sys.stderr)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
