"""Vector search on the durable Lance index: QPS over HTTP beside the FastAPI+faiss endpoint a user
would tune instead, held-out recall, first search after a write and after a restart, memory across
versions.

    python -m bench.search [--quick] [--n 200000] [--queries 200] [--seconds 10] [--rounds 4]
                           [--nlist 1024] [--anchor-recall 0.95] [--batch 20000] [--index-cache-mb MB]
                           [--no-http] [--no-in-process] [--no-minilm] [--keep] [--no-record]

Data (generated, deterministic), the hard mixture the search work was measured on: ``n`` float32
vectors of 384 dims, ``x = centres[c] + 1.2 * normal`` with 2,000 centres drawn from a unit normal,
so clusters overlap (one IVF probe is far from enough), searched by L2; queries drawn the same way,
not in the table (held out). ``label`` (int64, uniform 0..9, independent of the vectors: ``label = 3``
keeps 10%) and ``cls`` (the centre's number % 10, correlated with the vectors: ``cls = 3`` keeps
~10%). Real text: ``--texts`` sentences (the docstrings of the installed Python packages, split into
sentences and de-duplicated) embedded with the bundled MiniLM, searched by cosine, queries held out.
Ground truth: exact numpy top-10.

Steps, all at the service's default settings (``LIGHTBOX_INDEX_MIN_ROWS``, ``LIGHTBOX_RECALL_TARGET``):

1. served (``bench/_search_served.py``): ``lightbox serve`` as a subprocess; the table is loaded
   through the official LanceDB client in ``--batch``-row adds, and the service's own keeper builds
   and tunes the index (timed until the listing says it covers every row and is tuned). Then a
   restart (a new process): time to the first answered search, idle RSS; three 1,000-row writes
   through the LanceDB endpoint, each followed by its first search (and its background fold); RSS
   after searching at each of the last 5 versions; held-out recall@10 over HTTP on the table as it
   then is; and QPS with 8 concurrent keep-alive connections (one async process, an httpx client per
   connection: a shared pool adds stalls of its own, see ``bench/_search_served.py``)
   against ``bench/_faiss_server.py`` over the same rows (faiss IVF-Flat with ``--nlist`` lists,
   1,024 at 200k rows, at the smallest nprobe whose held-out recall@10 reaches ``--anchor-recall``,
   0.95), whole processes, in rounds alternating which goes first; then the same rounds with wrk as the
   load (a C client: the httpx client spends about a CPU-ms a request on the same 2 cores);
2. in process: the same rows written directly, the ``IndexKeeper`` builds and tunes its index
   (timed), recall@10 of ``Searcher.search`` unfiltered and with each filter; append 1,000 rows (a
   new version) and time the first searches there (the server time of a request: nothing is
   rebuilt), then the background fold, five times.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    DATA_DIR,
    cap_threads,
    git_state,
    machine,
    machine_line,
    md_table,
    median,
    scratch,
    verdict,
    write_section,
)

TABLE = "vectors"
TEXTS = "texts"
DIM = 384
CENTRES = 2000
K = 10
APPEND = 1000
FILTERS = {"plain": None, "label": "label = 3", "cls": "cls = 3"}
_T0 = [0.0]


def log(msg: str) -> None:
    print(f"  [{time.perf_counter() - _T0[0]:5.0f} s] {msg}", file=sys.stderr, flush=True)


# -- data -------------------------------------------------------------------------------------------
def mixture(n: int, seed: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(centres), n)
    out = np.empty((n, DIM), np.float32)
    for s in range(0, n, 50_000):
        e = min(n, s + 50_000)
        out[s:e] = centres[which[s:e]] + 1.2 * rng.standard_normal((e - s, DIM), dtype=np.float32)
    return out, which


def exact_top(x: np.ndarray, q: np.ndarray, metric: str, mask: np.ndarray | None = None) -> np.ndarray:
    """Positions (in ``x``) of each query's exact top-k, over the rows ``mask`` keeps."""
    pos = np.flatnonzero(mask) if mask is not None else np.arange(len(x))
    base = x[pos]
    out = np.empty((len(q), K), np.int64)
    norms = (base * base).sum(1) if metric == "l2" else None
    for s in range(0, len(q), 32):
        sims = q[s : s + 32] @ base.T
        d = norms[None, :] - 2 * sims if norms is not None else -sims
        top = np.argpartition(d, K, axis=1)[:, :K]
        out[s : s + 32] = pos[top]
    return out


