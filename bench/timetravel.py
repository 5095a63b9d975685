"""Target 4, time travel: reads at version 1 vs latest, and listing the versions of a long log.

Two tables are built with ``ingest.pipeline.run_ingest`` from bench/common.py's PNGs, through
manifests (so each table's ids are distinct):

- ``history50``: version 1 holds the base rows (9,000 quick / 99,000 full); then 49 versions of 5
  rows each (``commit_every=5``). The same reads run at ``Ref(version=1)`` and at latest through
  the service's own objects (one ``Store`` and ``RowReader``, warm, as a server holds them),
  interleaved, alternating which goes first: fetch one image by id
  (``snapshot`` + ``image_ref`` + ``image_bytes``), a filtered count
  (``app.services.query.count``), and, cold, opening a handle (``lance.dataset(uri, version=1)``
  vs ``lance.dataset(uri)``) plus one ``take``.
- ``history500``: 5,000 rows committed 10 at a time: 500 versions. The first page (100) of the
  versions list through ``app.services.history.list_versions`` (cold: a fresh ``Store``; warm:
  the same one) and over HTTP (``GET /api/v1/tables/history500/versions?limit=100`` against
  ``lightbox serve``), against ``lance.dataset(uri).versions()`` (and ``version_refs()``).

    python -m bench.timetravel [--quick]
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    DATA_DIR,
    cap_threads,
    machine,
    machine_line,
    make_pngs,
    md_table,
    scratch,
    verdict,
    write_section,
)

RATIO_TARGET = 1.2
LIST_TARGET_MS = 20.0


# -- tables ---------------------------------------------------------------------------------------
def write_manifest(path: Path, data: Any, files: Sequence[str]) -> Path:
    """A manifest CSV beside the data folder: ``path`` (relative to the manifest), label, split."""
    meta: dict[str, tuple[str, str]] = {}
    with open(data.labels_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            meta[row["file"]] = (row["label"], row["split"])
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label", "split"])
        for rel in files:
            out.writerow([f"{data.folder.name}/{rel}", *meta[rel]])
    return path


def ingest(root: Path, table: str, manifest: Path, commit_every: int | None = None) -> list[int]:
    from app.store import Store
    from ingest.pipeline import IngestOptions, run_ingest

    report = run_ingest(Store(str(root)), IngestOptions(table=table, sources=[str(manifest)], commit_every=commit_every,
                                                        progress=False, message=f"bench {table}"))
    if report.skipped:
        raise RuntimeError(f"ingest skipped rows: {report.to_dict()}")
    return list(report.versions)


def build_tables(root: Path, base_rows: int, log_rows: int) -> dict[str, Any]:
    from bench.common import walk

    n = 10_000 if base_rows + 245 <= 10_000 else 100_000
    data = make_pngs(n)
    files = walk(data.folder)
    rng = random.Random(50)
    rng.shuffle(files)
    base, extra, log = files[:base_rows], files[base_rows:base_rows + 245], files[:log_rows]
    # Manifests sit beside the data folder, so their paths (and so the ids) read "mnist-N/3/00012.png".
    manifests = [DATA_DIR / f"{root.name}-{part}.csv" for part in ("h50-base", "h50-extra", "h500")]
    try:
        started = time.perf_counter()
        v1 = ingest(root, "history50", write_manifest(manifests[0], data, base))
        rest = ingest(root, "history50", write_manifest(manifests[1], data, extra), commit_every=5)
        t50 = time.perf_counter() - started
        started = time.perf_counter()
        v500 = ingest(root, "history500", write_manifest(manifests[2], data, log), commit_every=10)
        t500 = time.perf_counter() - started
    finally:
        for path in manifests:
            path.unlink(missing_ok=True)
    if v1 + rest != list(range(1, 51)) or v500 != list(range(1, 501)):
        raise RuntimeError(f"unexpected versions: {v1 + rest} / {v500[:3]}..{v500[-1:]}")
    ids_v1 = [f"{data.folder.name}/{rel}" for rel in base]
    return {"ids_v1": ids_v1, "build50_s": t50, "build500_s": t500, "rows_v1": len(base),
            "rows_latest": len(base) + len(extra), "log_rows": len(log)}


# -- timing -----------------------------------------------------------------------------------------
def timed(fn: Callable[..., Any], *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - started) * 1e3


def paired(a: Callable[[int], Any], b: Callable[[int], Any], n: int) -> tuple[list[float], list[float]]:
    """``n`` interleaved calls of a(i) and b(i), alternating which goes first; times in ms."""
    ta, tb = [], []
    for i in range(n):
        if i % 2 == 0:
            ta.append(timed(a, i))
            tb.append(timed(b, i))
        else:
            tb.append(timed(b, i))
            ta.append(timed(a, i))
    return ta, tb


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def reads(root: Path, ids: Sequence[str], n_fetch: int, n_count: int, n_open: int, rounds: int) -> dict[str, Any]:
    import lance

    from app.services.query import count
    from app.store import Ref, RowReader, Store

    store, reader = Store(str(root)), RowReader()
    v1, latest = Ref(version=1), Ref()
    name = "history50"
    rng = random.Random(4)

    def fetch(ref: Ref, key: str) -> bytes:
        snap = store.snapshot(name, ref)
        return reader.image_bytes(snap, reader.image_ref(snap, key))

    first = {"v1": timed(lambda: fetch(v1, ids[0])), "latest": timed(lambda: fetch(latest, ids[0]))}
    if fetch(v1, ids[1]) != fetch(latest, ids[1]):
        raise RuntimeError("version 1 and latest disagree on an image they share")
    uri = str(root / f"{name}.lance")
    out: dict[str, Any] = {"first_request_ms": first, "rounds": [],
                           "fragments": (len(lance.dataset(uri, version=1).get_fragments()),
                                         len(lance.dataset(uri).get_fragments()))}
    for _ in range(rounds):
        keys = [rng.choice(ids) for _ in range(n_fetch)]
        f1, fl = paired(lambda i, k=keys: fetch(v1, k[i]), lambda i, k=keys: fetch(latest, k[i]), n_fetch)
        labels = [rng.randrange(10) for _ in range(n_count)]
        c1, cl = paired(lambda i, k=labels: count(store, name, v1, f"label = {k[i]}"),
                        lambda i, k=labels: count(store, name, latest, f"label = {k[i]}"), n_count)
        o1, ol = paired(lambda i: lance.dataset(uri, version=1).take([i % 100], columns=["id", "sha256"]),
                        lambda i: lance.dataset(uri).take([i % 100], columns=["id", "sha256"]), n_open)
        out["rounds"].append({"fetch": (med(f1), med(fl)), "count": (med(c1), med(cl)), "open": (med(o1), med(ol))})
        print(f"  round: {out['rounds'][-1]}", file=sys.stderr)
    return out


def version_lists(root: Path, n_cold: int, n_warm: int, n_http: int, work: Path) -> dict[str, Any]:
    import httpx
    import lance

    from app.services.history import list_versions
    from app.store import Store
    from bench._serving import lightbox_server

    name = "history500"
    uri = str(root / f"{name}.lance")
    ds = lance.dataset(uri)
    res: dict[str, Any] = {
        "versions()": [timed(ds.versions) for _ in range(max(3, n_cold))],
        "version_refs()": [timed(ds.version_refs) for _ in range(n_warm)],
        "open+versions()": [timed(lambda: lance.dataset(uri).versions()) for _ in range(max(3, n_cold))],
    }
    cold = []
    for _ in range(n_cold):
        store = Store(str(root))
        store.latest(name)  # opening the table is not part of listing it: a server has it open
        cold.append(timed(lambda s=store: list_versions(s, name, limit=100)))  # type: ignore[misc]
    res["list_versions cold (fresh Store, table open)"] = cold
    cold_open = []
    for _ in range(n_cold):
        cold_open.append(timed(lambda: list_versions(Store(str(root)), name, limit=100)))
    res["list_versions cold (fresh Store, incl. opening)"] = cold_open
    store = Store(str(root), refresh_seconds=3600.0)
    page, cursor = list_versions(store, name, limit=100)
    if len(page) != 100 or page[0]["version"] != 500 or cursor is None:
        raise RuntimeError(f"unexpected page: {len(page)} entries, first {page[0]['version']}, cursor {cursor}")
    res["list_versions warm"] = [timed(lambda: list_versions(store, name, limit=100)) for _ in range(n_warm)]
    store_refresh = Store(str(root))  # the default refresh (1 s): latest re-opened once a second
    list_versions(store_refresh, name, limit=100)
    res["list_versions warm, default refresh"] = []
    deadline = time.perf_counter() + 3.0
    while time.perf_counter() < deadline or len(res["list_versions warm, default refresh"]) < 20:
        res["list_versions warm, default refresh"].append(
            timed(lambda: list_versions(store_refresh, name, limit=100)))
    server = lightbox_server(root, work)
    try:
        server.start("/api/v1/tables")
        url = f"{server.base}/api/v1/tables/{name}/versions?limit=100"
        with httpx.Client() as client:
            started = time.perf_counter()
            r = client.get(url)
            res["HTTP first request (server just started)"] = [(time.perf_counter() - started) * 1e3]
            body = r.json() if r.status_code == 200 else None
            entries = body.get("versions") if isinstance(body, dict) else body  # a list, or {"versions": [...]}
            if not isinstance(entries, list) or len(entries) != 100:
                raise RuntimeError(f"HTTP versions list failed: {r.status_code} {r.text[:300]}")
            warm = []
            for _ in range(n_http):
                started = time.perf_counter()
                client.get(url).raise_for_status()
                warm.append((time.perf_counter() - started) * 1e3)
            res["HTTP warm"] = warm
    finally:
        server.stop()
    return res


# -- report ---------------------------------------------------------------------------------------------
def report(args: argparse.Namespace, info: dict[str, str], built: dict[str, Any], rd: dict[str, Any],
           lists: dict[str, Any]) -> str:
    ops = [("fetch 1 image by id (snapshot + image_ref + image_bytes, warm)", "fetch"),
           ("filtered count `label = k` (services.query.count)", "count"),
           ("cold: `lance.dataset(uri[, version=1])` + `take` of 1 row", "open")]
    rows, verdicts = [], []
    for label, key in ops:
        v1 = med([r[key][0] for r in rd["rounds"]])
        lt = med([r[key][1] for r in rd["rounds"]])
        ratios = [r[key][0] / r[key][1] for r in rd["rounds"]]
        ratio = med(ratios)
        ok = ratio <= RATIO_TARGET
        verdicts.append(ok)
        rows.append([label, f"{v1:.3f}", f"{lt:.3f}", f"{ratio:.2f}x ({', '.join(f'{x:.2f}' for x in ratios)})",
                     verdict(ok)])
    cmd = "python -m bench.timetravel" + (" --quick" if args.quick else "")
    lines = [
        f"## Time travel (target 4){' — quick' if args.quick else ''}",
        "",
        f"`{cmd}` — {info['date']}; {machine_line(info)}.",
        "",
        f"`history50`: version 1 = {built['rows_v1']:,} PNG rows, then 49 versions of 5 rows "
        f"({built['rows_latest']:,} rows at version 50), built with `run_ingest` from manifests in "
        f"{built['build50_s']:.1f} s. Reads go through one warm `Store` + `RowReader`, as in the server; "
        f"version 1 and latest interleaved, alternating which goes first; per-op median of {args.n_fetch} "
        f"fetches / {args.n_count} counts / {args.n_open} opens per round, {args.rounds} rounds; the ratio is the "
        "median of the per-round ratios.",
        "",
        md_table(["read", "version 1 p50 (ms)", "latest p50 (ms)", "v1 / latest", "target ≤ 1.2x"], rows),
        "",
        f"First request at each (builds that snapshot's id index of {built['rows_v1']:,}+ ids): version 1 "
        f"{rd['first_request_ms']['v1']:.1f} ms, latest {rd['first_request_ms']['latest']:.1f} ms.",
        f"Fragments: {rd['fragments'][0]} at version 1, {rd['fragments'][1]} at version 50 (each 5-row append adds "
        "one), which is why a full-scan filtered count costs more at latest than at version 1: the old version pays "
        "no time-travel penalty; latest pays for the small fragments until the table is compacted.",
        "",
    ]
    http_warm = med(lists["HTTP warm"])
    http_first = lists["HTTP first request (server just started)"][0]
    warm_service = med(lists["list_versions warm"])
    cold_service = med(lists["list_versions cold (fresh Store, table open)"])
    lrows = []
    for label, values in lists.items():
        lrows.append([label, f"{med(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}", len(values)])
    lines += [
        f"`history500`: {built['log_rows']:,} rows committed 10 at a time (500 versions, built in "
        f"{built['build500_s']:.1f} s). First page of the log, `limit=100`, newest first.",
        "",
        md_table(["how", "median (ms)", "min (ms)", "max (ms)", "n"], lrows),
        "",
        md_table(["target: versions list of a 500-version table ≤ 20 ms", "measured", "verdict"], [
            ["HTTP `GET /versions?limit=100`, warm (p50)", f"{http_warm:.2f} ms", verdict(http_warm <= LIST_TARGET_MS)],
            ["HTTP, first request after the server starts", f"{http_first:.2f} ms",
             verdict(http_first <= LIST_TARGET_MS)],
            ["`list_versions`, warm (p50)", f"{warm_service:.2f} ms", verdict(warm_service <= LIST_TARGET_MS)],
            ["`list_versions`, cold (fresh Store, p50)", f"{cold_service:.2f} ms",
             verdict(cold_service <= LIST_TARGET_MS)],
            ["baseline `LanceDataset.versions()` (all 500, p50)", f"{med(lists['versions()']):.2f} ms", "(baseline)"],
        ]),
        "",
        f"Overall, as a running server answers (reads at version 1 vs latest, warm versions list over HTTP): "
        f"{verdict(all(verdicts) and http_warm <= LIST_TARGET_MS)}. The first listing after start-up (or on a "
        f"fresh `Store`) reads one manifest per listed version: {verdict(http_first <= LIST_TARGET_MS)} "
        f"({http_first:.0f} ms over HTTP, {cold_service:.0f} ms in-process).",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Target 4: reads at version 1 vs latest; listing 500 versions.")
    parser.add_argument("--quick", action="store_true", help="9,000-row base, fewer repetitions (under a minute)")
    parser.add_argument("--base-rows", type=int, default=None, help="rows in version 1 (default 99,000; quick 9,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the tables under bench/data/tmp/")
    args = parser.parse_args(argv)
    args.base_rows = args.base_rows or (9_000 if args.quick else 99_000)
    args.n_fetch, args.n_count, args.n_open = (300, 30, 30) if args.quick else (2000, 200, 200)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cap_threads()
    info = machine()
    work = scratch("timetravel-")
    try:
        built = build_tables(work, args.base_rows, 5000)
        rd = reads(work, built["ids_v1"], args.n_fetch, args.n_count, args.n_open, args.rounds)
        lists = version_lists(work, 5 if args.quick else 20, 100 if args.quick else 500, 100 if args.quick else 500,
                              work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = report(args, info, built, rd, lists)
    print(text)
    if not args.no_record:
        write_section("bench.timetravel-quick" if args.quick else "bench.timetravel", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
