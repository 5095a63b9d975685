"""``lightbox ingest --server URL``: upload folders and image files over HTTP through the SDK.

The files are sent in batches (``--batch-size`` files, or fewer when they pass 32 MiB), each batch
one ``POST /rows`` and so one version; the service probes, hashes and checks every file as a local
ingest does and reports skips. Ids are the path relative to the folder given (``3/00012.png``), the
file name (``--id name``) or the SHA-256 of the bytes (``--id sha256``). Manifests, Parquet sources
and ``--metadata`` files need the data root itself (``--uri``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightbox.cli.common import open_client
from lightbox.cli.errors import OK, UsageError
from lightbox.cli.summaries import skip_lines

BATCH_BYTES = 32 * 1024**2
SIDE_FILES = {".csv", ".tsv", ".parquet", ".jsonl", ".json", ".txt"}


__all__ = ["upload"]


def upload(args: argparse.Namespace) -> int:
    from lightbox.errors import NotFound

    _check(args)
    files = list(_files(args.sources))
    labels = _labels(files) if args.labels_from_dirs else None
    started = time.perf_counter()
    counts: Counter[str] = Counter()
    skipped: list[dict[str, Any]] = []
    versions: list[int] = []
    with open_client(args) as client:
        table = client.table(args.table)
        try:
            info = table.info()
        except NotFound:
            if args.branch:
                raise UsageError(f"table {args.table!r} does not exist yet, so it has no branches: "
                                 "ingest into main first") from None
            label_type = "int64" if labels and all(isinstance(v, int) for v in labels.values()) else "string"
            client.create_table(args.table, [{"name": "label", "type": label_type}] if labels else None,
                                exist_ok=True)
        else:  # a table that keeps its labels as text gets folder names as text, digits or not
            if labels and any(c.get("name") == "label" and c.get("type") == "string" for c in info.get("schema", [])):
                labels = {rel: None if v is None else str(v) for rel, v in labels.items()}
        if args.branch:
            table = table.branch(args.branch) if args.branch in {b["name"] for b in table.branches()} \
                else table.create_branch(args.branch)
        done = 0
        for batch in _batches(files, args.batch_size):
            done += len(batch)
            if args.mode == "upsert":
                batch = _changed(table, batch, args.id_mode, skipped)
            ids = [_row_id(path, rel, args.id_mode) for path, rel in batch]
            metadata = [{"label": labels[rel]} if labels else {} for _, rel in batch]
            if batch:
                out = _add(table, batch, metadata, ids, args)
                counts["inserted"] += out.get("inserted", 0)
                counts["updated"] += out.get("updated", 0)
                skipped.extend(out.get("skipped", []))
                if out.get("version") is not None and out["version"] not in versions and \
                        (out.get("inserted") or out.get("updated")):
                    versions.append(out["version"])
            if not args.no_progress:
                print(f"ingest: uploaded {done} of {len(files)} files", file=sys.stderr, flush=True)
        tagged = None
        if args.tag and versions:
            tagged = table.tag(args.tag)["name"]
    report = {"table": args.table, "server": args.server, "files": len(files), "added": counts["inserted"],
              "updated": counts["updated"], "skipped": skipped, "versions": versions,
              "version": versions[-1] if versions else None, "tag": tagged,
              "seconds": round(time.perf_counter() - started, 3)}
    _print(report, args)
    return OK


def _add(table: Any, batch: list[tuple[Path, str]], metadata: list[dict[str, Any]], ids: list[str],
         args: argparse.Namespace) -> dict[str, Any]:
    """One batch, one ``POST /rows``. A batch the service skipped whole (a re-run: every id is already
    there) wrote nothing and answers 422; here it is a batch of skips like any other, reported below."""
    import warnings

    from lightbox.errors import Unprocessable

    try:
        with warnings.catch_warnings():  # skips are counted and reported by this command itself
            warnings.simplefilter("ignore")
            return table.add([path for path, _ in batch], metadata=metadata, ids=ids, mode=args.mode,
                             dedup=args.dedup, message=args.message, author=args.author)
    except Unprocessable as exc:
        skipped = (exc.detail or {}).get("skipped")
        if not skipped:
            raise
        return {"inserted": 0, "updated": 0, "skipped": skipped, "version": None}


def _check(args: argparse.Namespace) -> None:
    refused = [flag for flag, value in (("--metadata", args.metadata), ("--embed", args.embed),
                                        ("--commit-every", args.commit_every)) if value]
    if refused:
        raise UsageError(f"{', '.join(refused)} need a data root (--uri); over --server, upload the images and "
                         "then run `lightbox embed ... --server` (later uploads fill a vector column by themselves)")
    for source in args.sources:
        path = Path(source)
        if not path.exists():
            raise UsageError(f"no such file or folder: {source}")
        if path.is_file() and path.suffix.lower() in SIDE_FILES:
            raise UsageError(f"{source}: manifests and Parquet sources need a data root (--uri); "
                             "with --server give folders or image files")


def _files(sources: list[str]) -> Iterator[tuple[Path, str]]:
    """(path, id-relative path) of every file: folders recursively (hidden files left out), in order."""
    for source in sources:
        root = Path(source)
        if root.is_file():
            yield root, root.name
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                yield path, rel.as_posix()


def _labels(files: list[tuple[Path, str]]) -> dict[str, Any]:
    """The parent folder of each file as its label (integers when every label is a number)."""
    names = {rel: (rel.rsplit("/", 2)[-2] if "/" in rel else "") for _, rel in files}
    if names and all(n.isdigit() for n in names.values()):
        return {rel: int(n) for rel, n in names.items()}
    return {rel: n or None for rel, n in names.items()}


def _batches(files: list[tuple[Path, str]], size: int) -> Iterator[list[tuple[Path, str]]]:
    batch: list[tuple[Path, str]] = []
    nbytes = 0
    for item in files:
        batch.append(item)
        nbytes += item[0].stat().st_size
        if len(batch) >= size or nbytes >= BATCH_BYTES:
            yield batch
            batch, nbytes = [], 0
    if batch:
        yield batch


def _changed(table: Any, batch: list[tuple[Path, str]], id_mode: str,
             skipped: list[dict[str, Any]]) -> list[tuple[Path, str]]:
    """An upsert sends only files whose bytes differ from their stored row's (the rest are "unchanged")."""
    digests = {rel: hashlib.sha256(path.read_bytes()).hexdigest() for path, rel in batch}
    ids = {rel: _row_id(path, rel, id_mode) for path, rel in batch}
    stored = {r["id"]: r["sha256"] for r in table.fetch(list(ids.values()), ["id", "sha256"]).to_pylist()}
    keep = []
    for path, rel in batch:
        if stored.get(ids[rel]) == digests[rel]:
            skipped.append({"file": rel, "reason": "unchanged",
                            "message": f"row {ids[rel]!r} already holds these bytes"})
        else:
            keep.append((path, rel))
    return keep


def _row_id(path: Path, rel: str, mode: str) -> str:
    if mode == "sha256":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return path.name if mode == "name" else rel


def _print(report: dict[str, Any], args: argparse.Namespace) -> None:
    import json

    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report))
        return
    print(f"table      {report['table']} on {report['server']}")
    print(f"added      {report['added']} images in {report['seconds']:.1f} s")
    if report["updated"]:
        print(f"updated    {report['updated']} rows replaced with new content")
    where = ", ".join(map(str, report["versions"])) if report["versions"] else "unchanged (nothing new to add)"
    print(f"version    {where}")
    if report["tag"]:
        print(f"tag        {report['tag']}")
    for line in skip_lines(report["skipped"], args.report):
        print(line)
