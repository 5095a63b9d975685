"""``lightbox optimize | embed``: keeping a table fast, and giving it vectors."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lightbox.cli.common import add_note, add_target, note, open_client
from lightbox.cli.errors import OK, UsageError

__all__ = ["add_engine", "register"]

MODEL_HELP = "'builtin', 'clip[:<path>]' or 'sentence-transformers:<model or path>'"


def register(sub: Any) -> None:
    """Add the maintenance commands to the ``lightbox`` parser."""
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
