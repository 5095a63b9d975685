"""``lightbox tables | describe | drop | clone``: whole tables."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lightbox.cli.common import add_note, add_ref, add_target, note, open_client, ref_of, table_at
from lightbox.cli.errors import OK, UsageError
from lightbox.cli.output import human_bytes

__all__ = ["describe_lines", "index_line", "register"]

CLONE_TAG_PREFIX = "lightbox-clone-"  # the tag a clone leaves on its source version (docs/http.md, clone)


def register(sub: Any) -> None:
    """Add the table commands to the ``lightbox`` parser."""
    tab = sub.add_parser("tables", help="list tables")
    add_target(tab)
    tab.set_defaults(handler=_tables)

    desc = sub.add_parser("describe", help="a table's schema, rows, versions, tags, branches, indexes (with their "
                                           "tuning) and size in storage")
    desc.add_argument("table", help="the table")
    add_ref(desc, what="describe")
    desc.add_argument("--json", action="store_true", help="print the description as JSON")
    add_target(desc)
    desc.set_defaults(handler=_describe)

    drop = sub.add_parser("drop", help="delete a table and all its history (asks first, unless --yes)")
    drop.add_argument("table", help="the table")
    drop.add_argument("--yes", "-y", action="store_true", help="drop without asking (needed when not on a terminal)")
    add_target(drop)
    drop.set_defaults(handler=_drop)

    cl = sub.add_parser("clone", help="a new table sharing a table's files at a ref (no bytes copied)")
    cl.add_argument("table", help="the table to clone")
    cl.add_argument("new", help="the new table's name")
    add_ref(cl, aliases=("--tag", "--version"), what="clone")
    add_note(cl)
    add_target(cl)
    cl.set_defaults(handler=_clone)


def _tables(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        for t in client.tables():
            print(f"{t.name}\tversion {t.version}\t{t.num_rows} rows")
    return OK


def _describe(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        out = table_at(client, args).describe()
    if args.json:
        print(json.dumps(out, default=str))
        return OK
    for line in describe_lines(out):
        print(line)
    return OK


def describe_lines(d: dict[str, Any]) -> list[str]:
    """The description for a person: facts first, then one section per kind, aligned."""
    size = d["size"]
    parts = ", ".join(f"{name} {human_bytes(n)}" for name, n in size["parts"].items())
    lines = [f"table      {d['name']}",
             f"version    {d['version']}" + (f" of branch {d['branch']}" if d.get("branch") else ""),
             f"rows       {d['num_rows']}",
             f"versions   {d['versions']}",
             f"size       {human_bytes(size['bytes'])} in {size['files']} files" + (f" ({parts})" if parts else "")]
    sections: list[tuple[str, list[tuple[str, str]]]] = [
        ("schema", [(f["name"], str(f["type"]) + ("" if f.get("nullable", True) else " not null"))
                    for f in d["schema"]]),
        ("tags", [(name, f"version {t['version']}" + (f" of branch {t['branch']}" if t.get("branch") else ""))
                  for name, t in sorted(d["tags"].items())]),
        ("branches", [(name, f"version {b['version']}, {b['num_rows']} rows, from "
                             f"{b.get('parent_branch') or 'main'}@{b.get('parent_version')}")
                      for name, b in sorted(d["branches"].items())]),
        ("indexes", [(i["name"], index_line(i)) for i in d["indexes"]]),
        ("embeddings", [(e["column"], f"{e['model']}, {e['dim']}-d, from {e['source']}, {e['metric']}")
                        for e in d["embeddings"]]),
    ]
    for title, rows in sections:
        lines.append(f"{title}" + ("" if rows else "   (none)"))
        width = max((len(name) for name, _ in rows), default=0)
        lines.extend(f"  {name.ljust(width)}  {text}" for name, text in rows)
    return lines


def index_line(index: dict[str, Any]) -> str:
    text = (f"{index['type']} on {', '.join(index['columns'])}: {index.get('num_indexed_rows')} rows indexed, "
            f"{index.get('num_unindexed_rows')} not yet")
    if "recall_target" in index:
        text += (f"; tuned: recall {index['recall']} at nprobes {index['nprobes']} (target {index['recall_target']})"
                 if index.get("tuned") else f"; not tuned yet (target {index['recall_target']})")
    return text


def _drop(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        table = client.table(args.table)
        info = table.info()  # a table that is not there is told before anything is asked
        if not args.yes:
            _confirm(f"drop table {args.table!r} ({info['num_rows']} rows at version {info['version']}) and all "
                     "its history?")
        client.drop_table(args.table)
    print(f"dropped {args.table}")
    return OK


def _confirm(question: str) -> None:
    """Ask on a terminal; anywhere else (a script, a pipe) the command needs ``--yes``."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError(f"{question.removesuffix('?')}: add --yes to drop it (nothing was asked: not a terminal)")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise UsageError("not dropped: the table is kept")


def _clone(args: argparse.Namespace) -> int:
    ref = ref_of(args)
    with open_client(args) as client:
        new = client.clone(args.table, args.new, **ref, **note(args))
        rows = new.info()["num_rows"]
        guard = {t["name"]: t for t in client.table(args.table).tags()}.get(CLONE_TAG_PREFIX + args.new)
    at = f"@{guard['version']}" + (f" of branch {guard['branch']}" if guard.get("branch") else "") if guard else ""
    print(f"cloned {args.table}{at} as {args.new} ({rows} rows, no bytes copied)")
    return OK
