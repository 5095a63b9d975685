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
    from lightbox import __version__, cli_read

    parser = argparse.ArgumentParser(prog="lightbox", description="Versioned image tables on Lance.")
    parser.add_argument("--version", action="version", version=f"lightbox {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="load images (and metadata) into a table as one new version")
    ing.add_argument("sources", nargs="+", metavar="SOURCE",
                     help="a folder, a manifest (CSV/TSV/Parquet/JSONL of paths), a Parquet file of image bytes or a "
                          "WebDataset .tar shard")
    ing.add_argument("--table", required=True)
    ing.add_argument("--uri", default=None, help="data root (default $LIGHTBOX_URI or ./lightbox-data)")
    ing.add_argument("--server", default=None, help="upload to a Lightbox service over HTTP instead (every source "
                     "kind and option works; still one version)")
    ing.add_argument("--api-key", default=os.environ.get("LIGHTBOX_API_KEY"))
    ing.add_argument("--batch-size", type=int, default=None,
                     help="rows per upload batch (default 4096; a batch is also cut at 32 MiB of images)")
    ing.add_argument("--mode", choices=["insert", "upsert"], default="insert",
                     help="'upsert' replaces rows whose id exists (a file edited in place); unchanged files "
                          "are skipped")
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
                     help="also write a vector column: 'builtin', 'clip[:<path>]' or "
                          "'sentence-transformers:<model or path>'")
    ing.add_argument("--embed-text", metavar="COLUMN", help="embed this text column instead of the image")
    ing.add_argument("--report", help="write the machine-readable run report (JSON) here")
    ing.add_argument("--json", action="store_true", help="print the report as JSON instead of a summary")
    ing.add_argument("--no-progress", action="store_true")
    _engine_args(ing)

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

    log = sub.add_parser("log", help="the version log, newest first, like git log")
    log.add_argument("table")
    log.add_argument("--branch", default=None)
    log.add_argument("-n", "--limit", type=int, default=50)
    _target(log)

    dif = sub.add_parser("diff", help="ids added, removed and changed between two refs")
    dif.add_argument("table")
    dif.add_argument("from_ref", metavar="FROM")
    dif.add_argument("to_ref", metavar="TO", nargs="?", default="main")
    dif.add_argument("--ids", action="store_true", help="list the ids, not just the counts")
    _target(dif)

    br = sub.add_parser("branch", help="list branches, or create/delete one")
    br.add_argument("table")
    br.add_argument("name", nargs="?")
    br.add_argument("--from", dest="from_ref", default=None, help="a version or tag (default: latest main)")
    br.add_argument("--delete", action="store_true")
    _target(br)

    mer = sub.add_parser("merge", help="merge a branch into main (or --into another branch)")
    mer.add_argument("table")
    mer.add_argument("branch")
    mer.add_argument("--into", default="main")
    mer.add_argument("--on-conflict", choices=["fail", "theirs", "ours"], default="fail")
    _log_args(mer)
    _target(mer)

    cl = sub.add_parser("clone", help="a new table sharing a table's files at a ref (no bytes copied)")
    cl.add_argument("table")
    cl.add_argument("new")
    cl.add_argument("--tag")
    cl.add_argument("--version", type=int)
    _log_args(cl)
    _target(cl)

    opt = sub.add_parser("optimize", help="compact files, fold new rows into indexes, prune old untagged versions")
    opt.add_argument("table")
    _log_args(opt)
    _target(opt)

    emb = sub.add_parser("embed", help="add or refresh a vector column on a table (one new version)")
    emb.add_argument("table")
    emb.add_argument("--model", required=True,
                     help="'builtin', 'clip[:<path>]' or 'sentence-transformers:<model or path>'")
    emb.add_argument("--source", default="image", help="the column to embed: 'image' or a text column")
    emb.add_argument("--column", default=None, help="the vector column (default 'vector', or '<source>_vector')")
    _target(emb)
    _log_args(emb)
    _engine_args(emb)

    res = sub.add_parser("restore", help="make a past version the new latest (REF: a version, tag or timestamp)")
    res.add_argument("table")
    res.add_argument("ref")
    _log_args(res)
    _target(res)

    row = sub.add_parser("row", help="one row as JSON, or patch (--set) or delete (--delete) it")
    row.add_argument("table")
    row.add_argument("id", help="the row id as stored (e.g. 3/00012.png); it is encoded for you")
    action = row.add_mutually_exclusive_group()
    action.add_argument("--delete", action="store_true", help="delete the row (one new version)")
    action.add_argument("--set", action="append", metavar="COLUMN=VALUE",
                        help="patch a column (one new version); VALUE is JSON, or else taken as text")
    row.add_argument("--message", "-m")
    _target(row)

    doc = sub.add_parser("doctor", help="check every table, version, branch, clone and tag of a data root; "
                         "--repair what can be repaired without losing anything")
    doc.add_argument("--uri", default=None, help="data root (default $LIGHTBOX_URI or ./lightbox-data)")
    doc.add_argument("--repair", action="store_true",
                     help="point base paths recorded elsewhere (a moved or copied root) at this root, delete "
                          "guard tags of dropped clones and unreadable version notes")
    doc.add_argument("--sample", type=int, default=32, metavar="N",
                     help="images per branch head read back and checked against their sha256 (0: every one)")

    demo = sub.add_parser("demo", help="build a sample table from bundled real images and serve it")
    demo.add_argument("--uri", default=None)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--no-serve", action="store_true", help="build the tables and exit")
    cli_read.register(sub, _target)
    from lightbox import cli_formats

    parser.set_defaults(extra_handlers=cli_formats.add_parsers(sub))
    for command in sub.choices.values():  # every command that opens a data root takes its storage options
        if any("--uri" in action.option_strings for action in command._actions):
            command.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                                 type=_storage_pair,
                                 help="an object-store option for the data root (repeatable), e.g. "
                                      "endpoint=http://127.0.0.1:9000; adds to $LIGHTBOX_STORAGE_OPTIONS")
    return parser


