"""Shared pieces of the benchmarks: synthetic data, contenders run in fresh processes, reporting.

Nothing here touches the disk or imports Lance at import time: the heavy imports live inside the
functions, so a child process that runs the LMDB contender never pays for (or measures) Lance.

Run as ``python -m bench.common '{"job": ...}'`` this module is the child side of ``run_child``:
it runs one contender, and prints one ``RESULT {json}`` line with its time and peak RSS.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(os.path.abspath(__file__)).parent  # no filesystem access at import
PROJECT_DIR = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
DATA_FORMAT = "v1"  # bump when the generators change, so cached data is rebuilt
LMDB_MAP_SIZE = 1 << 36  # 64 GiB of address space; the file stays sparse
LMDB_BATCH = 1000
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")
RESULT_PREFIX = "RESULT "


# -- environment ---------------------------------------------------------------------------
def cap_threads() -> None:
    """One BLAS/OpenMP thread per process (2 cores here); quiet Lance logs. Children inherit it."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")
    os.environ.setdefault("LANCE_LOG", "error")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    mem_kb = 0
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": str(os.cpu_count()),
        "ram": f"{mem_kb / 1024**2:.1f} GiB",
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pylance": _version("pylance"),
        "lancedb": _version("lancedb"),
        "pyarrow": _version("pyarrow"),
        "lmdb": _version("lmdb"),
        "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
        "threads": ", ".join(f"{v}={os.environ.get(v, '')}" for v in THREAD_VARS[:3]),
    }


