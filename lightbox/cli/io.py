"""``lightbox ingest | export | import-annotations``: data into and out of a table.

All three are SDK calls like every other command. ``ingest`` is ``Table.ingest``: the sources are read
here and streamed into one upload session, committed as one version, whether the table is served by a
service (``--server``) or by the service's own app in this process (``--uri``). ``--engine ray`` runs
the Ray engine on the data root itself.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from lightbox.cli.common import (
    add_filter,
    add_note,
    add_ref,
    add_target,
    column_list,
    data_root,
    filter_of,
    local_path,
    note,
    open_client,
    shown_root,
    table_at,
)
from lightbox.cli.curate import add_view
from lightbox.cli.errors import OK, UsageError
from lightbox.cli.maintenance import MODEL_HELP, add_engine

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the commands that move data in and out to the ``lightbox`` parser."""
    _ingest_parser(sub)

    exp = sub.add_parser("export", help="write a table (at a ref) as Parquet, WebDataset shards or an ImageFolder tree")
    exp.add_argument("table", help="the table")
    exp.add_argument("dest", help="parquet: a file; webdataset: a folder of shards; imagefolder: a folder "
                                  "(or the archive file with --archive)")
    exp.add_argument("--format", choices=["parquet", "webdataset", "imagefolder"], default="parquet",
                     help="what to write (default parquet)")
    add_ref(exp, aliases=("--version", "--tag"), what="export")
    add_filter(exp, what="export only rows matching")
    add_view(exp)
    exp.add_argument("--columns", type=column_list, default=None,
                     help="comma-separated metadata columns (default: the table's own metadata)")
    exp.add_argument("--label-column", default="label", help="imagefolder: the column naming the folders")
    exp.add_argument("--archive", choices=["tar", "zip"], help="imagefolder: write one archive file instead")
    exp.add_argument("--shard-size", type=int, default=None, help="webdataset: samples per shard (10000)")
    add_target(exp)
    exp.set_defaults(handler=_export)

    ann = sub.add_parser("import-annotations",
                         help="COCO JSON or YOLO labels into metadata columns of matching rows (one version)")
    ann.add_argument("table", help="the table")
    ann.add_argument("file", help="a COCO JSON file, or a folder (or .txt file) of YOLO labels")
    ann.add_argument("--format", choices=["coco", "yolo"], default="coco", help="the labels' format (default coco)")
    ann.add_argument("--classes", help="yolo: a file of class names, one a line (default: ids as names)")
    ann.add_argument("--match", choices=["auto", "id", "name", "stem"], default="auto",
                     help="how an image's file name finds its row: the whole id, its last path part, that "
                          "without the extension, or auto (id, then a unique name)")
    add_note(ann)
    ann.add_argument("--json", action="store_true", help="print the report as JSON")
    add_target(ann)
    ann.set_defaults(handler=_import_annotations)


def _ingest_parser(sub: Any) -> None:
    ing = sub.add_parser("ingest", help="load images (and metadata) into a table as one new version")
    ing.add_argument("sources", nargs="+", metavar="SOURCE",
                     help="a folder, a manifest (CSV/TSV/Parquet/JSONL of paths), a Parquet file of image bytes or a "
                          "WebDataset .tar shard")
    ing.add_argument("--table", required=True, help="the table to load into (created if new)")
    add_target(ing)
    ing.add_argument("--batch-size", type=int, default=None,
                     help="rows per upload batch (default 8192; a batch is also cut at 16 MiB of images)")
    ing.add_argument("--mode", choices=["insert", "upsert"], default="insert",
                     help="'upsert' replaces rows whose id exists (a file edited in place); unchanged files "
                          "are skipped")
    ing.add_argument("--metadata", help="CSV/TSV/Parquet/JSONL file of per-image metadata")
    ing.add_argument("--key", help="the metadata column naming each image (its id, file name or stem)")
    ing.add_argument("--labels-from-dirs", action="store_true", help="a 'label' column from each parent folder")
    ing.add_argument("--id", dest="id_mode", choices=["path", "name", "sha256"], default="path",
                     help="row ids: the path under the source (default), the file name, or the bytes' sha256")
    ing.add_argument("--dedup", choices=["id", "content", "none"], default="id",
                     help="ids are always unique; 'content' also skips bytes already stored")
    ing.add_argument("--tag", help="tag the run's version")
    add_note(ing)
    ing.add_argument("--workers", type=int, default=None, help="threads reading and probing files")
    ing.add_argument("--commit-every", type=int, default=None, help="commit a version every N rows")
    ing.add_argument("--verify", choices=["header", "decode"], default="header",
                     help="'decode' decodes every image fully to reject damaged pixel data")
    ing.add_argument("--max-pixels", type=int, default=None, help="the largest image accepted, in pixels")
    ing.add_argument("--branch", metavar="B", help="ingest into branch B (created from main's latest if new)")
    ing.add_argument("--embed", metavar="MODEL", help=f"also write a vector column: {MODEL_HELP}")
    ing.add_argument("--embed-text", metavar="COLUMN", help="embed this text column instead of the image")
    ing.add_argument("--report", help="write the machine-readable run report (JSON) here")
    ing.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")
    ing.add_argument("--no-progress", action="store_true", help="no progress bars or lines")
    add_engine(ing)
    ing.set_defaults(handler=_ingest)


