"""The ``lightbox`` command: the composition root, importing the service and ingest lazily."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence


def _env_uri() -> str:
    return os.environ.get("LIGHTBOX_URI", "./lightbox-data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightbox", description="Versioned image tables on Lance.")
    sub = parser.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="load images (and metadata) into a table as one new version")
    ing.add_argument("sources", nargs="+", metavar="SOURCE",
                     help="a folder, a manifest (CSV/TSV/Parquet/JSONL of paths) or a Parquet file of image bytes")
    ing.add_argument("--table", required=True)
    ing.add_argument("--uri", default=None, help="data root (default $LIGHTBOX_URI or ./lightbox-data)")
    ing.add_argument("--metadata", help="CSV/TSV/Parquet/JSONL file of per-image metadata")
    ing.add_argument("--key", help="the metadata column naming each image (its id, file name or stem)")
    ing.add_argument("--labels-from-dirs", action="store_true", help="a 'label' column from each parent folder")
    ing.add_argument("--id", dest="id_mode", choices=["path", "name", "sha256"], default="path")
    ing.add_argument("--dedup", choices=["id", "content", "none"], default="id",
                     help="ids are always unique; 'content' also skips bytes already stored")
    ing.add_argument("--tag")
    ing.add_argument("--message", "-m")
    ing.add_argument("--author")
    ing.add_argument("--workers", type=int, default=None)
    ing.add_argument("--commit-every", type=int, default=None, help="commit a version every N rows")
    ing.add_argument("--verify", choices=["header", "decode"], default="header",
                     help="'decode' decodes every image fully to reject damaged pixel data")
    ing.add_argument("--max-pixels", type=int, default=None)
    ing.add_argument("--branch", help="ingest into this branch (created from main's latest if new)")
    ing.add_argument("--embed", metavar="MODEL",
                     help="also write a vector column: 'builtin' or 'sentence-transformers:<model or path>'")
    ing.add_argument("--embed-text", metavar="COLUMN", help="embed this text column instead of the image")
    ing.add_argument("--report", help="write the machine-readable run report (JSON) here")
    ing.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")
    ing.add_argument("--no-progress", action="store_true")

    srv = sub.add_parser("serve", help="serve the HTTP API")
    srv.add_argument("--uri", default=None)
    srv.add_argument("--host", default=None)
    srv.add_argument("--port", type=int, default=None)

    tab = sub.add_parser("tables", help="list tables")
    _target(tab)

    ver = sub.add_parser("versions", help="a table's version log, oldest first")
    ver.add_argument("table")
    _target(ver)

    tag = sub.add_parser("tag", help="tag a version (latest by default), or delete a tag")
    tag.add_argument("table")
    tag.add_argument("name")
    tag.add_argument("--version", type=int, default=None)
    tag.add_argument("--delete", action="store_true")
    _target(tag)

    emb = sub.add_parser("embed", help="add or refresh a vector column on a table (one new version)")
    emb.add_argument("table")
    emb.add_argument("--model", required=True, help="'builtin' or 'sentence-transformers:<model or path>'")
    emb.add_argument("--source", default="image", help="the column to embed: 'image' or a text column")
    emb.add_argument("--column", default=None, help="the vector column (default 'vector', or '<source>_vector')")
    emb.add_argument("--uri", default=None)

    res = sub.add_parser("restore", help="make a past version the new latest (REF: a version, tag or timestamp)")
    res.add_argument("table")
    res.add_argument("ref")
    _target(res)

    demo = sub.add_parser("demo", help="build a sample table from bundled real images and serve it")
    demo.add_argument("--uri", default=None)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--no-serve", action="store_true", help="build the tables and exit")
    return parser


def _target(parser: argparse.ArgumentParser) -> None:
    """Commands that work on a data root directly, or on a running service."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--uri", default=None, help="data root (default $LIGHTBOX_URI or ./lightbox-data)")
    where.add_argument("--server", default=None, help="a Lightbox service URL instead of a data root")
    parser.add_argument("--api-key", default=os.environ.get("LIGHTBOX_API_KEY"))


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("LANCE_LOG", "error")
    args = build_parser().parse_args(argv)
    handler = {"ingest": _ingest, "serve": _serve, "tables": _tables, "versions": _versions, "tag": _tag,
               "restore": _restore, "embed": _embed, "demo": _demo}
    try:
        return handler[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from app.errors import LightboxError
        from embeddings.registry import UnknownModel
        from ingest.tables import SideFileError
        from lightbox.errors import LightboxError as ClientError

        if isinstance(exc, LightboxError | SideFileError | ClientError | UnknownModel):
            print(f"lightbox: error: {exc}", file=sys.stderr)
            return 2
        raise


def _store(uri: str | None):  # type: ignore[no-untyped-def]
    from app.store import Store

    return Store(uri or _env_uri())


def _ingest(args: argparse.Namespace) -> int:
    from ingest.pipeline import IngestOptions, run_ingest

    opts = IngestOptions(
        table=args.table, sources=args.sources, metadata=args.metadata, key=args.key,
        labels_from_dirs=args.labels_from_dirs, id_mode=args.id_mode, dedup=args.dedup, tag=args.tag,
        message=args.message, author=args.author, commit_every=args.commit_every, verify=args.verify,
        progress=False if args.no_progress else None, branch=args.branch, embed=args.embed,
        embed_text=args.embed_text,
    )
    if args.workers:
        opts.workers = args.workers
    if args.max_pixels:
        opts.max_pixels = args.max_pixels
    report = run_ingest(_store(args.uri), opts)
    if args.report:
        report.write(args.report)
    if args.json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        print(report.summary())
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.settings import Settings

    overrides = {k: v for k, v in (("uri", args.uri), ("host", args.host), ("port", args.port)) if v}
    settings = Settings(**overrides)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from lightbox.client import Client

    return Client(args.server, api_key=args.api_key)


def _tables(args: argparse.Namespace) -> int:
    if args.server:
        rows = [(t.name, t.version, t.num_rows) for t in _client(args).tables()]
    else:
        from app.services.tables import list_tables

        rows = [(t["name"], t["version"], t["num_rows"]) for t in list_tables(_store(args.uri))]
    for name, version, num_rows in rows:
        print(f"{name}\tversion {version}\t{num_rows} rows")
    return 0


def _versions(args: argparse.Namespace) -> int:
    if args.server:
        page = _client(args).table(args.table).versions()
    else:
        from app.services.history import list_versions

        page, _ = list_versions(_store(args.uri), args.table, limit=1000, ascending=True)
    for v in page:
        tags = f" ({', '.join(v['tags'])})" if v["tags"] else ""
        print(f"{v['version']}\t{v['timestamp']}\t{v['num_rows']} rows\t{v['operation']}\t"
              f"{v['author'] or ''}\t{v['message'] or ''}{tags}")
    return 0


def _tag(args: argparse.Namespace) -> int:
    if args.server:
        table = _client(args).table(args.table)
        if args.delete:
            table.untag(args.name)
        else:
            version = table.tag(args.name, args.version)["version"]
    else:
        from app.services import history
        from app.store import Ref

        store = _store(args.uri)
        if args.delete:
            history.delete_tag(store, args.table, args.name)
        else:
            version = history.create_tag(store, args.table, args.name, Ref(version=args.version))["version"]
    print(f"deleted tag {args.name}" if args.delete else f"tagged version {version} as {args.name}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    from app.services.embed import embed_table
    from embeddings.registry import load

    out = embed_table(_store(args.uri), args.table, load(args.model), source=args.source, column=args.column)
    print(f"embedded {out['rows']} rows of {args.table} into {out['column']} ({out['model']}, {out['dim']}-d)"
          f" as version {out['version']}" + (f"; {out['failed']} could not be embedded" if out["failed"] else ""))
    return 0


def _restore(args: argparse.Namespace) -> int:
    ref = _parse_ref(args.ref)
    if args.server:
        out = _client(args).table(args.table).restore(**ref)
    else:
        from app.services import history
        from app.store import Ref

        out = history.restore(_store(args.uri), args.table, Ref.parse(**ref))
    print(f"restored version {out['restored']} as new version {out['version']} ({out['num_rows']} rows)")
    return 0


def _parse_ref(text: str) -> dict[str, object]:
    """A version number, an RFC 3339 timestamp, or else a tag name."""
    if text.isdigit():
        return {"version": int(text)}
    from datetime import datetime

    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return {"tag": text}
    return {"as_of": text}


def _demo(args: argparse.Namespace) -> int:
    from lightbox.demo import build_demo

    uri = args.uri or _env_uri()
    for report in build_demo(_store(uri)):
        print(report.summary(), end="\n\n")
    if args.no_serve:
        return 0
    args.uri = uri
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
