"""What the commands share: where a command works, how refs, filters and log notes are given, the client.

Every command that reads or changes a table is a few SDK calls on the one ``Client`` that
``open_client`` returns: ``lightbox.connect`` on ``--server URL`` (HTTP), or on the data root
``--uri`` (default ``$LIGHTBOX_URI``, else ``./lightbox-data``) served by the service's own app in
this process. ``--uri`` and ``--server`` therefore run the same code and cannot disagree.

One grammar for every command: a ref is ``--at REF`` (a version number, a tag or an RFC 3339 time)
plus ``--branch B`` (a branch's latest, or with ``--at N`` its version N); a filter is
``--filter/-f EXPR``; a write is logged with ``--message/-m`` and ``--author``. Older spellings stay
as aliases, and their help says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lightbox.cli.errors import UsageError

if TYPE_CHECKING:
    from lightbox.client import Client, Table

__all__ = [
    "FORMATS", "add_filter", "add_note", "add_ref", "add_target", "alias_help", "assignment", "check_root",
    "column_list", "data_root", "filter_of", "local_path", "note", "open_client", "parse_ref", "ref_of",
    "shown_root", "storage_options", "table_at", "writable_table",
]

DEFAULT_ROOT = "./lightbox-data"
FORMATS = ("table", "json", "jsonl", "csv")  # how rows print (``--format``)
ROOT_HELP = "data root: a folder or any Lance URI (default $LIGHTBOX_URI, else ./lightbox-data)"


# -- where a command works -------------------------------------------------------------------------
def add_target(parser: argparse.ArgumentParser, *, remote: bool = True) -> None:
    """``--uri`` (and, for commands that also run on a service, ``--server`` and ``--api-key``), plus
    ``--storage-option`` for a data root on object storage."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--uri", default=None, help=ROOT_HELP)
    if remote:
        where.add_argument("--server", default=None, metavar="URL",
                           help="a Lightbox service to work on over HTTP, instead of a data root")
        parser.add_argument("--api-key", default=os.environ.get("LIGHTBOX_API_KEY"), metavar="KEY",
                            help="the service's API key (default $LIGHTBOX_API_KEY)")
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE", type=_storage_pair,
                        help="an object-store option for the data root (repeatable), e.g. "
                             "endpoint=http://127.0.0.1:9000; adds to $LIGHTBOX_STORAGE_OPTIONS")


def _storage_pair(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError("a storage option is KEY=VALUE")  # the value is not echoed: it may be a secret
    return text


def storage_options(args: argparse.Namespace) -> dict[str, str]:
    """The ``--storage-option`` pairs (keys lower-cased, as the settings' are); the environment's come
    from the service's settings, under these."""
    pairs = (text.partition("=") for text in getattr(args, "storage_option", None) or [])
    return {key.strip().lower(): value for key, _, value in pairs}


def data_root(args: argparse.Namespace) -> str:
    return getattr(args, "uri", None) or os.environ.get("LIGHTBOX_URI") or DEFAULT_ROOT


def local_path(root: str) -> str | None:
    """The folder of a data root on local disk (``None`` for an object store)."""
    return root.removeprefix("file://") if "://" not in root or root.startswith("file://") else None


def check_root(root: str) -> None:
    """A local data root that is not there is a mistake (a typo, another folder), not an empty listing."""
    path = local_path(root)
    if path is None or os.path.isdir(path):
        return
    what = "a file, not a folder" if os.path.exists(path) else "no such folder"
    raise UsageError(f"no data root at {os.path.abspath(path)}: {what} (give --uri or set LIGHTBOX_URI; "
                     "`lightbox ingest` creates a root)")


def shown_root(root: str) -> str:
    """The data root as a summary names it: a local one as an absolute path."""
    path = local_path(root)
    return os.path.abspath(path) if path is not None else root


def open_client(args: argparse.Namespace, *, create: bool = False) -> Client:
    """The one client a command runs on: the service at ``--server``, or the data root in this process.

    A data root must exist unless ``create`` (only ``ingest`` and ``demo`` create one). The service's log is kept quiet
    in this process: what it would log about a failed request, the command tells in its one line.
    """
    import lightbox
    from lightbox.extras import need

    target = args.server or data_root(args)
    if target.startswith(("http://", "https://")):
        if storage_options(args):
            raise UsageError("--storage-option is for a data root (--uri); a service has its own settings")
        args.server = target  # a URL in --uri or $LIGHTBOX_URI is a service like any other
        return lightbox.Client(target, api_key=args.api_key)
    if not create:
        check_root(target)
    need("app.main", "server", f"`lightbox {args.command}` on a data root")
    if not os.environ.get("LIGHTBOX_DEBUG"):
        service_log = logging.getLogger("lightbox")
        if not any(isinstance(h, logging.NullHandler) for h in service_log.handlers):
            service_log.addHandler(logging.NullHandler())
    return lightbox.connect(target, storage_options=storage_options(args) or None)


# -- refs ------------------------------------------------------------------------------------------
ALIASES: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "--version": ("version", int, "N"), "--tag": ("tag", str, "TAG"), "--from": ("text", str, "REF"),
}


