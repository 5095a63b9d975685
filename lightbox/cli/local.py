"""What runs the service's own code on a data root in this process, not through the SDK: ``serve``,
``demo`` and ``doctor`` (a walk of a root's files), ``ingest`` on a data root and ``--engine ray``
(a Ray job on a data root).

These need the service installed (``pip install 'lightbox[server]'``): without it they end in one
line naming that command. Their errors are told as the service tells them: an object store's
failure in one line, and never a credential of the root's storage options.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lightbox.cli.common import add_target, check_root, data_root, shown_root, storage_options
from lightbox.cli.errors import OK, StoreFailure

__all__ = ["data_root_errors", "gallery_url", "on_data_root", "open_store", "ray_embed", "register"]

SERVER = "server"  # the extra that brings the service, ingest and Lance


def register(sub: Any) -> None:
    """Add ``serve``, ``demo`` and ``doctor`` to the ``lightbox`` parser."""
    srv = sub.add_parser("serve", help="serve the HTTP API and the gallery over a data root")
    add_target(srv, remote=False)
    srv.add_argument("--host", default=None, help="the address to listen on (default $LIGHTBOX_HOST, else 127.0.0.1)")
    srv.add_argument("--port", type=int, default=None, help="the port (default $LIGHTBOX_PORT, else 8000)")
    srv.set_defaults(handler=_serve)

    doc = sub.add_parser("doctor", help="check every table, version, branch, clone and tag of a data root; "
                         "--repair what can be repaired without losing anything")
    add_target(doc, remote=False)
    doc.add_argument("--repair", action="store_true",
                     help="point base paths recorded elsewhere (a moved or copied root) at this root, delete "
                          "guard tags of dropped clones and unreadable version notes")
    doc.add_argument("--sample", type=int, default=32, metavar="N",
                     help="images per branch head read back and checked against their sha256 (0: every one)")
    doc.set_defaults(handler=on_data_root(_doctor))

    demo = sub.add_parser("demo", help="build sample tables from bundled real images and serve them")
    add_target(demo, remote=False)
    demo.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="the port (default 8000)")
    demo.add_argument("--no-serve", action="store_true", help="build the tables and exit")
    demo.set_defaults(handler=on_data_root(_demo))


def _need_service(what: str) -> None:
    from lightbox.extras import need

    need("app.main", SERVER, what)


@contextmanager
def data_root_errors(args: argparse.Namespace, what: str | None = None) -> Iterator[None]:
    """Around work on a data root in this process: the service must be installed; an object store's
    failure becomes one line, and every message loses the root's secrets (``args.redact``)."""
    _need_service(what or f"`lightbox {args.command}` on a data root")
    from app.storage import redact, storage_failure

    secrets = _settings(args).resolved_storage_options()
    args.redact = lambda text: redact(text, secrets)
    try:
        yield
    except Exception as exc:
        failure = storage_failure(exc, data_root(args))
        if failure is None:
            raise
        raise StoreFailure(failure.message, unreachable=failure.unreachable) from exc


def on_data_root(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``handler`` run inside ``data_root_errors``."""

    def run(args: argparse.Namespace) -> int:
        with data_root_errors(args):
            return handler(args)

    return run


def _settings(args: argparse.Namespace) -> Any:
    """The service's settings for this root: the environment's, with ``--storage-option`` pairs over them."""
    from app.settings import Settings

    overrides = {k: v for k, v in (("uri", getattr(args, "uri", None)), ("host", getattr(args, "host", None)),
                                   ("port", getattr(args, "port", None))) if v}
    return Settings(**overrides).with_storage_options(storage_options(args))


def open_store(args: argparse.Namespace, *, create: bool = False, **options: Any) -> Any:
    """The data root's ``Store``; one that must already exist (all but ingest and demo) is checked."""
    from app.store import Store

    root = data_root(args)
    if not create:
        check_root(root)
    return Store(root, storage_options=_settings(args).resolved_storage_options() or None, **options)


def ray_embed(args: argparse.Namespace) -> dict[str, Any]:
    """``embed --engine ray``: one Ray task per fragment computes its vectors; one version."""
    from lightbox.cli.common import note

    with data_root_errors(args):
        from ingest.ray_engine import run_ray_embed

        return run_ray_embed(open_store(args), args.table, args.model, source=args.source,  # type: ignore[no-any-return]
                             column=args.column, address=args.address, **note(args))


def ray_ingest(args: argparse.Namespace) -> Any:
    """``ingest --engine ray``: Ray workers write the table's fragments on the data root; one version."""
    with data_root_errors(args, "`lightbox ingest --engine ray`"):
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
        store = open_store(args, create=True)
        report = run_ray_ingest(store, opts, args.address)
        report.root = shown_root(store.uri)
        return report


def _serve(args: argparse.Namespace) -> int:
    _need_service("`lightbox serve`")
    import uvicorn

    from app.main import create_app
    from app.serving import server_config

    settings = _settings(args)
    if settings.access_log is None:  # uvicorn's line, written by the service in batches (app/access_log.py)
        settings = settings.model_copy(update={"access_log": "text"})
    print(f"Gallery: {gallery_url(settings.host, settings.port)}  (API docs at /docs)", flush=True)
    config = server_config(create_app(settings), settings, log_level="info", access_log=False)
    uvicorn.Server(config).run()
    return OK


def gallery_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the gallery (a wildcard bind is reached on loopback)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/"


def _doctor(args: argparse.Namespace) -> int:
    """One line per problem on stdout (``repaired: `` before what was repaired), the summary on stderr;
    exit 1 while a problem is left. The store does not point bases itself here: doctor reports them."""
    import sys

    from app.services.doctor import doctor

    out = doctor(open_store(args, relocate=False), repair=args.repair, sample=args.sample)
    for problem in out.problems:
        print(("repaired: " if problem.repaired else "") + problem.line(), flush=True)
    print(out.summary(), file=sys.stderr)
    return OK if out.healthy else 1


def _demo(args: argparse.Namespace) -> int:
    from app.services.tables import list_tables
    from lightbox.cli.summaries import ingest_summary
    from lightbox.demo import build_demo

    store = open_store(args, create=True)
    built = build_demo(store)
    found = {t["name"]: t for t in list_tables(store)}
    for name, report in built.items():
        if report is None:
            print(f"{name}: found at version {found[name]['version']} ({found[name]['num_rows']} rows), "
                  "kept as it is", end="\n\n")
        else:
            print(ingest_summary({**report.to_dict(), "root": shown_root(store.uri)}), end="\n\n")
    if args.no_serve:
        print(f"Serve it with `lightbox serve --uri {data_root(args)}` and open the gallery at "
              f"{gallery_url(args.host, args.port)}")
        return OK
    args.uri = data_root(args)
    return _serve(args)
