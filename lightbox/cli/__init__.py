"""The ``lightbox`` command: one client of the service, like the SDK it is made of.

Each command is a few SDK calls on one ``Client`` (``lightbox.cli.common.open_client``): over HTTP
with ``--server URL``, or on a data root with ``--uri`` (served by the service's own app in this
process), so the two run the same code. Only ``serve``, ``demo``, ``doctor``, ``ingest`` on a data
root and ``--engine ray`` run the service's code directly (``lightbox.cli.local``).

The commands live in one module per area (``tables``, ``rows``, ``history``, ``io``,
``maintenance``, ``curate``, ``local``); each module registers its parsers with a ``handler``, and every
handler ends in ``lightbox.cli.errors.run``: one line on stderr and a documented exit status.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

__all__ = ["build_parser", "commands", "main"]


def build_parser() -> argparse.ArgumentParser:
    from lightbox import __version__
    from lightbox.cli import curate, history, io, local, maintenance, rows, tables

    parser = argparse.ArgumentParser(prog="lightbox", description="Versioned image tables on Lance.")
    parser.add_argument("--version", action="version", version=f"lightbox {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for area in (io, tables, rows, history, maintenance, curate, local):
        area.register(sub)
    return parser


def commands(parser: argparse.ArgumentParser | None = None) -> dict[str, tuple[str, ...]]:
    """Each subcommand's name and its aliases (``{"log": ("versions",), ...}``), in the parser's order."""
    action = next(a for a in (parser or build_parser())._actions if isinstance(a, argparse._SubParsersAction))
    names: dict[int, list[str]] = {}
    for name, sub in action.choices.items():  # a name comes before its aliases
        names.setdefault(id(sub), []).append(name)
    return {found[0]: tuple(found[1:]) for found in names.values()}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``lightbox`` command; every failure ends in ``errors.run`` (one line, a documented status)."""
    from lightbox.cli.errors import run

    os.environ.setdefault("LANCE_LOG", "error")
    args = build_parser().parse_args(argv)
    return run(args.handler, args)