def add_ref(parser: argparse.ArgumentParser, *, branch: bool = True, aliases: tuple[str, ...] = (),
            what: str = "read", at_help: str | None = None) -> None:
    """``--at REF`` (with older spellings as its aliases) and ``--branch B``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--at", metavar="REF", help=at_help or f"the point to {what}: a version number, a tag or an "
                                                              "RFC 3339 time (default: the latest)")
    for flag in aliases:
        kind, convert, metavar = ALIASES[flag]
        group.add_argument(flag, dest=f"at_{kind}", type=convert, metavar=metavar, help=alias_help("--at"))
    if branch:
        parser.add_argument("--branch", metavar="B", help=f"{what} branch B: its latest, or with --at N its version N")


def alias_help(canonical: str) -> str:
    return f"alias of {canonical}"


def parse_ref(text: str) -> dict[str, Any]:
    """A version number, an RFC 3339 timestamp, or else a tag name."""
    if text.isdigit():
        return {"version": int(text)}
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return {"tag": text}
    return {"as_of": text}


def ref_of(args: argparse.Namespace) -> dict[str, Any]:
    """The ref the options name: ``{}`` for main's latest; a version may come with its branch."""
    ref = parse_ref(args.at) if getattr(args, "at", None) else {}
    if getattr(args, "at_version", None) is not None:
        ref = {"version": args.at_version}
    if getattr(args, "at_tag", None):
        ref = {"tag": args.at_tag}
    if getattr(args, "at_text", None):
        ref = parse_ref(args.at_text)
    branch = getattr(args, "branch", None)
    if branch:
        if ref and "version" not in ref:
            kind = "a tag" if "tag" in ref else "a time"
            raise UsageError(f"--at {kind} names a point of its own; with --branch give --at N, a version of "
                             "that branch")
        ref["branch"] = branch
    return ref


def table_at(client: Client, args: argparse.Namespace, name: str | None = None) -> Table:
    """The table the command reads, at the ref its options name (read-only when one is named)."""
    table = client.table(name or args.table)
    ref = ref_of(args)
    return table.at(**ref) if ref else table


def writable_table(client: Client, args: argparse.Namespace) -> Table:
    """The table the command writes to: main, or ``--branch B``."""
    table = client.table(args.table)
    return table.branch(args.branch) if getattr(args, "branch", None) else table


# -- filters, notes, values ------------------------------------------------------------------------
def add_filter(parser: argparse.ArgumentParser, *, required: bool = False, what: str = "only rows matching") -> None:
    parser.add_argument("--filter", "-f", metavar="EXPR", required=required,
                        help=f"{what} this SQL filter, e.g. \"label = 3 AND split = 'test'\"")


def filter_of(args: argparse.Namespace) -> str | None:
    """The ``--filter`` (or the positional filter ``query`` also takes); ``-f csv`` is the old spelling
    of ``--format csv``, and is told so."""
    given = [f for f in (getattr(args, "filter", None), getattr(args, "filter_text", None)) if f]
    if len(given) > 1:
        raise UsageError("give the filter once: as --filter EXPR, or as the FILTER argument")
    text = given[0] if given else None
    if text in FORMATS:
        raise UsageError(f"-f is --filter; for the output format give --format {text}")
    return text


def add_note(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--message", "-m", help="kept with the version in the log (default: what it did)")
    parser.add_argument("--author", help="kept with the version in the log (default: your user name)")


def note(args: argparse.Namespace) -> dict[str, str | None]:
    """The message and author a write is logged with: the author is who runs the command."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return {"message": args.message, "author": args.author or user}


def column_list(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def assignment(text: str) -> tuple[str, object]:
    """``COLUMN=VALUE`` of ``--set``: VALUE is JSON, or else taken as text."""
    column, sep, value = text.partition("=")
    if not sep or not column:
        raise UsageError(f"--set takes COLUMN=VALUE, got {text!r}")
    try:
        return column, json.loads(value)
    except ValueError:
        return column, value
