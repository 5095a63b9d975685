"""``lightbox curate | view``: label issues and duplicates as columns, and saved views of a table."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lightbox.cli.common import (
    add_note,
    add_ref,
    add_target,
    column_list,
    open_client,
    ref_of,
)
from lightbox.cli.errors import OK

__all__ = ["add_view", "register"]


def add_view(parser: argparse.ArgumentParser) -> None:
    """``--view NAME`` on the commands that read rows."""
    parser.add_argument("--view", metavar="NAME", default=None,
                        help="read through a saved view (its filter ANDed with --filter; its columns, sort and "
                             "ref unless given)")


def register(sub: Any) -> None:
    """Add ``curate`` and ``view`` to the ``lightbox`` parser."""
    cur = sub.add_parser("curate", help="score label issues, find duplicates and uniqueness (one new version)")
    cur.add_argument("table", help="the table")
    cur.add_argument("--label", metavar="COLUMN", default=None,
                     help="the label column (without it: duplicates and uniqueness only)")
    cur.add_argument("--column", metavar="VECTOR_COLUMN", default=None,
                     help="the vector column (default: the table's only one)")
    cur.add_argument("--k", "-k", type=int, default=10,
                     help="neighbours voting on each label (default 10, at most 100)")
    cur.add_argument("--threshold", type=float, default=None,
                     help="near-duplicate distance (default: the one calibrated for the column's model)")
    add_note(cur)
    add_target(cur)
    cur.set_defaults(handler=_curate)

    view = sub.add_parser("view", help="saved views: list, show, save or delete a named filter + sort + columns")
    actions = view.add_subparsers(dest="view_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the table's views (with the error of any that no longer fits)")
    listing.add_argument("table", help="the table")
    add_target(listing)
    show = actions.add_parser("show", help="one view as JSON")
    show.add_argument("table", help="the table")
    show.add_argument("name", help="the view")
    add_target(show)
    save = actions.add_parser("save", help="create or replace a view (checked against the table first)")
    save.add_argument("table", help="the table")
    save.add_argument("name", help="the view (letters, digits, '.', '_', '-')")
    save.add_argument("--filter", "-f", metavar="EXPR", default=None, help="the view's SQL filter")
    save.add_argument("--columns", "-c", type=column_list, default=None, help="the view's comma-separated columns")
    save.add_argument("--order-by", action="append", default=None, metavar="'COLUMN [asc|desc]'",
                      help="the view's sort; repeat for ties")
    add_ref(save, branch=True, what="read through the view")
    add_target(save)
    delete = actions.add_parser("delete", help="remove a view")
    delete.add_argument("table", help="the table")
    delete.add_argument("name", help="the view")
    add_target(delete)
    for parser in (listing, show, save, delete):
        parser.set_defaults(handler=_view)


def _curate(args: argparse.Namespace) -> int:
    from lightbox.cli.common import note

    with open_client(args) as client:
        out = client.table(args.table).curate(args.label, column=args.column, k=args.k, threshold=args.threshold,
                                              **note(args))
    found = (f"{out['exact_duplicates']} exact and {out['near_duplicates']} near duplicates "
             f"(threshold {out['near_threshold']:.4g}: {out['threshold_source']})")
    if out.get("label") is not None:
        found += f", {out['label_issues_over_half']} rows with label_issue > 0.5"
    print(f"curated {out['rows']} rows of {args.table} as version {out['version']}: {found}")
    return OK


def _view(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        table = client.table(args.table)
        if args.view_action == "list":
            for view in table.views():
                problem = f"  [error: {view['error']}]" if view.get("error") else ""
                print(f"{view['name']}: {view.get('filter') or '(all rows)'}{problem}")
        elif args.view_action == "show":
            print(json.dumps(table.view(args.name), indent=2))
        elif args.view_action == "save":
            saved = table.save_view(args.name, args.filter, columns=args.columns, order_by=args.order_by,
                                    ref=ref_of(args) or None)
            print(f"saved view {saved['name']} of {args.table}")
        else:
            table.delete_view(args.name)
            print(f"deleted view {args.name} of {args.table}")
    return OK
