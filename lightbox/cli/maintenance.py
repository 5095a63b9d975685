"""``lightbox index | optimize | embed``: keeping a table fast, and giving it vectors."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lightbox.cli.common import add_note, add_ref, add_target, note, open_client, table_at
from lightbox.cli.errors import OK, UsageError
from lightbox.cli.tables import index_line

__all__ = ["add_engine", "register"]

MODEL_HELP = "'builtin', 'clip[:<path>]' or 'sentence-transformers:<model or path>'"


def register(sub: Any) -> None:
    """Add the maintenance commands to the ``lightbox`` parser."""
    idx = sub.add_parser("index", help="list a table's indexes, or create or drop one",
                         usage="lightbox index TABLE [list | create COLUMN --type T | drop NAME] [options]")
    idx.add_argument("table", help="the table")
    idx.add_argument("words", nargs="*", metavar="ACTION ARG",
                     help="list (the default), create COLUMN (with --type), or drop NAME")
    idx.add_argument("--type", dest="index_type", metavar="T",
                     help="create: FTS (full-text), BTREE, BITMAP, LABEL_LIST, IVF_FLAT, IVF_PQ, ...")
    idx.add_argument("--name", default=None, help="create: the index name (default COLUMN_idx, COLUMN_fts for FTS)")
    idx.add_argument("--metric", default=None, help="create, vector: l2, cosine or dot (default: the column's)")
    idx.add_argument("--num-partitions", type=int, default=None, help="create, vector: IVF partitions")
    idx.add_argument("--no-positions", action="store_true",
                     help="create, FTS: keep no word positions (a smaller index; phrase queries then fail)")
    idx.add_argument("--tokenizer", choices=["simple", "whitespace", "raw", "ngram"], default=None,
                     help="create, FTS: how text splits into words (default simple: on spaces and punctuation)")
    idx.add_argument("--language", default=None, help="create, FTS: stemming and stop-word language (default English)")
    idx.add_argument("--no-stem", action="store_true", help="create, FTS: index words as written, not their stems")
    idx.add_argument("--keep-stop-words", action="store_true", help="create, FTS: index stop words (the, a, ...)")
    add_ref(idx, what="list the indexes of")
    add_target(idx)
    idx.set_defaults(handler=_index)

    opt = sub.add_parser("optimize", help="compact files, build, fold and tune indexes, prune old untagged versions")
    opt.add_argument("table", help="the table")
    add_note(opt)
    add_target(opt)
    opt.set_defaults(handler=_optimize)

    emb = sub.add_parser("embed", help="add or refresh a vector column on a table (one new version)")
    emb.add_argument("table", help="the table")
    emb.add_argument("--model", required=True, help=MODEL_HELP)
    emb.add_argument("--source", default="image", help="the column to embed: 'image' (default) or a text column")
    emb.add_argument("--column", default=None, help="the vector column (default 'vector', or '<source>_vector')")
    add_note(emb)
    add_target(emb)
    add_engine(emb)
    emb.set_defaults(handler=_embed)


def add_engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="'ray': spread the work over a Ray cluster, still one version "
                             "(a data root only; pip install 'lightbox[ray]')")
    parser.add_argument("--address", default=None,
                        help="the Ray cluster to join (default $RAY_ADDRESS, else a local one for this run)")


def _index(args: argparse.Namespace) -> int:
    action, arg = [*args.words, None][:2] if args.words else ("list", None)
    if action not in ("list", "create", "drop") or (action != "list") != (arg is not None) or len(args.words) > 2:
        raise UsageError("give `list`, `create COLUMN --type T` or `drop NAME`")
    with open_client(args) as client:
        if action == "list":
            indexes = table_at(client, args).indexes()
            for index in indexes:
                print(f"{index['name']}\t{index_line(index)}")
            if not indexes:
                print(f"{args.table} has no indexes")
            return OK
        if getattr(args, "at", None) or args.branch:
            raise UsageError("indexes are created and dropped on main's latest version")
        table = client.table(args.table)
        if action == "drop":
            out = table.drop_index(arg)
            print(f"dropped index {arg} of {args.table}: version {out['version']}")
            return OK
        if not args.index_type:
            raise UsageError("create needs --type: FTS for full-text search, BTREE, IVF_FLAT, ...")
        out = table.create_index(arg, args.index_type, **_index_options(args))
    print(f"created {out['type']} index {out['name']} on {args.table}.{arg}: version {out['version']}")
    return OK


def _index_options(args: argparse.Namespace) -> dict[str, Any]:
    given = {"name": args.name, "metric": args.metric, "num_partitions": args.num_partitions,
             "base_tokenizer": args.tokenizer, "language": args.language,
             "with_position": False if args.no_positions else None, "stem": False if args.no_stem else None,
             "remove_stop_words": False if args.keep_stop_words else None}
    return {k: v for k, v in given.items() if v is not None}


def _optimize(args: argparse.Namespace) -> int:
    """What ``POST .../optimize`` does, wherever the table is: compaction, the index keeper's builds,
    folds and tuning, and the pruning of old untagged versions."""
    with open_client(args) as client:
        out = client.table(args.table).optimize(**note(args))
    print(f"optimized {args.table}: version {out['version']}, {out['old_versions_removed']} old versions pruned")
    if out.get("retention_skipped"):
        print(f"warning: {out['retention_skipped']}", file=sys.stderr)
    return OK


def _embed(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        if args.server:
            raise UsageError("--engine ray runs on a data root (--uri); a service embeds with its own engine")
        from lightbox.cli.local import ray_embed

        out = ray_embed(args)
    else:
        with open_client(args) as client:
            out = client.table(args.table).embed(args.model, source=args.source, column=args.column, **note(args))
    print(f"embedded {out['rows']} rows of {args.table} into {out['column']} ({out['model']}, {out['dim']}-d)"
          f" as version {out['version']}" + (f"; {out['failed']} could not be embedded" if out["failed"] else ""))
    return OK
