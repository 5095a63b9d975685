"""``lightbox query | count | row | search | delete``: the rows of a table, read and changed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lightbox.cli.common import (
    FORMATS,
    add_filter,
    add_note,
    add_ref,
    add_target,
    assignment,
    column_list,
    filter_of,
    note,
    open_client,
    table_at,
    writable_table,
)
from lightbox.cli.curate import add_view
from lightbox.cli.errors import NOT_ALL_FOUND, OK, UsageError
from lightbox.cli.output import write_rows

__all__ = ["read_vector", "register"]

COLUMNS_HELP = "comma-separated columns (default: every column but image bytes and vectors)"


def register(sub: Any) -> None:
    """Add the row commands to the ``lightbox`` parser."""
    query = sub.add_parser("query", help="rows matching a filter, as a table, JSON or CSV")
    query.add_argument("table", help="the table")
    query.add_argument("filter_text", nargs="?", default=None, metavar="FILTER",
                       help="a SQL filter (alias of --filter)")
    add_filter(query)
    add_view(query)
    _row_options(query, limit=100)
    query.set_defaults(handler=_query)

    count = sub.add_parser("count", help="how many rows match a filter (all rows without one)")
    count.add_argument("table", help="the table")
    add_filter(count, what="count only rows matching")
    add_view(count)
    add_ref(count)
    add_target(count)
    count.set_defaults(handler=_count)

    row = sub.add_parser("row", aliases=["show"], help="rows by id, or change one row (--set) or delete it "
                                                        "(--delete); alias: show")
    row.add_argument("table", help="the table")
    row.add_argument("ids", nargs="+", metavar="ID", help="row ids as stored (e.g. 3/00012.png); each is encoded "
                                                          "for you")
    action = row.add_mutually_exclusive_group()
    action.add_argument("--set", action="append", metavar="COLUMN=VALUE",
                        help="change a column of the row (one new version); VALUE is JSON, or else taken as text")
    action.add_argument("--delete", action="store_true", help="delete the row (one new version)")
    row.add_argument("--columns", "-c", type=column_list, default=None, help=COLUMNS_HELP)
    add_ref(row, what="read (or with --branch alone, change)")
    row.add_argument("--format", choices=FORMATS, default="table", help="how the rows print (default table)")
    add_note(row)
    add_target(row)
    row.set_defaults(handler=_row)

    search = sub.add_parser("search", help="the k nearest rows to an image, a text, a row or a vector; rows "
                                           "matching keywords; or both, fused")
    search.add_argument("table", help="the table")
    what = search.add_mutually_exclusive_group()
    what.add_argument("--image", metavar="FILE", help="an image file")
    what.add_argument("--text", help="a text (the vector column's model must embed text)")
    what.add_argument("--like", metavar="ID", help="more like this row (the row itself is left out)")
    what.add_argument("--vector", metavar="FILE", help="a .npy file (or a JSON list) holding the query vector")
    search.add_argument("--keywords", "-q", metavar="WORDS",
                        help='keyword search on the full-text indexes: words, "a phrase", +must, -must_not; '
                             "beside --image/--text/--like/--vector, hybrid")
    search.add_argument("--keyword-columns", type=column_list, default=None, metavar="COLUMNS",
                        help="comma-separated text columns the keywords search (default: every full-text indexed one)")
    search.add_argument("--fusion", choices=["rrf", "linear"], default=None,
                        help="hybrid: reciprocal rank fusion (default, k=60) or a weighted sum of scaled scores")
    search.add_argument("--weight", type=float, default=None,
                        help="hybrid with --fusion linear: the vector side's share, 0 to 1 (default 0.5)")
    search.add_argument("-k", type=int, default=10, help="how many rows (default 10)")
    search.add_argument("--offset", type=int, default=0, help="skip this many of the best rows first (default 0)")
    add_filter(search, what="search only rows matching")
    add_view(search)
    search.add_argument("--columns", "-c", type=column_list, default=None, help=COLUMNS_HELP)
    search.add_argument("--column", default=None, help="the vector column (when the table has several)")
    search.add_argument("--nprobes", type=int, default=None,
                        help="index partitions to probe (default: tuned to the recall target)")
    add_ref(search)
    search.add_argument("--format", choices=FORMATS, default="table", help="how the rows print (default table)")
    add_target(search)
    search.set_defaults(handler=_search)

    delete = sub.add_parser("delete", help="delete the rows a filter matches (one new version)")
    delete.add_argument("table", help="the table")
    add_filter(delete, required=True, what="delete the rows matching")
    delete.add_argument("--branch", metavar="B", help="delete on branch B instead of main")
    add_note(delete)
    add_target(delete)
    delete.set_defaults(handler=_delete)


def _row_options(parser: argparse.ArgumentParser, *, limit: int) -> None:
    parser.add_argument("--columns", "-c", type=column_list, default=None, help=COLUMNS_HELP)
    parser.add_argument("--limit", "-n", type=int, default=limit, help=f"at most this many rows (default {limit}; "
                        "0 for all)")
    parser.add_argument("--order-by", action="append", default=None, metavar="'COLUMN [asc|desc]'",
                        help="sort by a column; repeat for ties")
    add_ref(parser)
    parser.add_argument("--format", choices=FORMATS, default="table", help="how the rows print (default table)")
    add_target(parser)


# -- the commands ---------------------------------------------------------------------------------
def _query(args: argparse.Namespace) -> int:
    where = filter_of(args)
    with open_client(args) as client:
        rows = table_at(client, args).query(where, columns=args.columns, limit=args.limit or None,
                                            order_by=args.order_by, view=args.view)
    write_rows(rows, args.format)
    return OK


def _count(args: argparse.Namespace) -> int:
    where = filter_of(args)
    with open_client(args) as client:
        print(table_at(client, args).count(where, view=args.view))
    return OK


def _row(args: argparse.Namespace) -> int:
    """Rows by id at a ref (an id not there is told, and the status is 1); or one row changed or deleted,
    on main or ``--branch``. Every id passes the one id rule and travels as one encoded path segment."""
    from lightbox._ids import check_id

    for row_id in args.ids:  # an id no write could have stored is a mistake, not a row that is missing
        check_id(row_id)
    if args.set or args.delete:
        return _change_row(args)
    with open_client(args) as client:
        rows = table_at(client, args).fetch(list(args.ids), args.columns)
    found = set(rows.column("id").to_pylist()) if "id" in rows.column_names else set(args.ids)
    missing = [i for i in args.ids if i not in found]
    if missing:
        print(f"lightbox: no row with id {', '.join(map(repr, missing))} in {args.table}", file=sys.stderr)
    write_rows(rows, args.format)
    return NOT_ALL_FOUND if missing else OK


def _change_row(args: argparse.Namespace) -> int:
    if len(args.ids) != 1:
        raise UsageError("--set and --delete change one row: give one ID (delete many with "
                         "`lightbox delete TABLE --filter EXPR`)")
    if getattr(args, "at", None):
        raise UsageError("--at reads a point of history; a change goes to the latest of main or --branch")
    values = dict(assignment(text) for text in args.set or [])
    with open_client(args) as client:
        table = writable_table(client, args)
        out = table.delete_row(args.ids[0], **note(args)) if args.delete else \
            table.update(args.ids[0], values, **note(args))
    print(json.dumps(out, default=str, ensure_ascii=False))
    return OK


def _search(args: argparse.Namespace) -> int:
    if args.k < 1 or args.offset < 0:
        raise UsageError("-k must be at least 1 and --offset at least 0")
    if not any((args.image, args.text, args.like, args.vector, args.keywords)):
        raise UsageError("give one of --image, --text, --like, --vector, and/or --keywords")
    for given in (args.image, args.vector):
        if given and not Path(given).is_file():
            raise UsageError(f"no such file: {given}")
    vector = read_vector(args.vector) if args.vector else None
    where = filter_of(args)
    with open_client(args) as client:
        rows = table_at(client, args).search(args.text, image=args.image, vector=vector, like=args.like, k=args.k,
                                             filter=where, columns=args.columns, column=args.column,
                                             nprobes=args.nprobes, keywords=args.keywords,
                                             keyword_columns=args.keyword_columns, offset=args.offset,
                                             fusion=args.fusion, weight=args.weight, view=args.view)
    write_rows(rows, args.format)
    return OK


def _delete(args: argparse.Namespace) -> int:
    where = filter_of(args)
    with open_client(args) as client:
        out = writable_table(client, args).delete(where or "", **note(args))
    print(f"deleted {out['deleted']} rows of {args.table}" + (f" as version {out['version']}" if out["deleted"]
                                                              else ""))
    return OK


def read_vector(path: str) -> list[float]:
    """A query vector from a ``.npy`` file (one vector, or the first row of a matrix) or a JSON list."""
    if path.endswith(".json"):
        values = json.loads(Path(path).read_text())
    else:
        import numpy as np

        array = np.load(path, allow_pickle=False)
        values = (array[0] if array.ndim == 2 else array).astype("float32").tolist()
    if not isinstance(values, list) or not values or not all(isinstance(v, int | float) for v in values):
        raise UsageError(f"{path} holds no vector of numbers")
    return [float(v) for v in values]