def git_state() -> str:
    """The commit measured, and whether app/ or ingest/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                              text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "app", "ingest"], cwd=PROJECT_DIR,
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}" + (" + uncommitted changes in app/ or ingest/" if dirty else "")


def machine_line(info: dict[str, str]) -> str:
    return (f"{info['nproc']} cores ({info['cpu']}), {info['ram']} RAM, Linux {info['kernel']}, "
            f"Python {info['python']}, pylance {info['pylance']}, lancedb {info['lancedb']}, "
            f"pyarrow {info['pyarrow']}, lmdb {info['lmdb']}; {info['threads']}; load average at start "
            f"{info['load']} (1/5/15 min; the machine is shared)")


# -- synthetic data ------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSet:
    folder: Path
    count: int
    bytes: int
    labels_csv: Path | None = None


def _marker(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.complete"  # beside the folder: ingest takes every file in it


def _complete(folder: Path, stamp: str) -> DataSet | None:
    marker = _marker(folder)
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    if info.get("stamp") != stamp:
        return None
    csv = folder.parent / f"{folder.name}.csv"
    return DataSet(folder, int(info["count"]), int(info["bytes"]), csv if csv.is_file() else None)


def _mark(folder: Path, stamp: str, count: int, size: int) -> None:
    _marker(folder).write_text(json.dumps({"stamp": stamp, "count": count, "bytes": size}))


def _digit(rng: Any, np: Any) -> Any:
    """A 28x28 uint8 image of a few thick, soft strokes on black: MNIST-like, compressible."""
    img = np.zeros((30, 30), np.float32)
    t = np.linspace(0.0, 1.0, 20, dtype=np.float32)
    for _ in range(int(rng.integers(2, 5))):
        (x0, y0, x1, y1), bend = rng.uniform(6, 23, 4), rng.uniform(-4, 4)
        xs = np.clip(x0 + (x1 - x0) * t + bend * np.sin(np.pi * t), 1, 28).astype(np.intp)
        ys = np.clip(y0 + (y1 - y0) * t, 1, 28).astype(np.intp)
        img[ys, xs] = 1.0
    thick = img.copy()
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        thick += 0.6 * np.roll(np.roll(img, dy, 0), dx, 1)
    thick *= rng.uniform(0.75, 1.0, thick.shape).astype(np.float32)  # anti-aliasing-like grey levels
    level = rng.uniform(190, 255)
    return np.clip(thick[1:29, 1:29] * level, 0, 255).astype(np.uint8)


def make_pngs(n: int) -> DataSet:
    """``n`` 28x28 grayscale PNGs in ``0..9/NNNNN.png`` plus ``mnist-N.csv`` (file,label,split).

    Cached under bench/data/ between runs; regenerated only when missing or of another format.
    """
    import io

    import numpy as np
    from PIL import Image

    folder = DATA_DIR / f"mnist-{n}"
    stamp = f"png-{DATA_FORMAT}-{n}"
    found = _complete(folder, stamp)
    if found is not None:
        return found
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    _marker(folder).unlink(missing_ok=True)
    for label in range(10):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    width = max(5, len(str(n - 1)))
    total = 0
    lines = ["file,label,split"]
    for i in range(n):
        label = i % 10
        rel = f"{label}/{i:0{width}d}.png"
        buf = io.BytesIO()
        Image.fromarray(_digit(rng, np), mode="L").save(buf, format="PNG")
        data = buf.getvalue()
        (folder / rel).write_bytes(data)
        total += len(data)
        lines.append(f"{rel},{label},{'test' if i % 7 == 0 else 'train'}")
    csv = folder.parent / f"{folder.name}.csv"
    csv.write_text("\n".join(lines) + "\n")
    _mark(folder, stamp, n, total)
    print(f"  generated {n} PNGs ({total / n:.0f} B avg) in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)
    return DataSet(folder, n, total, csv)


def make_tiffs(n: int, width: int = 1024, height: int = 672) -> DataSet:
    """``n`` uncompressed 16-bit grayscale TIFFs of ``width`` x ``height`` (1.38 MB each, microscopy-like:
    a gradient, noise, a per-image offset) plus ``tiff-N.csv`` of metadata (file,plate,well,channel,
    exposure_ms), cached."""
    import numpy as np
    import tifffile

    folder = DATA_DIR / f"tiff-{n}"
    stamp = f"tiff-{DATA_FORMAT}-{n}-{width}x{height}-u16"
    found = _complete(folder, stamp)
    if found is not None:
        return found
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    _marker(folder).unlink(missing_ok=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1344)
    yy, xx = np.mgrid[0:height, 0:width]
    base = ((xx + yy) * 37 % 60_000).astype(np.uint16)
    total = 0
    lines = ["file,plate,well,channel,exposure_ms"]
    for i in range(n):
        noise = rng.integers(0, 2_000, size=(height, width), dtype=np.uint16)
        name = f"img_{i:04d}.tif"
        path = folder / name
        tifffile.imwrite(path, base + noise + np.uint16(i % 2_000), photometric="minisblack")
        total += path.stat().st_size
        lines.append(f"{name},P{i // 384:03d},{'ABCDEFGHIJKLMNOP'[i % 384 // 24]}{i % 24 + 1:02d},{i % 4},"
                     f"{10 + i % 5 * 2.5}")
    (folder.parent / f"{folder.name}.csv").write_text("\n".join(lines) + "\n")
    _mark(folder, stamp, n, total)
    print(f"  generated {n} TIFFs ({total / n / 1e6:.2f} MB each) in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)
    return DataSet(folder, n, total, folder.parent / f"{folder.name}.csv")


def walk(root: Path | str) -> list[str]:
    """Relative paths of every file under ``root``, sorted like ingest's FolderSource."""
    found: list[str] = []
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            found.append(name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/"))
    return found


def warm(data: DataSet) -> float:
    """Read every file once so the page cache holds them all (it cannot be dropped here)."""
    started = time.perf_counter()
    for rel in walk(data.folder):
        with open(data.folder / rel, "rb") as fh:
            fh.read()
    return time.perf_counter() - started


def scratch(prefix: str) -> Path:
    """A fresh directory on the same disk as the data, for one contender's output."""
    (DATA_DIR / "tmp").mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=DATA_DIR / "tmp"))