def recall(found: Sequence[Sequence[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(map(int, f)) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))


def write_rows(uri: str, x: np.ndarray, start: int, labels: np.ndarray, cls: np.ndarray, metric: str,
               mode: str, prefix: str = "r") -> int:
    import lance
    import pyarrow as pa

    from app.store.schema import vector_field

    schema = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("label", pa.int64()),
                        pa.field("cls", pa.int64()),
                        vector_field("vector", x.shape[1], model="bench", source="text", metric=metric)])
    ids = pa.array([f"{prefix}{start + i:07d}" for i in range(len(x))], pa.string())
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), x.shape[1])
    table = pa.Table.from_arrays([ids, pa.array(labels, pa.int64()), pa.array(cls, pa.int64()), column],
                                 schema=schema)
    return int(lance.write_dataset(table, uri, schema=schema, mode=mode, enable_stable_row_ids=True,
                                   max_rows_per_file=65_536).version)


def sentences(limit: int) -> list[str]:
    """Real English sentences: the docstrings of the installed packages, split and de-duplicated."""
    import importlib
    import pkgutil

    seen: dict[str, None] = {}
    for name in ("numpy", "pyarrow", "fastapi", "pydantic", "httpx", "PIL", "sklearn", "pandas", "torch",
                 "transformers", "sentence_transformers", "skimage", "scipy", "lance", "lancedb"):
        try:
            package = importlib.import_module(name)
        except Exception:
            continue
        modules = [package]
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + ".", onerror=lambda _: None):
            if len(modules) > 400 or re.search(r"test|__main__|\.cli|\.main|conftest|setup", info.name):
                continue
            argv, sys.argv = sys.argv, sys.argv[:1]  # a module that parses arguments on import sees none
            try:
                modules.append(importlib.import_module(info.name))
            except (Exception, SystemExit):
                continue
            finally:
                sys.argv = argv
        for module in modules:
            for obj in [module, *vars(module).values()]:
                doc = getattr(obj, "__doc__", None) if callable(obj) or obj is module else None
                if not isinstance(doc, str):
                    continue
                for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                    if 30 <= len(s) <= 200 and re.match(r"^[A-Z][a-z]", s) and not re.search(r"[>{}=_\\]", s):
                        seen[s] = None
            if len(seen) >= limit:
                return list(seen)[:limit]
    return list(seen)[:limit]


def minilm_data(limit: int) -> tuple[np.ndarray, list[str]]:
    """Sentence vectors (cached under bench/data/, keyed by the count)."""
    cache = DATA_DIR / f"minilm-sentences-{limit}.npz"
    if cache.is_file():
        got = np.load(cache, allow_pickle=False)
        return got["x"], list(got["texts"])
    from embeddings.registry import Registry

    texts = sentences(limit)
    log(f"embedding {len(texts)} sentences with MiniLM")
    x = Registry().get("sentence-transformers:all-MiniLM-L6-v2").embed_texts(texts).astype(np.float32)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x, texts=np.array(texts))
    return x, texts


# -- in process ---------------------------------------------------------------------------------------
def search_ids(searcher: Any, table: str, q: np.ndarray, *, filt: str | None = None, version: int | None = None,
               nprobes: int | None = None) -> list[int]:
    from app.services.search import SearchSpec
    from app.store import Ref

    ref = Ref(version=version) if version is not None else Ref()
    hits = searcher.search(table, ref, SearchSpec(vector=q.tolist(), k=K, filter=filt, columns=["id"],
                                                  nprobes=nprobes))[1]
    return [int(str(i)[1:]) for i in hits.column("id").to_pylist()]


def make_data(args: argparse.Namespace) -> dict[str, Any]:
    """The table's vectors and columns, the held-out queries and their exact top 10 over the table."""
    centres = np.random.default_rng(1).standard_normal((CENTRES, DIM), dtype=np.float32)
    x, which = mixture(args.n, 2, centres)
    q, _ = mixture(args.queries, 4, centres)
    return {"x": x, "labels": np.random.default_rng(3).integers(0, 10, args.n), "cls": which % 10, "q": q,
            "truth": exact_top(x, q, "l2"), "centres": centres}


