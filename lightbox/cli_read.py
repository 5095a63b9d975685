"""``lightbox tags | query | show | search``: reading a table from the command line.

Each command works on a data root (``--uri``) or on a running service (``--server``). Against a
service only the SDK is used (no FastAPI or Lance in the process); on a data root the
service's own query, fetch and search code runs in-process, so both give the same rows.
Rows print as an aligned table (for people), JSON, JSON Lines or CSV (for programs).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

FORMATS = ("table", "json", "jsonl", "csv")
CELL_WIDTH = 40  # a table cell longer than this is cut with "..."


def register(sub: Any, target: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the read commands to the ``lightbox`` parser (``target`` adds ``--uri``/``--server``)."""
    tags = sub.add_parser("tags", help="list a table's tags, or create/delete one")
    tags.add_argument("table")
    tags.add_argument("action", nargs="?", choices=["list", "create", "delete"], default="list")
    tags.add_argument("name", nargs="?")
    tags.add_argument("--version", type=int, default=None, help="the version to tag (default: latest)")
    target(tags)
    tags.set_defaults(handler=_tags)

    query = sub.add_parser("query", help="rows matching a filter, as a table, JSON or CSV")
    query.add_argument("table")
    query.add_argument("filter", nargs="?", default=None, help="a SQL filter, e.g. \"label = 3 AND split = 'test'\"")
    _row_options(query, target, limit=100)
    query.set_defaults(handler=_query)

    show = sub.add_parser("show", help="rows by id (or the first rows), as a table, JSON or CSV")
    show.add_argument("table")
    show.add_argument("ids", nargs="*", metavar="ID", help="row ids (none: the first --limit rows)")
    show.add_argument("--filter", default=None)
    _row_options(show, target, limit=10)
    show.set_defaults(handler=_show)

    search = sub.add_parser("search", help="the k nearest rows to an image, a text, a row or a vector")
    search.add_argument("table")
    what = search.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", metavar="FILE", help="an image file")
    what.add_argument("--text", help="a text (the vector column's model must embed text)")
    what.add_argument("--like", metavar="ID", help="more like this row (the row itself is left out)")
    what.add_argument("--vector", metavar="FILE", help="a .npy file (or a JSON list) holding the query vector")
    search.add_argument("-k", type=int, default=10)
    search.add_argument("--filter", default=None, help="only rows matching this SQL filter")
    search.add_argument("--columns", "-c", type=_column_list, default=None, help="comma-separated columns")
    search.add_argument("--column", default=None, help="the vector column (when the table has several)")
    search.add_argument("--nprobes", type=int, default=None)
    _ref_options(search)
    search.add_argument("--format", "-f", choices=FORMATS, default="table")
    target(search)
    search.set_defaults(handler=_search)


def _row_options(parser: argparse.ArgumentParser, target: Callable[[argparse.ArgumentParser], None], *,
                 limit: int) -> None:
    parser.add_argument("--columns", "-c", type=_column_list, default=None,
                        help="comma-separated columns (default: every column but image bytes and vectors)")
    parser.add_argument("--limit", "-n", type=int, default=limit, help=f"at most this many rows (default {limit}; "
                        "0 for all)")
    parser.add_argument("--order-by", action="append", default=None, metavar="'COLUMN [asc|desc]'",
                        help="sort by a column; repeat for ties")
    _ref_options(parser)
    parser.add_argument("--format", "-f", choices=FORMATS, default="table")
    target(parser)


def _ref_options(parser: argparse.ArgumentParser) -> None:
    ref = parser.add_mutually_exclusive_group()
    ref.add_argument("--at", metavar="REF", help="read a version number, a tag or an RFC 3339 time")
    ref.add_argument("--branch", help="read a branch's latest")