# -- contenders, each in a fresh process ------------------------------------------------------
def run_child(job: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one contender in a fresh interpreter (``env``: variables set for it on top of this process's); its
    time and peak RSS come back as a dict."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.common", json.dumps(job)],
        cwd=PROJECT_DIR, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})},
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX):]))
    raise RuntimeError(f"child {job['job']} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2


def _peak_rss_mb() -> float:
    """Peak RSS of this process image: VmHWM, which execve resets (ru_maxrss is inherited from the
    forking parent on Linux, so a child of a big parent would report the parent's peak)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _system_seconds() -> float:
    """The kernel's share of ``_cpu_seconds``."""
    mine, theirs = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_stime + theirs.ru_stime


def _cpu_seconds() -> float:
    """User + system CPU time of this process, every thread included, and of its children that have ended
    (a helper process that read files)."""
    mine, theirs = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + theirs.ru_utime + theirs.ru_stime


def _job_floor(job: dict[str, Any]) -> dict[str, Any]:
    folder = Path(job["folder"])
    started = time.perf_counter()
    count = size = 0
    for rel in walk(folder):
        with open(folder / rel, "rb") as fh:
            size += len(fh.read())
        count += 1
    return {"seconds": time.perf_counter() - started, "count": count, "bytes": size}


def _job_lmdb(job: dict[str, Any]) -> dict[str, Any]:
    import lmdb

    folder, out = Path(job["folder"]), job["out"]
    started = time.perf_counter()
    env = lmdb.open(out, map_size=LMDB_MAP_SIZE, readahead=False)
    count = size = 0
    files = walk(folder)
    with env.begin(write=True) as txn:  # one transaction, like Lightbox's one commit
        cursor = txn.cursor()
        for i in range(0, len(files), LMDB_BATCH):
            batch = []
            for rel in files[i : i + LMDB_BATCH]:
                with open(folder / rel, "rb") as fh:
                    data = fh.read()
                batch.append((rel.encode(), data))
                size += len(data)
            count += cursor.putmulti(batch)[1]
    env.sync(True)
    env.close()
    return {"seconds": time.perf_counter() - started, "count": count, "bytes": size}


def _job_lightbox(job: dict[str, Any]) -> dict[str, Any]:
    """What ``lightbox ingest --uri`` runs: the SDK's ``Table.ingest`` over the service in this process
    (``job["path"] == "direct"``: ``run_ingest``, the upload service called without HTTP)."""
    import lightbox
    from app.store import Store
    from ingest.pipeline import IngestOptions, run_ingest

    kwargs = {"labels_from_dirs": bool(job.get("labels")), "metadata": job.get("csv"),
              "key": "file" if job.get("csv") else None, "progress": False}
    if job.get("workers"):
        kwargs["workers"] = int(job["workers"])
    if job.get("path") == "direct":
        opts = IngestOptions(table=job.get("table", "bench"), sources=[job["folder"]], **kwargs)

        def work() -> Any:
            return run_ingest(Store(job["out"]), opts)
    else:
        def work() -> Any:
            with lightbox.connect(job["out"]) as client:
                return client.table(job.get("table", "bench")).ingest([job["folder"]], **kwargs)
    profiler = None
    if job.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    started, cpu_started, system_started = time.perf_counter(), _cpu_seconds(), _system_seconds()
    report = profiler.runcall(work) if profiler is not None else work()
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_started
    system = _system_seconds() - system_started
    if profiler is not None:
        profiler.dump_stats(job["profile"])
    if report.skipped or report.missing_metadata:
        raise RuntimeError(f"ingest skipped files: {report.to_dict()}")
    out = {"seconds": seconds, "cpu_seconds": cpu, "system_seconds": system,
           "count": report.added, "bytes": report.bytes,
           "version": report.version, "rss_peak_mb": _peak_rss_mb()}
    if job.get("verify"):  # after the timed span: every stored image's bytes against its file
        out["identical"] = same_bytes(Path(job["out"]) / f"{job.get('table', 'bench')}.lance", Path(job["folder"]))
    return out


def same_bytes(table_dir: Path, folder: Path) -> int:
    """How many stored images are byte-identical to their files (ids are paths under ``folder``);
    raises at the first that is not."""
    import lance

    ds = lance.dataset(str(table_dir))
    same = 0
    for batch in ds.to_batches(columns=["id", "image"], blob_handling="all_binary", batch_size=64):
        for row_id, data in zip(batch.column("id").to_pylist(), batch.column("image").to_pylist(), strict=True):
            if (folder / row_id).read_bytes() != data:
                raise RuntimeError(f"stored bytes of {row_id!r} differ from its file")
            same += 1
    return same


JOBS = {"floor": _job_floor, "lmdb": _job_lmdb, "lightbox": _job_lightbox}


def _child(argv: Sequence[str]) -> None:
    job = json.loads(argv[0])
    rss_start = _rss_now_mb()
    if job["job"] == "lightbox":  # imports are not the ingest: measure RSS once they are done
        import app.main
        import app.store  # noqa: F401
        import ingest.pipeline  # noqa: F401
        import lightbox.client  # noqa: F401
    elif job["job"] == "lmdb":
        import lmdb  # noqa: F401
    rss_ready = _rss_now_mb()
    cpu_before = _cpu_seconds()
    result = JOBS[job["job"]](job)
    result.setdefault("cpu_seconds", _cpu_seconds() - cpu_before)  # a job may measure its own span
    result.setdefault("rss_peak_mb", _peak_rss_mb())
    result.update(rss_start_mb=rss_start, rss_ready_mb=rss_ready)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# -- statistics and reporting ---------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section of RESULTS.md delimited by markers named ``key``."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else (
        "# Benchmark results\n\nLatest result of each benchmark (see /work/shared/BENCHMARKS.md for the "
        "targets). Each section is rewritten by its script; `--quick` runs have their own section.\n\n"
    )
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail.lstrip("\n")
        if not text.endswith("\n"):
            text += "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS_MD.write_text(text)


def chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


if __name__ == "__main__":
    _child(sys.argv[1:])
