"""``lightbox export`` and ``lightbox import-annotations``: data in and out of a table, on a data root or a server.

Registered by ``lightbox.cli``; like it, this imports the service and the SDK lazily.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any


def add_parsers(sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the subcommands to ``sub`` and return their handlers by name."""
    exp = sub.add_parser("export", help="write a table (at a ref) as Parquet, WebDataset shards or an ImageFolder tree")
    exp.add_argument("table")
    exp.add_argument("dest", help="parquet: a file; webdataset: a folder of shards; imagefolder: a folder "
                                  "(or the archive file with --archive)")
    exp.add_argument("--format", choices=["parquet", "webdataset", "imagefolder"], default="parquet")
    ref = exp.add_mutually_exclusive_group()
    ref.add_argument("--version", type=int)
    ref.add_argument("--tag")
    ref.add_argument("--branch")
    exp.add_argument("--filter", help="only rows matching this SQL filter")
    exp.add_argument("--columns", help="comma-separated metadata columns (default: the table's own metadata)")
    exp.add_argument("--label-column", default="label", help="imagefolder: the column naming the folders")
    exp.add_argument("--archive", choices=["tar", "zip"], help="imagefolder: write one archive file instead")
    exp.add_argument("--shard-size", type=int, default=None, help="webdataset: samples per shard (10000)")
    _target(exp)

    ann = sub.add_parser("import-annotations",
                         help="COCO JSON or YOLO labels into metadata columns of matching rows (one version)")
    ann.add_argument("table")
    ann.add_argument("file", help="a COCO JSON file, or a folder (or .txt file) of YOLO labels")
    ann.add_argument("--format", choices=["coco", "yolo"], default="coco")
    ann.add_argument("--classes", help="yolo: a file of class names, one a line (default: ids as names)")
    ann.add_argument("--match", choices=["auto", "id", "name", "stem"], default="auto",
                     help="how an image's file name finds its row: the whole id, its last path part, that "
                          "without the extension, or auto (id, then a unique name)")
    ann.add_argument("--message", "-m")
    ann.add_argument("--json", action="store_true", help="print the report as JSON")
    _target(ann)
    return {"export": export, "import-annotations": import_annotations}


def _target(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--uri", default=None, help="data root (default $LIGHTBOX_URI or ./lightbox-data)")
    where.add_argument("--server", default=None, help="a Lightbox service URL instead of a data root")
    parser.add_argument("--api-key", default=os.environ.get("LIGHTBOX_API_KEY"))


def _ref(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in (("version", args.version), ("tag", args.tag), ("branch", args.branch)) if v}


def export(args: argparse.Namespace) -> int:
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    options = {"filter": args.filter, "columns": columns, "label_column": args.label_column,
               "archive": args.archive, "shard_size": args.shard_size}
    if args.server:
        from lightbox.client import Client

        with Client(args.server, api_key=args.api_key) as client:
            table = client.table(args.table)
            ref = _ref(args)
            out = (table.at(**ref) if ref else table).export(args.dest, args.format, **options)
    else:
        out = _export_local(args, options)
    where = out["paths"][0] if len(out["paths"]) == 1 else f"{len(out['paths'])} shards in {args.dest}"
    print(f"exported {out['rows']} rows of {args.table} (version {out['version']}) as {args.format} to {where}")
    return 0


def _export_local(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
    from app.services.export import ExportSpec, open_export
    from app.services.query import count
    from app.store import Ref
    from lightbox._export import plan_export
    from lightbox.cli import _store

    store = _store(args)
    snap = store.snapshot(args.table, Ref.parse(**_ref(args)))
    ref = {"version": snap.version, "branch": snap.branch}
    pinned = Ref(version=snap.version, branch=snap.branch)
    _, rows = count(store, args.table, pinned, options["filter"])  # the filter is checked here first
    job = plan_export(args.table, args.dest, args.format, rows=rows, version=snap.version, ref=ref, **options)
    with job.all_or_nothing():
        for part in job.parts:
            p = part.params
            spec = ExportSpec(format=p["format"], filter=p.get("filter"), columns=options["columns"],
                              label_column=p.get("label_column", "label"), archive=p.get("archive", "tar"),
                              offset=p.get("offset", 0), limit=p.get("limit"))
            exported = open_export(store, args.table, pinned, spec)
            with part.open() as sink:
                for chunk in exported.chunks():
                    sink.write(chunk)
        return job.finish()


def import_annotations(args: argparse.Namespace) -> int:
    from lightbox._annotations import annotation_body
    from lightbox.cli_read import UsageError

    try:
        body = annotation_body(args.file, args.format, args.classes)
    except ValueError as exc:  # not JSON (a file that cannot be read is an OSError, told by the entry point)
        raise UsageError(f"{args.file}: {exc}") from exc
    if args.server:
        from lightbox.client import Client

        with Client(args.server, api_key=args.api_key) as client:
            out = client.table(args.table).import_annotations(body, args.format, match=args.match,
                                                              message=args.message)
    else:
        from app.services.annotations import import_annotations as run
        from app.services.annotations import parse_body
        from lightbox.cli import _store

        parsed, normalised = parse_body(args.format, body)
        store = _store(args)
        out = run(store, args.table, parsed, match=args.match, normalised=normalised, message=args.message)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"annotated {out['rows_updated']} rows of {args.table} with {out['annotations']} annotations "
          f"as version {out['version']}; unmatched: {out['unmatched_images']} images, "
          f"{out['unmatched_annotations']} annotations")
    for name in out["unmatched_image_names"][:20]:
        print(f"  no row for image {name}")
    return 0