def _storage_pair(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError("a storage option is KEY=VALUE")  # the value is not echoed: it may be a secret
    return text


def _target(parser: argparse.ArgumentParser) -> None:
    """Commands that work on a data root directly, or on a running service."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--uri", default=None, help="data root (default $LIGHTBOX_URI or ./lightbox-data)")
    where.add_argument("--server", default=None, help="a Lightbox service URL instead of a data root")
    parser.add_argument("--api-key", default=os.environ.get("LIGHTBOX_API_KEY"))


def main(argv: Sequence[str] | None = None) -> int:
    """The ``lightbox`` command; every failure ends in ``cli_errors.run`` (one line, a documented status)."""
    from lightbox.cli_errors import run

    os.environ.setdefault("LANCE_LOG", "error")
    args = build_parser().parse_args(argv)
    handlers = {"ingest": _ingest, "serve": _serve, "tables": _tables, "versions": _versions, "tag": _tag,
                "restore": _restore, "embed": _embed, "demo": _demo, "log": _log, "diff": _diff, "branch": _branch,
                "merge": _merge, "clone": _clone, "optimize": _optimize, "row": _row, "doctor": _doctor,
                **args.extra_handlers}
    return run(getattr(args, "handler", None) or handlers[args.command], args)


def _storage_options(args: argparse.Namespace) -> dict[str, str]:
    """Storage options from the environment (``LIGHTBOX_STORAGE_*``), then ``--storage-option`` pairs."""
    from app.settings import Settings
    from app.storage import parse_pairs

    return {**Settings().resolved_storage_options(), **parse_pairs(getattr(args, "storage_option", None) or [])}


def _engine_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="'ray': spread the work over a Ray cluster, still one version "
                             "(pip install 'lightbox[ray]')")
    parser.add_argument("--address", default=None,
                        help="the Ray cluster to join (default $RAY_ADDRESS, else a local one for this run)")


def _store(args: argparse.Namespace, uri: str | None = None, *, create: bool = False,  # type: ignore[no-untyped-def]
           **options: object):
    """The data root's store; one that must already exist (every command but ingest and demo) is checked."""
    from app.store import Store

    root = uri or args.uri or _env_uri()
    if not create:
        _check_root(root)
    return Store(root, storage_options=_storage_options(args) or None, **options)


def _local_path(root: str) -> str | None:
    """The folder of a data root on local disk (``None`` for an object store)."""
    return root.removeprefix("file://") if "://" not in root or root.startswith("file://") else None


def _check_root(root: str) -> None:
    """A local data root that is not there is a mistake (a typo, another folder), not an empty listing."""
    from lightbox.cli_read import UsageError

    path = _local_path(root)
    if path is None or os.path.isdir(path):
        return
    what = "a file, not a folder" if os.path.exists(path) else "no such folder"
    raise UsageError(f"no data root at {os.path.abspath(path)}: {what} (give --uri or set LIGHTBOX_URI; "
                     "`lightbox ingest` creates a root)")


def shown_root(root: str) -> str:
    """The data root as a summary names it: a local one as an absolute path."""
    path = _local_path(root)
    return os.path.abspath(path) if path is not None else root


def _ingest(args: argparse.Namespace) -> int:
    """One run, one version, through the SDK: over HTTP with --server, over the service in this process with
    --uri (the same code either way). ``--engine ray`` runs the Ray engine on the data root itself."""
    from lightbox.cli_read import UsageError

    if args.uri and args.server:
        raise UsageError("give either --uri (a data root) or --server (a service), not both")
    if args.engine == "ray":
        if args.server:
            raise UsageError("--engine ray works on a data root (--uri): its workers write the table's files")
        report = _ray_ingest(args)
    else:
        report = _sdk_ingest(args)
    if args.report:
        report.write(args.report)
    if args.json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        print(report.summary(report_path=args.report))
    return 0


def _sdk_ingest(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import lightbox

    root = None if args.server else (args.uri or _env_uri())
    path = _local_path(root) if root else None
    new_root = path is not None and not os.path.isdir(path)
    client = lightbox.connect(args.server, api_key=args.api_key) if args.server else \
        lightbox.connect(root, storage_options=_storage_options(args) or None)
    with client:
        report = client.table(args.table).ingest(
            args.sources, metadata=args.metadata, key=args.key, labels_from_dirs=args.labels_from_dirs,
            id_mode=args.id_mode, mode=args.mode, dedup=args.dedup, embed=args.embed, embed_text=args.embed_text,
            tag=args.tag, message=args.message, author=args.author, branch=args.branch,
            batch_rows=args.batch_size, workers=args.workers, commit_every=args.commit_every, verify=args.verify,
            max_pixels=args.max_pixels, progress=False if args.no_progress else None)
    if root is not None:
        report.root = shown_root(root)
        if new_root and os.path.isdir(path):  # type: ignore[arg-type]
            report.warnings.append(f"created the data root {report.root} (it did not exist)")
    return report


def _ray_ingest(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ingest.ray_engine import run_ray_ingest
    from ingest.upload import IngestOptions

    opts = IngestOptions(
        table=args.table, sources=args.sources, metadata=args.metadata, key=args.key,
        labels_from_dirs=args.labels_from_dirs, id_mode=args.id_mode, dedup=args.dedup, tag=args.tag,
        message=args.message, author=args.author, commit_every=args.commit_every, verify=args.verify,
        max_pixels=args.max_pixels, progress=False if args.no_progress else None, branch=args.branch,
        embed=args.embed, embed_text=args.embed_text, mode=args.mode)
    if args.workers:
        opts.workers = args.workers
    store = _store(args, create=True)
    report = run_ray_ingest(store, opts, args.address)
    report.root = shown_root(store.uri)
    return report


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.serving import limit_malloc_arenas, server_config
    from app.settings import Settings

    limit_malloc_arenas()
    overrides = {k: v for k, v in (("uri", args.uri), ("host", args.host), ("port", args.port)) if v}
    settings = Settings(**overrides)
    if getattr(args, "storage_option", None):  # the flags win over every LIGHTBOX_STORAGE_* setting
        settings = settings.model_copy(update={"storage_options": _storage_options(args), "storage_endpoint": None,
                                               "storage_region": None, "storage_access_key_id": None,
                                               "storage_secret_access_key": None, "storage_session_token": None,
                                               "storage_allow_http": None})
    print(f"Gallery: {gallery_url(settings.host, settings.port)}  (API docs at /docs)", flush=True)
    config = server_config(create_app(settings), settings, log_level="info",
                           access_log=settings.access_log != "json")  # JSON lines replace uvicorn's own log
    uvicorn.Server(config).run()
    return 0


def gallery_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the gallery (a wildcard bind is reached on loopback)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from lightbox.client import Client

    return Client(args.server, api_key=args.api_key)


def _tables(args: argparse.Namespace) -> int:
    if args.server:
        rows = [(t.name, t.version, t.num_rows) for t in _client(args).tables()]
    else:
        from app.services.tables import list_tables

        rows = [(t["name"], t["version"], t["num_rows"]) for t in list_tables(_store(args))]
    for name, version, num_rows in rows:
        print(f"{name}\tversion {version}\t{num_rows} rows")
    return 0


def _versions(args: argparse.Namespace) -> int:
    if args.server:
        page = _client(args).table(args.table).versions()
    else:
        from app.services.history import list_versions

        page, _ = list_versions(_store(args), args.table, limit=1000, ascending=True)
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

        store = _store(args)
        if args.delete:
            history.delete_tag(store, args.table, args.name)
        else:
            version = history.create_tag(store, args.table, args.name, Ref(version=args.version))["version"]
    print(f"deleted tag {args.name}" if args.delete else f"tagged version {version} as {args.name}")
    return 0


def _row(args: argparse.Namespace) -> int:
    """Through the SDK (``--server``: the id is checked and sent as one encoded path segment) or on a
    data root directly; either way the id must pass the one id rule."""
    values = dict(_assignment(text) for text in args.set or [])
    if args.server:
        table = _client(args).table(args.table)
        if args.delete:
            out = table.delete_row(args.id, message=args.message)
        elif values:
            out = table.update(args.id, values, message=args.message)
        else:
            out = table.get(args.id)
    else:
        from app.services import writes
        from app.store import RowReader
        from app.store.ids import check_id

        store = _store(args)
        check_id(args.id)
        if args.delete:
            out = writes.delete_rows(store, args.table, ids=[args.id], message=args.message)
        elif values:
            out = writes.patch_row(store, args.table, args.id, values, message=args.message)
        else:
            out = RowReader().row(store.snapshot(args.table), args.id)
    print(json.dumps(out, default=str, ensure_ascii=False))
    return 0


def _assignment(text: str) -> tuple[str, object]:
    column, sep, value = text.partition("=")
    if not sep or not column:
        from lightbox.cli_read import UsageError

        raise UsageError(f"--set takes COLUMN=VALUE, got {text!r}")
    try:
        return column, json.loads(value)
    except ValueError:
        return column, value


def _log_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--message", "-m", help="kept with the version in the log (default: what it did)")
    parser.add_argument("--author", help="kept with the version in the log (default: your user name)")


def _note(args: argparse.Namespace) -> dict[str, str | None]:
    """The message and author a write is logged with: the author is who runs the command."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return {"message": args.message, "author": args.author or user}


def _embed(args: argparse.Namespace) -> int:
    if args.server:
        out = _client(args).table(args.table).embed(args.model, source=args.source, column=args.column,
                                                    **_note(args))
    elif args.engine == "ray":
        from ingest.ray_engine import run_ray_embed

        out = run_ray_embed(_store(args), args.table, args.model, source=args.source, column=args.column,
                            address=args.address, **_note(args))
    else:
        from app.services.embed import embed_table
        from embeddings.registry import load

        out = embed_table(_store(args), args.table, load(args.model), source=args.source, column=args.column,
                          **_note(args))
    print(f"embedded {out['rows']} rows of {args.table} into {out['column']} ({out['model']}, {out['dim']}-d)"
          f" as version {out['version']}" + (f"; {out['failed']} could not be embedded" if out["failed"] else ""))
    return 0


def _restore(args: argparse.Namespace) -> int:
    ref = _parse_ref(args.ref)
    if args.server:
        out = _client(args).table(args.table).restore(**ref, **_note(args))  # type: ignore[arg-type]
    else:
        from app.services import history
        from app.store import Ref

        out = history.restore(_store(args), args.table, Ref.parse(**ref), **_note(args))  # type: ignore[arg-type]
    print(f"restored version {out['restored']} as new version {out['version']} ({out['num_rows']} rows)")
    return 0


def _log(args: argparse.Namespace) -> int:
    if args.server:
        table = _client(args).table(args.table)
        page = (table.at(branch=args.branch) if args.branch else table).versions()[::-1][: args.limit]
    else:
        from app.services.history import list_versions

        page, _ = list_versions(_store(args), args.table, branch=args.branch, limit=args.limit)
    for i, v in enumerate(page):
        _print_entry(v)
        if i + 1 < len(page):
            print()
    return 0


def _print_entry(v: dict, indent: str = "") -> None:
    """One log entry, git-style; a merge's branch versions follow it, indented (as ``git log --graph``)."""
    tags = ", ".join(f"tag: {t}" for t in v.get("tags") or [])
    print(indent + f"version {v['version']}" + (f" ({tags})" if tags else "")
          + (f" [{v['branch']}]" if v.get("branch") else ""))
    print(indent + f"Author: {v.get('author') or 'unknown'}")
    print(indent + f"Date:   {v['timestamp']}")
    print(indent + f"Op:     {v['operation']}  +{v['rows_added']} -{v['rows_removed']} ~{v['rows_updated']}"
          f"  ({v['num_rows']} rows)")
    print(f"\n{indent}    {v.get('message') or '(no message)'}")
    merged = v.get("merged") or []
    if merged:
        print(f"\n{indent}    merged {len(merged)} version(s) of {merged[0].get('branch')}:")
    for entry in merged:
        print()
        _print_entry(entry, indent + "    | ")


def _diff(args: argparse.Namespace) -> int:
    if args.server:
        out = _client(args).table(args.table).diff(args.from_ref, args.to_ref)
    else:
        from app.services.diff import diff, parse_ref_text

        store = _store(args)
        a = store.snapshot(args.table, parse_ref_text(store, args.table, args.from_ref))
        b = store.snapshot(args.table, parse_ref_text(store, args.table, args.to_ref))
        out = diff(a, b).page(10**9, 0)
    counts = out["counts"]
    print(f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed")
    if args.ids:
        for key in out["added"]:
            print(f"+ {key}")
        for key in out["removed"]:
            print(f"- {key}")
        for entry in out["changed"]:
            print(f"~ {entry['id']} ({', '.join(entry['columns'])})")
    return 0


def _branch(args: argparse.Namespace) -> int:
    ref = _parse_ref(args.from_ref) if args.from_ref else {}
    if args.server:
        table = _client(args).table(args.table)
        if args.name and args.delete:
            table.delete_branch(args.name)
        elif args.name:
            table.create_branch(args.name, **ref)  # type: ignore[arg-type]
        rows = table.branches()
    else:
        from app.services import branches
        from app.store import Ref
        from app.store.writes import create_branch

        store = _store(args)
        if args.name and args.delete:
            branches.delete_branch(store, args.table, args.name)
        elif args.name:
            create_branch(store, args.table, args.name, Ref.parse(**ref))  # type: ignore[arg-type]
        rows = branches.list_branches(store, args.table)
    for b in rows:
        print(f"{b['name']}\tversion {b['version']}\tfrom {b['parent_branch'] or 'main'}@{b['parent_version']}"
              f"\t{b['num_rows']} rows")
    return 0


def _merge(args: argparse.Namespace) -> int:
    try:
        if args.server:
            out = _client(args).table(args.table).merge(args.branch, into=args.into, on_conflict=args.on_conflict,
                                                        **_note(args))
        else:
            from app.services.branches import merge

            out = merge(_store(args), args.table, args.branch, into=args.into, on_conflict=args.on_conflict,
                        **_note(args))
    except Exception as exc:
        if getattr(exc, "code", None) != "merge_conflict":
            raise
        from lightbox.cli_read import merge_conflict_report

        print(merge_conflict_report(args, exc), file=sys.stderr)
        return 2
    if out["merged"]:
        print(f"merged {args.branch} into {args.into} as version {out['version']}: "
              f"{out['upserted']} added or changed, {out['removed']} removed")
    else:
        print(f"nothing to merge: {args.into} already has {args.branch}'s changes")
    return 0


def _clone(args: argparse.Namespace) -> int:
    ref = {k: v for k, v in (("tag", args.tag), ("version", args.version)) if v is not None}
    if args.server:
        _client(args).clone(args.table, args.new, **ref, **_note(args))  # type: ignore[arg-type]
        print(f"cloned {args.table} as {args.new}")
        return 0
    from app.services.clones import clone
    from app.store import Ref

    out = clone(_store(args), args.table, args.new, Ref.parse(**ref), **_note(args))  # type: ignore[arg-type]
    print(f"cloned {args.table}@{out['source_version']} as {args.new} ({out['num_rows']} rows, no bytes copied)")
    return 0


def _optimize(args: argparse.Namespace) -> int:
    if args.server:
        out = _client(args).table(args.table).optimize(**_note(args))
    else:
        from datetime import timedelta

        from app.settings import Settings
        from app.store.maintenance import optimize

        out = optimize(_store(args), args.table, timedelta(days=Settings().retention_days), **_note(args))
    print(f"optimized {args.table}: version {out['version']}, {out['old_versions_removed']} old versions pruned")
    if out.get("retention_skipped"):
        print(f"warning: {out['retention_skipped']}", file=sys.stderr)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """One line per problem on stdout (``repaired: `` before what was repaired), the summary on stderr;
    exit 1 while a problem is left. The store does not point bases itself here: doctor reports them."""
    from app.services.doctor import doctor

    out = doctor(_store(args, relocate=False), repair=args.repair, sample=args.sample)
    for problem in out.problems:
        print(("repaired: " if problem.repaired else "") + problem.line(), flush=True)
    print(out.summary(), file=sys.stderr)
    return 0 if out.healthy else 1


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
    from app.services.tables import list_tables
    from lightbox.demo import build_demo

    uri = args.uri or _env_uri()
    store = _store(args, uri, create=True)
    built = build_demo(store)
    found = {t["name"]: t for t in list_tables(store)}
    for name, report in built.items():
        if report is None:
            print(f"{name}: found at version {found[name]['version']} ({found[name]['num_rows']} rows), "
                  "kept as it is", end="\n\n")
        else:
            report.root = shown_root(store.uri)
            print(report.summary(), end="\n\n")
    if args.no_serve:
        print(f"Serve it with `lightbox serve --uri {uri}` and open the gallery at "
              f"{gallery_url(args.host, args.port)}")
        return 0
    args.uri = uri
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