def _column_list(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _ref(args: argparse.Namespace) -> dict[str, Any]:
    from lightbox.cli import _parse_ref

    if args.branch:
        return {"branch": args.branch}
    return _parse_ref(args.at) if args.at else {}


# -- where the rows come from: a service (SDK only) or a data root (the service's code) ----------
class _Remote:
    def __init__(self, args: argparse.Namespace) -> None:
        from lightbox.client import Client

        self.client = Client(args.server, api_key=args.api_key)

    def _table(self, name: str, ref: dict[str, Any]) -> Any:
        table = self.client.table(name)
        return table.at(**ref) if ref else table

    def query(self, name: str, ref: dict[str, Any], filter: str | None, columns: list[str] | None,
              limit: int | None, order_by: list[str] | None) -> pa.Table:
        return self._table(name, ref).query(filter, columns=columns, limit=limit, order_by=order_by)

    def fetch(self, name: str, ref: dict[str, Any], ids: list[str], columns: list[str] | None) -> pa.Table:
        return self._table(name, ref).fetch(ids, columns)

    def search(self, name: str, ref: dict[str, Any], **spec: Any) -> pa.Table:
        image = spec.pop("image")
        like = spec.pop("image_id")
        return self._table(name, ref).search(spec.pop("text"), image=image, like=like, **spec)

    def tags(self, name: str) -> list[dict[str, Any]]:
        return self.client.table(name).tags()

    def tag(self, name: str, tag: str, version: int | None) -> dict[str, Any]:
        return self.client.table(name).tag(tag, version)

    def untag(self, name: str, tag: str) -> None:
        self.client.table(name).untag(tag)


class _Local:
    def __init__(self, args: argparse.Namespace) -> None:
        from lightbox.cli import _store

        self.store = _store(args)

    @staticmethod
    def _ref(ref: dict[str, Any]) -> Any:
        from app.store import Ref

        return Ref.parse(**ref)

    def query(self, name: str, ref: dict[str, Any], filter: str | None, columns: list[str] | None,
              limit: int | None, order_by: list[str] | None) -> pa.Table:
        from app.services.query import QuerySpec, plan_query

        spec = QuerySpec(filter=filter, columns=columns, limit=limit, order_by=list(order_by or []))
        return plan_query(self.store, name, self._ref(ref), spec, max_rows=None).page()[0]

    def fetch(self, name: str, ref: dict[str, Any], ids: list[str], columns: list[str] | None) -> pa.Table:
        from app.services.query import fetch
        from app.store import RowReader

        return fetch(self.store, RowReader(), name, self._ref(ref), ids, columns, False)[1]

    def search(self, name: str, ref: dict[str, Any], **spec: Any) -> pa.Table:
        from app.services.search import Searcher, SearchSpec
        from app.store import RowReader
        from embeddings.registry import Registry

        if spec["vector"] is not None:
            spec["vector"] = [float(v) for v in spec["vector"]]
        if spec["image"] is not None:
            spec["image"] = Path(spec["image"]).read_bytes()
        searcher = Searcher(self.store, RowReader(), Registry())
        return searcher.search(name, self._ref(ref), SearchSpec(**spec))[1]

    def tags(self, name: str) -> list[dict[str, Any]]:
        from app.services.history import list_tags

        return list_tags(self.store, name)

    def tag(self, name: str, tag: str, version: int | None) -> dict[str, Any]:
        from app.services.history import create_tag

        return create_tag(self.store, name, tag, self._ref({"version": version} if version is not None else {}))

    def untag(self, name: str, tag: str) -> None:
        from app.services.history import delete_tag

        delete_tag(self.store, name, tag)


def _source(args: argparse.Namespace) -> _Remote | _Local:
    return _Remote(args) if args.server else _Local(args)


# -- the commands ---------------------------------------------------------------------------------
def _tags(args: argparse.Namespace) -> int:
    source = _source(args)
    if args.action != "list" and not args.name:
        raise _usage(f"tags {args.action} needs a tag name: lightbox tags {args.table} {args.action} NAME")
    if args.action == "create":
        out = source.tag(args.table, args.name, args.version)
        print(f"tagged version {out['version']} of {args.table} as {args.name}")
    elif args.action == "delete":
        source.untag(args.table, args.name)
        print(f"deleted tag {args.name}")
    else:
        for t in source.tags(args.table):
            where = f" [{t['branch']}]" if t.get("branch") else ""
            print(f"{t['name']}\tversion {t['version']}{where}\t{t.get('created_at') or ''}".rstrip())
    return 0


def _query(args: argparse.Namespace) -> int:
    rows = _source(args).query(args.table, _ref(args), args.filter, args.columns, args.limit or None, args.order_by)
    write_rows(rows, args.format)
    return 0


def _show(args: argparse.Namespace) -> int:
    source = _source(args)
    if args.ids:
        rows = source.fetch(args.table, _ref(args), list(args.ids), args.columns)
        found = set(rows.column("id").to_pylist()) if "id" in rows.column_names else set(args.ids)
        missing = [i for i in args.ids if i not in found]
        if missing:
            print(f"lightbox: no row with id {', '.join(map(repr, missing))} in {args.table}", file=sys.stderr)
        write_rows(rows, args.format)
        return 1 if missing else 0
    rows = source.query(args.table, _ref(args), args.filter, args.columns, args.limit or None, args.order_by)
    write_rows(rows, args.format)
    return 0


def _search(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise _usage("-k must be at least 1")
    for given in (args.image, args.vector):
        if given and not Path(given).is_file():
            raise _usage(f"no such file: {given}")
    spec = {"text": args.text, "image": args.image, "image_id": args.like,
            "vector": read_vector(args.vector) if args.vector else None, "k": args.k, "filter": args.filter,
            "columns": args.columns, "column": args.column, "nprobes": args.nprobes}
    write_rows(_source(args).search(args.table, _ref(args), **spec), args.format)
    return 0


def read_vector(path: str) -> list[float]:
    """A query vector from a ``.npy`` file (one vector, or the first row of a matrix) or a JSON list."""
    if path.endswith(".json"):
        values = json.loads(Path(path).read_text())
    else:
        import numpy as np

        array = np.load(path, allow_pickle=False)
        values = (array[0] if array.ndim == 2 else array).astype("float32").tolist()
    if not isinstance(values, list) or not values or not all(isinstance(v, int | float) for v in values):
        raise _usage(f"{path} holds no vector of numbers")
    return [float(v) for v in values]


class UsageError(ValueError):
    """Arguments that do not make a request; printed as one line."""


def _usage(message: str) -> UsageError:
    return UsageError(message)


# -- output ---------------------------------------------------------------------------------------
def write_rows(rows: pa.Table, fmt: str, out: Any = None) -> None:
    """Print Arrow rows as an aligned table, a JSON array, JSON Lines or CSV."""
    out = out or sys.stdout
    records = rows.to_pylist()
    if fmt == "json":
        out.write(json.dumps([_jsonable(r) for r in records], default=str, indent=1) + "\n")
    elif fmt == "jsonl":
        for r in records:
            out.write(json.dumps(_jsonable(r), default=str) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(rows.column_names)
        for r in records:
            writer.writerow([_cell(r[c], None) for c in rows.column_names])
    else:
        _write_table(rows.column_names, records, out)


def _write_table(names: Sequence[str], records: list[dict[str, Any]], out: Any) -> None:
    cells = [[_cell(r[c], CELL_WIDTH) for c in names] for r in records]
    widths = [max([len(n), *(len(row[i]) for row in cells)]) for i, n in enumerate(names)]
    out.write("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(records)} row{'s' if len(records) != 1 else ''})\n")


def _cell(value: Any, width: int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value) and len(value) > 8:
        return f"<{len(value)}-d vector>"
    text = value.isoformat() if hasattr(value, "isoformat") else (
        json.dumps(value, default=str) if isinstance(value, list | dict) else str(value))
    text = text.replace("\n", " ").replace("\t", " ")
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (f"<{len(v)} bytes>" if isinstance(v, bytes) else v) for k, v in record.items()}


# -- merge conflicts ------------------------------------------------------------------------------
SHOWN_CONFLICTS = 20
HIDDEN_IN_CONFLICTS = {"ingested_at", "source"}  # bookkeeping that differs on every write


def merge_conflict_report(args: argparse.Namespace, exc: Any) -> str:
    """The conflicting ids with both sides' differing values, and how to pick a side."""
    detail = getattr(exc, "detail", {}) or {}
    ids = list(detail.get("conflicts") or [])
    count = int(detail.get("count") or len(ids))
    lines = [f"lightbox: error: merge refused: {getattr(exc, 'message', str(exc))}:"]
    shown = ids[:SHOWN_CONFLICTS]
    try:
        source = _source(args)
        theirs = _by_id(source.fetch(args.table, {"branch": args.branch}, shown, None))
        ours = _by_id(source.fetch(args.table, {} if args.into == "main" else {"branch": args.into}, shown, None))
    except Exception:  # the values are a courtesy: the ids alone still say what clashed
        theirs, ours = {}, {}
    for row_id in shown:
        lines.append(f"  {row_id}")
        a, b = ours.get(row_id), theirs.get(row_id)
        if a is None or b is None:
            lines.append(f"      {args.into}: {'deleted' if a is None else 'kept'}    "
                         f"{args.branch}: {'deleted' if b is None else 'kept'}")
            continue
        for column in [c for c in b if c not in HIDDEN_IN_CONFLICTS and a.get(c) != b.get(c)]:
            lines.append(f"      {column}: {args.into} has {_cell(a.get(column), CELL_WIDTH)}, "
                         f"{args.branch} has {_cell(b.get(column), CELL_WIDTH)}")
    if count > len(shown):
        lines.append(f"  ... and {count - len(shown)} more")
    where = f" --server {args.server}" if getattr(args, "server", None) else ""
    where += f" --into {args.into}" if args.into != "main" else ""
    lines.append(f"hint: keep {args.branch}'s values with `lightbox merge {args.table} {args.branch}{where} "
                 f"--on-conflict theirs`, or {args.into}'s with `--on-conflict ours`")
    return "\n".join(lines)


def _by_id(rows: pa.Table) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows.to_pylist()}