def in_process(root: Path, args: argparse.Namespace, data: dict[str, Any], res: dict[str, Any]) -> None:

    from app.services.search import Searcher
    from app.settings import Settings
    from app.store import RowReader, Store
    from app.store.vectors import IndexKeeper
    from embeddings.registry import Registry

    settings = Settings()
    x, labels, cls, q = data["x"], data["labels"], data["cls"], data["q"]
    extra, extra_which = mixture(APPEND * 5, 5, data["centres"])
    store = Store(str(root))
    uri = store.table_uri(TABLE)
    t = time.perf_counter()
    write_rows(uri, x, 0, labels, cls, "l2", "create")
    log(f"wrote {args.n} x {DIM} in {time.perf_counter() - t:.1f} s")
    keeper = IndexKeeper(store, min_rows=settings.index_min_rows, recall_target=settings.recall_target,
                         sample=settings.recall_sample)
    searcher = Searcher(store, RowReader(), Registry(), keeper)
    t = time.perf_counter()
    steps = keeper.fold(TABLE)
    res["build_s"] = time.perf_counter() - t
    tuning = keeper.tuning(store.latest(TABLE), "vector")
    res["tuning"] = tuning.report() if tuning else None
    log(f"index built and tuned in {res['build_s']:.1f} s: {steps}")
    res["recall"] = {}
    for key, filt in FILTERS.items():
        mask = None if filt is None else (labels == 3 if key == "label" else cls == 3)
        truth = data["truth"] if mask is None else exact_top(x, q, "l2", mask)
        t = time.perf_counter()
        found = [search_ids(searcher, TABLE, v, filt=filt) for v in q]
        res["recall"][key] = {"recall": recall(found, truth), "ms": (time.perf_counter() - t) / len(q) * 1e3}
    log(f"recall {res['recall']}")
    # writes: a new version, first searches there, then the background fold
    firsts, folds = [], []
    for step in range(5 if not args.quick else 2):
        part = slice(step * APPEND, (step + 1) * APPEND)
        write_rows(uri, extra[part], args.n + step * APPEND, np.zeros(APPEND, int), extra_which[part] % 10, "l2",
                   "append")
        store.invalidate(TABLE)
        times = []
        for i in range(5):
            t = time.perf_counter()
            got = search_ids(searcher, TABLE, extra[step * APPEND + i])
            times.append((time.perf_counter() - t) * 1e3)
            assert got[0] == args.n + step * APPEND + i, "a new row must be found at once"
        firsts.append(times)
        t = time.perf_counter()
        keeper.fold(TABLE)
        folds.append(time.perf_counter() - t)
    res["after_write_ms"] = firsts
    res["fold_s"] = folds
    log(f"first searches after a write (ms): {firsts}; folds (s): {folds}")