# -- ingest ----------------------------------------------------------------------------------------
def _ingest(args: argparse.Namespace) -> int:
    """One run, one version: through the SDK (over HTTP with ``--server``, in this process with ``--uri``),
    or the Ray engine on a data root."""
    from lightbox.cli.summaries import ingest_summary

    if args.engine == "ray":
        if args.server:
            raise UsageError("--engine ray runs on a data root (--uri): its workers write the table's files")
        from lightbox.cli.local import ray_ingest

        report = ray_ingest(args)
    else:
        report = _sdk_ingest(args)
    if args.report:
        report.write(args.report)
    if args.json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        print(ingest_summary(report.to_dict(), report_path=args.report))
    return OK


def _sdk_ingest(args: argparse.Namespace) -> Any:
    root = None if args.server else data_root(args)
    path = local_path(root) if root and not root.startswith(("http://", "https://")) else None
    new_root = path is not None and not os.path.isdir(path)
    with open_client(args, create=True) as client:
        report = client.table(args.table).ingest(
            args.sources, metadata=args.metadata, key=args.key, labels_from_dirs=args.labels_from_dirs,
            id_mode=args.id_mode, mode=args.mode, dedup=args.dedup, embed=args.embed, embed_text=args.embed_text,
            tag=args.tag, message=args.message, author=args.author, branch=args.branch,
            batch_rows=args.batch_size, workers=args.workers, commit_every=args.commit_every, verify=args.verify,
            max_pixels=args.max_pixels, progress=False if args.no_progress else None)
    if root is not None and not args.server:
        report.root = shown_root(root)
        if new_root and os.path.isdir(path):  # type: ignore[arg-type]
            report.warnings.append(f"created the data root {report.root} (it did not exist)")
    return report


# -- export and annotations ------------------------------------------------------------------------
def _export(args: argparse.Namespace) -> int:
    where = filter_of(args)
    with open_client(args) as client:
        out = table_at(client, args).export(args.dest, args.format, filter=where, columns=args.columns,
                                            label_column=args.label_column, archive=args.archive,
                                            shard_size=args.shard_size, view=args.view)
    written = out["paths"][0] if len(out["paths"]) == 1 else f"{len(out['paths'])} shards in {args.dest}"
    print(f"exported {out['rows']} rows of {args.table} (version {out['version']}) as {args.format} to {written}")
    return OK


def _import_annotations(args: argparse.Namespace) -> int:
    from lightbox._annotations import annotation_body

    try:
        body = annotation_body(args.file, args.format, args.classes)
    except ValueError as exc:  # not JSON (a file that cannot be read is an OSError, told by the entry point)
        raise UsageError(f"{args.file}: {exc}") from exc
    with open_client(args) as client:
        out = client.table(args.table).import_annotations(body, args.format, match=args.match, **note(args))
    if args.json:
        print(json.dumps(out))
        return OK
    print(f"annotated {out['rows_updated']} rows of {args.table} with {out['annotations']} annotations "
          f"as version {out['version']}; unmatched: {out['unmatched_images']} images, "
          f"{out['unmatched_annotations']} annotations")
    for name in out["unmatched_image_names"][:20]:
        print(f"  no row for image {name}")
    return OK
