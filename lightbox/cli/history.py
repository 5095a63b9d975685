"""``lightbox log | tags | diff | branch | merge | restore``: a table's history, as git shows a repository's."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lightbox.cli.common import (
    add_note,
    add_ref,
    add_target,
    alias_help,
    note,
    open_client,
    parse_ref,
    ref_of,
)
from lightbox.cli.errors import ERROR, OK, UsageError
from lightbox.cli.output import CELL_WIDTH, cell

__all__ = ["register"]

TAG_ACTIONS = ("list", "create", "delete")
SHOWN_CONFLICTS = 20
HIDDEN_IN_CONFLICTS = {"ingested_at", "source"}  # bookkeeping that differs on every write


def register(sub: Any) -> None:
    """Add the history commands to the ``lightbox`` parser."""
    log = sub.add_parser("log", aliases=["versions"], help="the version log, newest first, like git log; "
                                                           "alias: versions")
    log.add_argument("table", help="the table")
    log.add_argument("--branch", metavar="B", help="the log of branch B (default: main)")
    log.add_argument("-n", "--limit", type=int, default=50, help="at most this many versions (default 50; 0 for all)")
    log.add_argument("--oneline", action="store_true", help="one tab-separated line per version")
    log.add_argument("--reverse", action="store_true", help="oldest first")
    add_target(log)
    log.set_defaults(handler=_log)

    tags = sub.add_parser("tags", aliases=["tag"], help="list a table's tags, or create or delete one; alias: tag",
                          usage="lightbox tags TABLE [list | create NAME | delete NAME] [--at REF] [--branch B] ...\n"
                                "       lightbox tag TABLE [NAME [--delete]] ...  (alias)")
    tags.add_argument("table", help="the table")
    tags.add_argument("words", nargs="*", metavar="ACTION NAME",
                      help="list (the default), create NAME or delete NAME; as `tag`: NAME to create it")
    tags.add_argument("--delete", action="store_true", help="with `tag TABLE NAME`: delete the tag")
    add_ref(tags, aliases=("--version",), what="tag",
            at_help="create: the version to tag, a number (default: the latest)")
    add_target(tags)
    tags.set_defaults(handler=_tags)

    dif = sub.add_parser("diff", help="ids added, removed and changed between two refs")
    dif.add_argument("table", help="the table")
    dif.add_argument("from_ref", metavar="FROM", help="a version, tag, branch or RFC 3339 time")
    dif.add_argument("to_ref", metavar="TO", nargs="?", default="main", help="the same (default: main's latest)")
    dif.add_argument("--ids", action="store_true", help="list the ids, not just the counts")
    add_target(dif)
    dif.set_defaults(handler=_diff)

    br = sub.add_parser("branch", help="list branches, or create or delete one")
    br.add_argument("table", help="the table")
    br.add_argument("name", nargs="?", help="the branch to create (or delete, with --delete)")
    add_ref(br, aliases=("--from",), what="fork from")
    br.add_argument("--delete", action="store_true", help="delete the branch NAME")
    add_target(br)
    br.set_defaults(handler=_branch)

    mer = sub.add_parser("merge", help="merge a branch into main (or --into another branch)")
    mer.add_argument("table", help="the table")
    mer.add_argument("merged", metavar="BRANCH", help="the branch whose changes are merged")
    mer.add_argument("--into", default="main", help="the branch that takes them (default main)")
    mer.add_argument("--on-conflict", choices=["fail", "theirs", "ours"], default="fail",
                     help="when an id changed on both sides: refuse (default), take BRANCH's or keep --into's")
    add_note(mer)
    add_target(mer)
    mer.set_defaults(handler=_merge)

    res = sub.add_parser("restore", help="make a past version of main the new latest")
    res.add_argument("table", help="the table")
    res.add_argument("ref_text", nargs="?", metavar="REF", help=alias_help("--at"))
    add_ref(res, branch=False, what="restore")
    add_note(res)
    add_target(res)
    res.set_defaults(handler=_restore)


# -- log -------------------------------------------------------------------------------------------
def _log(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        table = client.table(args.table)
        table = table.at(branch=args.branch) if args.branch else table
        page = table.versions(limit=args.limit or None, newest_first=True)
    if args.reverse:
        page = page[::-1]
    for i, v in enumerate(page):
        if args.oneline:
            _print_line(v)
            continue
        _print_entry(v)
        if i + 1 < len(page):
            print()
    return OK


def _print_line(v: dict[str, Any]) -> None:
    tags = f" ({', '.join(v['tags'])})" if v["tags"] else ""
    print(f"{v['version']}\t{v['timestamp']}\t{v['num_rows']} rows\t{v['operation']}\t"
          f"{v['author'] or ''}\t{v['message'] or ''}{tags}")


def _print_entry(v: dict[str, Any], indent: str = "") -> None:
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


# -- tags ------------------------------------------------------------------------------------------
def _tag_action(args: argparse.Namespace) -> tuple[str, str | None]:
    """(action, name) from ``tags TABLE [list | create NAME | delete NAME]`` or ``tag TABLE [NAME [--delete]]``."""
    words = list(args.words)
    if args.command == "tag" or args.delete:
        if len(words) > 1:
            raise UsageError(f"`lightbox tag` takes one tag name, got {len(words)}: {' '.join(words)}")
        if not words:
            if args.delete:
                raise UsageError("--delete needs a tag name: lightbox tag TABLE NAME --delete")
            return "list", None
        return ("delete" if args.delete else "create"), words[0]
    action = words[0] if words else "list"
    if action not in TAG_ACTIONS:
        raise UsageError(f"tags takes list, create NAME or delete NAME, not {action!r} "
                         f"(`lightbox tag {args.table} {action}` creates a tag named {action!r})")
    if action != "list" and len(words) != 2:
        raise UsageError(f"tags {action} needs one tag name: lightbox tags {args.table} {action} NAME")
    if action == "list" and len(words) > 1:
        raise UsageError("tags list takes no name")
    return action, (words[1] if len(words) > 1 else None)


def _tags(args: argparse.Namespace) -> int:
    action, name = _tag_action(args)
    ref = ref_of(args)
    with open_client(args) as client:
        table = client.table(args.table)
        if action == "create":
            if {"tag", "as_of"} & set(ref):
                raise UsageError("a tag is made on a version: give --at N (with --branch B, version N of B)")
            on = table.branch(ref["branch"]) if "branch" in ref else table
            out = on.tag(name, ref.get("version"))  # type: ignore[arg-type]
            print(f"tagged version {out['version']} of {args.table} as {name}"
                  + (f" (branch {out['branch']})" if out.get("branch") else ""))
        elif action == "delete":
            table.untag(name)  # type: ignore[arg-type]
            print(f"deleted tag {name}")
        else:
            for t in table.tags():
                where = f" [{t['branch']}]" if t.get("branch") else ""
                print(f"{t['name']}\tversion {t['version']}{where}\t{t.get('created_at') or ''}".rstrip())
    return OK


# -- diff, branches, merge, restore ----------------------------------------------------------------
def _diff(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        out = client.table(args.table).diff(args.from_ref, args.to_ref)
    counts = out["counts"]
    print(f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed")
    if args.ids:
        for key in out["added"]:
            print(f"+ {key}")
        for key in out["removed"]:
            print(f"- {key}")
        for entry in out["changed"]:
            print(f"~ {entry['id']} ({', '.join(entry['columns'])})")
    return OK


def _branch(args: argparse.Namespace) -> int:
    ref = ref_of(args)
    with open_client(args) as client:
        table = client.table(args.table)
        if args.name and args.delete:
            table.delete_branch(args.name)
        elif args.name:
            source = table.branch(ref.pop("branch")) if "branch" in ref else table
            source.create_branch(args.name, **ref)
        elif args.delete:
            raise UsageError("--delete needs the branch's name: lightbox branch TABLE NAME --delete")
        rows = table.branches()
    for b in rows:
        print(f"{b['name']}\tversion {b['version']}\tfrom {b['parent_branch'] or 'main'}@{b['parent_version']}"
              f"\t{b['num_rows']} rows")
    return OK


def _merge(args: argparse.Namespace) -> int:
    from lightbox.errors import Conflict

    with open_client(args) as client:
        table = client.table(args.table)
        try:
            out = table.merge(args.merged, into=args.into, on_conflict=args.on_conflict, **note(args))
        except Conflict as exc:
            if exc.code != "merge_conflict":
                raise
            print(_conflict_report(args, table, exc), file=sys.stderr)
            return ERROR
    if out["merged"]:
        print(f"merged {args.merged} into {args.into} as version {out['version']}: "
              f"{out['upserted']} added or changed, {out['removed']} removed")
    else:
        print(f"nothing to merge: {args.into} already has {args.merged}'s changes")
    return OK


def _conflict_report(args: argparse.Namespace, table: Any, exc: Any) -> str:
    """The conflicting ids with both sides' differing values, and how to pick a side."""
    detail = exc.detail or {}
    ids = list(detail.get("conflicts") or [])
    count = int(detail.get("count") or len(ids))
    lines = [f"lightbox: error: merge refused: {exc.message}:"]
    shown = ids[:SHOWN_CONFLICTS]
    try:
        theirs = _by_id(table.at(branch=args.merged).fetch(shown))
        ours = _by_id((table if args.into == "main" else table.at(branch=args.into)).fetch(shown))
    except Exception:  # the values are a courtesy: the ids alone still say what clashed
        theirs, ours = {}, {}
    for row_id in shown:
        lines.append(f"  {row_id}")
        a, b = ours.get(row_id), theirs.get(row_id)
        if a is None or b is None:
            lines.append(f"      {args.into}: {'deleted' if a is None else 'kept'}    "
                         f"{args.merged}: {'deleted' if b is None else 'kept'}")
            continue
        for column in [c for c in b if c not in HIDDEN_IN_CONFLICTS and a.get(c) != b.get(c)]:
            lines.append(f"      {column}: {args.into} has {cell(a.get(column), CELL_WIDTH)}, "
                         f"{args.merged} has {cell(b.get(column), CELL_WIDTH)}")
    if count > len(shown):
        lines.append(f"  ... and {count - len(shown)} more")
    where = f" --server {args.server}" if args.server else ""
    where += f" --into {args.into}" if args.into != "main" else ""
    lines.append(f"hint: keep {args.merged}'s values with `lightbox merge {args.table} {args.merged}{where} "
                 f"--on-conflict theirs`, or {args.into}'s with `--on-conflict ours`")
    return "\n".join(lines)


def _by_id(rows: Any) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows.to_pylist()}


def _restore(args: argparse.Namespace) -> int:
    if args.ref_text and args.at:
        raise UsageError("give the ref once: as --at REF, or as the REF argument")
    ref = parse_ref(args.ref_text) if args.ref_text else ref_of(args)
    if not ref:
        raise UsageError("say which point to restore: lightbox restore TABLE --at REF (a version, tag or time)")
    with open_client(args) as client:
        out = client.table(args.table).restore(**ref, **note(args))
    print(f"restored version {out['restored']} as new version {out['version']} ({out['num_rows']} rows)")
    return OK