def texts_part(root: Path, args: argparse.Namespace, res: dict[str, Any]) -> None:
    from app.services.search import Searcher
    from app.settings import Settings
    from app.store import RowReader, Store
    from app.store.vectors import IndexKeeper
    from embeddings.registry import Registry

    vectors, _ = minilm_data(args.texts)
    n_q = min(200, len(vectors) // 10)
    rng = np.random.default_rng(7)
    order = rng.permutation(len(vectors))
    q, x = vectors[order[:n_q]], vectors[order[n_q:]]
    labels = rng.integers(0, 10, len(x))
    settings = Settings()
    store = Store(str(root))
    write_rows(store.table_uri(TEXTS), x, 0, labels, labels, "cosine", "create")
    # a few thousand sentences: the threshold is lowered so they are indexed (and tuned) all the same
    keeper = IndexKeeper(store, min_rows=min(settings.index_min_rows, len(x) // 4),
                         recall_target=settings.recall_target, sample=settings.recall_sample)
    keeper.fold(TEXTS)
    searcher = Searcher(store, RowReader(), Registry(), keeper)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    qu = q / np.linalg.norm(q, axis=1, keepdims=True)
    tuning = keeper.tuning(store.latest(TEXTS), "vector")
    out = {"rows": len(x), "tuning": tuning.report() if tuning else None}
    for key, filt, mask in (("plain", None, None), ("label", "label = 3", labels == 3)):
        truth = exact_top(unit, qu, "cosine", mask)
        out[key] = recall([search_ids(searcher, TEXTS, v, filt=filt) for v in q], truth)
    res["texts"] = out
    log(f"MiniLM texts: {out}")


# -- over HTTP ----------------------------------------------------------------------------------------
def batches_of(x: np.ndarray, labels: np.ndarray, cls: np.ndarray, size: int, start: int = 0) -> list[Any]:
    """Arrow tables of ``size`` rows (ids ``r`` + row number), as a client would send them."""
    import pyarrow as pa

    out = []
    for s in range(0, len(x), size):
        e = min(len(x), s + size)
        out.append(pa.table({"id": pa.array([f"r{start + i:07d}" for i in range(s, e)], pa.string()),
                             "label": pa.array(labels[s:e], pa.int64()), "cls": pa.array(cls[s:e], pa.int64()),
                             "vector": pa.FixedSizeListArray.from_arrays(pa.array(x[s:e].ravel(), pa.float32()),
                                                                         DIM)}))
    return out


def over_http(root: Path, args: argparse.Namespace, data: dict[str, Any], res: dict[str, Any]) -> None:
    """Load through the LanceDB client into ``lightbox serve``, let its keeper index the table, restart it,
    then measure recall, RSS, freshness and QPS beside the tuned faiss anchor."""
    import httpx
    import lancedb
    import psutil

    from bench._search_served import (
        anchor_server,
        json_bodies,
        load_through_service,
        qps_rounds,
        recall_over_http,
        served,
        tune_anchor,
        wait_indexed,
        wrk_rounds,
    )

    logs = root / "logs"
    home = root / "served"
    path = f"/api/v1/tables/{TABLE}/search"
    env = {"LIGHTBOX_INDEX_CACHE_BYTES": str(int(args.index_cache_mb * 1024**2))} if args.index_cache_mb else {}
    x = data["x"]
    server = served(home, logs, env)
    try:
        res["load_s"] = load_through_service(server.base, TABLE, batches_of(x, data["labels"], data["cls"],
                                                                           args.batch))
        started = time.perf_counter()
        with httpx.Client(base_url=server.base, timeout=60) as client:
            res["index"] = wait_indexed(client, TABLE)
        res["indexed_s"] = time.perf_counter() - started
    finally:
        server.stop()
    log(f"loaded {len(x)} rows through the LanceDB client in {res['load_s']:.1f} s; indexed and tuned "
        f"{res['indexed_s']:.1f} s later: {res['index']}")
    # restart: a new process over the same root; from ready to the first answered search
    t = time.perf_counter()
    server = served(home, logs, env)
    res["restart_ready_s"] = time.perf_counter() - t
    baseline = None
    try:
        with httpx.Client(base_url=server.base, timeout=60) as client:
            t = time.perf_counter()
            client.post(path, json={"vector": data["q"][0].tolist(), "k": K, "columns": ["id"]}).raise_for_status()
            res["restart_first_search_s"] = time.perf_counter() - t
            t = time.perf_counter()
            client.post(path, json={"vector": data["q"][1].tolist(), "k": K, "columns": ["id"]}).raise_for_status()
            res["second_search_ms"] = (time.perf_counter() - t) * 1e3
            time.sleep(1.0)
            idle = server.rss_mb()
            # writes through the service, each followed by its first search (3 times: one is noise); the
            # versions they and their folds make are where the memory across versions is measured
            tbl = lancedb.connect("db://lightbox", api_key="bench", host_override=server.base).open_table(TABLE)
            res["http_after_write_ms"] = []
            added = []
            for step in range(3):
                extra, which = mixture(APPEND, 11 + step, data["centres"])
                start = len(x) + step * APPEND
                tbl.add(batches_of(extra, np.zeros(APPEND, int), which % 10, APPEND, start)[0])
                t = time.perf_counter()
                got = client.post(path, json={"vector": extra[0].tolist(), "k": K, "columns": ["id"]}).json()
                res["http_after_write_ms"].append((time.perf_counter() - t) * 1e3)
                assert int(got["hits"][0]["id"][1:]) == start, "the new row must be found at once"
                added.append(extra)
                time.sleep(3.0)  # the background fold lands (its quiet delay, then well under a second)
            log(f"first HTTP search after a 1,000-row write: {res['http_after_write_ms']} ms")
            x = np.concatenate([x, *added])  # the table's rows now, positions = the ids' numbers
            truth = exact_top(x, data["q"], "l2")
            listed = client.get(f"/api/v1/tables/{TABLE}/versions", params={"limit": 5}).json()
            versions = sorted(int(v["version"]) for v in listed)
            for v in versions:
                recall_over_http(client, path, data["q"][:20], truth[:20], {"version": v})
            res["rss"] = {"idle_mb": idle, "after_5_versions_mb": server.rss_mb(), "versions": versions,
                          "vectors_mb": len(x) * DIM * 4 / 1024**2}
            log(f"restart first search {res['restart_first_search_s']:.2f} s; RSS {res['rss']}")
            res["http_recall"] = recall_over_http(client, path, data["q"], truth)
            log(f"held-out recall@10 over HTTP: {res['http_recall']:.3f}")
        # the anchor over the same rows, tuned on the same held-out queries to the smallest nprobe that
        # reaches the target
        baseline = anchor_server(x, root / "faiss", logs, args.nlist)
        with httpx.Client(base_url=baseline.base, timeout=60) as client:
            res["faiss"] = tune_anchor(client, data["q"], truth, args.anchor_recall)
        log(f"anchor: {res['faiss']}")
        contenders = [("lightbox", server, json_bodies(path, data["q"], {"columns": ["id"]})),
                      ("faiss", baseline, json_bodies("/search", data["q"]))]
        res["load"] = qps_rounds(contenders, args.rounds, args.seconds, log=log)
        res["wrk"] = wrk_rounds(contenders, args.rounds, args.seconds, logs, log=log)
        if args.shared_pool:
            res["shared"] = qps_rounds(contenders, args.rounds, args.seconds, log=log, shared=True)
        res["rss_faiss_mb"] = float(psutil.Process(baseline.pid).memory_info().rss) / 1024**2
        res["rss_after_load_mb"] = server.rss_mb()
        load = res["load"]
        log(f"QPS at 8 connections: {load['qps']} (ratio {load['ratio']:.2f}), p50 {load['p50_ms']}")
        log(f"same under wrk: {res['wrk']['qps']} (ratio {res['wrk']['ratio']:.2f}), p50 {res['wrk']['p50_ms']}")
    finally:
        if baseline is not None:
            baseline.stop()
        server.stop()


# -- report ---------------------------------------------------------------------------------------------
def report(res: dict[str, Any], args: argparse.Namespace, info: dict[str, str], command: str) -> str:
    lines = [f"## Vector search on the durable Lance index: `{command}`", "",
             f"{info['date']}, code {res['code']}, {res['total_s']:.0f} s.", "",
             f"Machine: {machine_line(info)}", "",
             f"Data: {args.n:,} x {DIM} float32, Gaussian mixture of {CENTRES:,} overlapping clusters (L2), "
             f"{args.queries} held-out queries (not in the table); settings {res['settings']}."]
    if "index" in res:
        index = res["index"]
        lines += ["", f"Served: loaded through the LanceDB client in {-(-args.n // args.batch)} batches "
                  f"({res['load_s']:.1f} s); the keeper's index ({index.get('type')}, "
                  f"{index.get('num_partitions')} partitions, nprobes {index.get('nprobes')}, refine "
                  f"{index.get('refine_factor')}, sample estimate {index.get('recall')}) was built and tuned "
                  f"{res['indexed_s']:.1f} s after the last batch."]
    if "tuning" in res:
        tuning = res.get("tuning") or {}
        lines += ["", f"In process: the keeper built and tuned its index in {res['build_s']:.1f} s "
                  f"({tuning.get('num_partitions')} partitions, nprobes {tuning.get('nprobes')})."]
    lines.append("")
    rows = []
    if "after_write_ms" in res:
        first_after_write = [t[0] for t in res["after_write_ms"]]
        rows.append(["first search after a 1,000-row write (server time, in process)",
                     ", ".join(f"{t:.0f}" for t in first_after_write) + " ms", "<= 100 ms",
                     verdict(max(first_after_write) <= 100)])
    if "http_after_write_ms" in res:
        after = res["http_after_write_ms"]
        rows.append(["same, over HTTP after each of 3 writes through the LanceDB endpoint (client wall; median)",
                     ", ".join(f"{t:.0f}" for t in after) + f" ms ({median(after):.0f})", "<= 100 ms",
                     verdict(median(after) <= 100)])
    if "fold_s" in res:
        rows.append(["background fold of each 1,000-row write", ", ".join(f"{s:.2f}" for s in res["fold_s"]) + " s",
                     "off the request path", ""])
    if "restart_first_search_s" in res:
        rows.append(["restart: first search once the new process is ready (client wall)",
                     f"{res['restart_first_search_s'] * 1e3:.0f} ms (process start to ready "
                     f"{res['restart_ready_s']:.1f} s; next search {res['second_search_ms']:.0f} ms)",
                     "<= 1 s", verdict(res["restart_first_search_s"] <= 1.0)])
        rss = res["rss"]
        grown = rss["after_5_versions_mb"] - rss["idle_mb"]
        cache = f", index cache {args.index_cache_mb:g} MB" if args.index_cache_mb else ", index cache default"
        rows.append([f"RSS after 20 searches at each of versions {rss['versions']}{cache}",
                     f"{rss['idle_mb']:.0f} -> {rss['after_5_versions_mb']:.0f} MB (+{grown:.0f} MB; raw vectors "
                     f"{rss['vectors_mb']:.0f} MB)", "<= 1.5x vectors, <= 700 MB over idle",
                     verdict(grown <= min(700, 1.5 * rss["vectors_mb"]))])
    for key, got in res.get("recall", {}).items():
        rows.append([f"recall@10, default settings, in process, {key}",
                     f"{got['recall']:.3f} ({got['ms']:.1f} ms/query)", ">= 0.95", verdict(got["recall"] >= 0.95)])
    if "texts" in res:
        t = res["texts"]
        for key in ("plain", "label"):
            rows.append([f"recall@10, MiniLM sentences ({t['rows']:,} rows), {key}", f"{t[key]:.3f}", ">= 0.95",
                         verdict(t[key] >= 0.95)])
    if "http_recall" in res:
        rows.append(["recall@10 over HTTP, held-out queries, default settings", f"{res['http_recall']:.3f}",
                     ">= 0.95", verdict(res["http_recall"] >= 0.95)])
    if "load" in res:
        load, anchor = res["load"], res["faiss"]
        ok = (load["ratio"] >= 1.0 and res["http_recall"] >= 0.95
              and load["p50_ms"]["lightbox"] <= load["p50_ms"]["faiss"])
        rows.append([f"QPS over HTTP, {load['connections']} connections (one httpx client each, one process): "
                     "Lightbox / FastAPI+faiss IVF-Flat "
                     f"({anchor['nlist']} lists, nprobe {anchor['nprobe']}: the smallest reaching recall "
                     f"{args.anchor_recall}, got {anchor['recall']:.3f})",
                     f"{load['qps']['lightbox']:,.0f} / {load['qps']['faiss']:,.0f} (medians); {load['ratio']:.2f}x "
                     f"(median of per-round ratios); p50 {load['p50_ms']['lightbox']:.1f} / "
                     f"{load['p50_ms']['faiss']:.1f} ms", ">= 1.0x at recall >= 0.95, p50 <= the anchor's",
                     verdict(ok)])
    if "wrk" in res:
        wrk = res["wrk"]
        ok = (wrk["ratio"] >= 1.0 and res["http_recall"] >= 0.95
              and wrk["p50_ms"]["lightbox"] <= wrk["p50_ms"]["faiss"])
        rows.append([f"same, the load from wrk ({wrk['connections']} connections, one thread: a C client that "
                     "leaves the servers the cores)",
                     f"{wrk['qps']['lightbox']:,.0f} / {wrk['qps']['faiss']:,.0f} (medians); {wrk['ratio']:.2f}x; p50 "
                     f"{wrk['p50_ms']['lightbox']:.1f} / {wrk['p50_ms']['faiss']:.1f} ms",
                     ">= 1.0x at recall >= 0.95, p50 <= the anchor's", verdict(ok)])
    if "shared" in res:
        shared = res["shared"]
        rows.append([f"same, the {shared['connections']} connections in one httpx client's pool (httpcore's pool "
                     "race: see bench/_search_served.py)",
                     f"{shared['qps']['lightbox']:,.0f} / {shared['qps']['faiss']:,.0f} (medians); "
                     f"{shared['ratio']:.2f}x; p50 {shared['p50_ms']['lightbox']:.1f} / "
                     f"{shared['p50_ms']['faiss']:.1f} ms; requests over 100 ms a round {shared['over_100ms']}",
                     "(for reference)", ""])
    lines.append(md_table(["measure", "result", "target", ""], rows))
    if "load" in res:
        lines += ["", f"QPS rounds ({res['load']['seconds']:g} s each, order alternating): {res['load']['rounds']}; "
                  f"p50 per round (ms): {res['load']['p50_rounds']}; requests over 100 ms a round: "
                  f"{res['load'].get('over_100ms')}"
                  + (f"; under wrk {res['wrk']['rounds']}, p50 {res['wrk']['p50_rounds']}" if "wrk" in res else "")
                  + ". Anchor ladder (nprobe: recall): "
                  f"{res['faiss']['ladder']}. RSS after the load: Lightbox {res['rss_after_load_mb']:.0f} MB, faiss "
                  f"{res['rss_faiss_mb']:.0f} MB. Nothing is rebuilt or re-tuned at a restart: the index is read "
                  "from the table's files and its tuning from the table's config."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30k rows, 100 queries, 3k texts")
    parser.add_argument("--n", type=int, default=None, help="rows (default 200000, quick 30000)")
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--texts", type=int, default=None,
                        help="MiniLM sentences (default 3000; embedding runs at ~30/s here)")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per QPS round (default 10, quick 4)")
    parser.add_argument("--shared-pool", action="store_true",
                        help="also run the QPS rounds with one httpx client's pool for all 8 connections")
    parser.add_argument("--rounds", type=int, default=None, help="QPS rounds per contender (default 4, quick 2)")
    parser.add_argument("--batch", type=int, default=20_000, help="rows per LanceDB client add (default 20000)")
    parser.add_argument("--nlist", type=int, default=None,
                        help="the anchor's IVF lists (default 1024; sqrt(n) below 100k rows)")
    parser.add_argument("--anchor-recall", type=float, default=0.95,
                        help="the anchor runs at the smallest nprobe reaching this held-out recall")
    parser.add_argument("--index-cache-mb", type=float, default=None,
                        help="LIGHTBOX_INDEX_CACHE_BYTES for the served process (default: the setting's default)")
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process part (filters, folds)")
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--no-minilm", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    command = " ".join(["python -m bench.search", *(argv if argv is not None else sys.argv[1:])])
    args.n = args.n or (30_000 if args.quick else 200_000)
    args.queries = args.queries or (100 if args.quick else 200)
    args.texts = args.texts or 3000
    args.seconds = args.seconds or (4.0 if args.quick else 10.0)
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.nlist = args.nlist or (1024 if args.n >= 100_000 else int(max(16, args.n**0.5)))
    cap_threads()
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")  # as the service sets it
    info = machine()
    code = git_state()
    started = _T0[0] = time.perf_counter()
    root = scratch("search-")
    from app.settings import Settings

    settings = Settings()
    res: dict[str, Any] = {"settings": {"index_min_rows": settings.index_min_rows,
                                        "recall_target": settings.recall_target,
                                        "recall_sample": settings.recall_sample}}
    try:
        data = make_data(args)
        log(f"data: {args.n} x {DIM}, {args.queries} held-out queries, exact top 10")
        if not args.no_http:
            over_http(root, args, data, res)
        if not args.no_in_process:
            in_process(root / "in-process", args, data, res)
        if not args.no_minilm:
            texts_part(root / "texts", args, res)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    res["total_s"] = time.perf_counter() - started
    res["code"] = code
    body = report(res, args, info, command)
    print(body)
    if not args.no_record:
        write_section("bench.search" + (" --quick" if args.quick else "")
                      + (f" --index-cache-mb {args.index_cache_mb:g}" if args.index_cache_mb else ""), body)
        print("\nrecorded in bench/RESULTS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("LANCE_LOG", "error")
    raise SystemExit(main())
