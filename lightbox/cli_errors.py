"""How the ``lightbox`` command ends: one line on stderr and a documented exit status, never a traceback.

Every subcommand's handler runs through ``run``; ``explain`` is the one place an exception becomes a
message and an exit status (``docs/cli.md``, "Exit codes"):

- ``0`` done; ``1`` ``show`` did not find every id it was given;
- ``2`` an error: bad arguments, or a request that was refused or failed (no such table, ref or row,
  a bad filter, a conflict, a file that cannot be read or written, a data root that does not exist,
  an object store that refuses the credentials or has no such bucket);
- ``3`` unreachable: the service or the object store did not answer (retrying later may help);
- ``130`` interrupted; ``141`` the reader of the output went away (``| head``): quiet, as git is.

An error nobody foresaw still prints one line (with a hint to set ``LIGHTBOX_DEBUG=1``, which lets
the traceback through). Messages from a data root go through ``app.storage.redact`` first, so its
credentials never reach the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable

OK, NOT_ALL_FOUND, ERROR, UNREACHABLE, INTERRUPTED, CLOSED_PIPE = 0, 1, 2, 3, 130, 141
EXIT_CODES = (OK, NOT_ALL_FOUND, ERROR, UNREACHABLE, INTERRUPTED, CLOSED_PIPE)
MESSAGE_CHARS = 400  # an engine message longer than this is cut: the rest is debug output
_RUST_LOCATION = re.compile(r",?\s*/\S+\.rs:\d+:\d+")
_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")
_USERINFO = re.compile(r"://[^/@\s]*@")


def run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one command to its exit status. stdout is flushed here, so a reader that went away is noticed
    here too, not in the interpreter's last flush (which would print "Exception ignored ...")."""
    try:
        code = handler(args)
    except BrokenPipeError:
        _silence_stdout()
        return CLOSED_PIPE
    except KeyboardInterrupt:
        code = INTERRUPTED
    except Exception as exc:
        if os.environ.get("LIGHTBOX_DEBUG"):
            raise
        code, message = explain(exc, args)
        with contextlib.suppress(BrokenPipeError):  # stderr gone too: the status still tells
            print(f"lightbox: error: {_redact(message, args)}", file=sys.stderr)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return CLOSED_PIPE if code == OK else code
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what is still buffered succeeds
    quietly (Python's own advice for SIGPIPE); a stdout without a file descriptor is left alone."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def explain(exc: BaseException, args: argparse.Namespace) -> tuple[int, str]:
    """The exit status and the one-line message for an exception a command raised."""
    from lightbox.cli_read import UsageError
    from lightbox.errors import LightboxError as ClientError
    from lightbox.errors import Unreachable
    from lightbox.extras import MissingExtra

    if isinstance(exc, Unreachable):
        return UNREACHABLE, _service_unreachable(exc, args)
    if isinstance(exc, ClientError) and exc.code == "storage_unreachable":  # the service's storage did not answer
        return UNREACHABLE, str(exc)
    if isinstance(exc, ClientError | MissingExtra | UsageError):
        return ERROR, str(exc)
    if not getattr(args, "server", None):
        from app.storage import storage_failure
        from lightbox.cli import _env_uri

        failure = storage_failure(exc, getattr(args, "uri", None) or _env_uri())
        if failure is not None:
            return (UNREACHABLE if failure.unreachable else ERROR), failure.message
    if _server_side(exc):
        return ERROR, str(exc)
    if isinstance(exc, OSError) and exc.filename:
        return ERROR, f"{exc.filename}: {exc.strerror or exc}"
    return ERROR, (f"unexpected {type(exc).__name__}: {_first_line(str(exc))} "
                   "(set LIGHTBOX_DEBUG=1 to see where; please report it)")


def _server_side(exc: BaseException) -> bool:
    """The service's own refusals (a bad filter, no such table, a side file that cannot be used, an
    unknown model). Looked up only if their modules were imported: an error of theirs implies they were,
    and a command that only talks HTTP never imports the service."""
    names = (("app.errors", "LightboxError"), ("ingest.tables", "SideFileError"), ("embeddings.registry",
                                                                                    "UnknownModel"))
    types = [getattr(sys.modules.get(module), name, None) for module, name in names]
    return any(isinstance(exc, t) for t in types if isinstance(t, type))


def _service_unreachable(exc: BaseException, args: argparse.Namespace) -> str:
    detail = getattr(exc, "detail", None) or {}
    reason = _ERRNO.sub("", str(detail.get("reason") or "no answer")).strip() or "no answer"
    url = getattr(args, "server", None) or detail.get("url") or "the service"
    return (f"cannot reach the Lightbox service at {url} ({reason.lower()}): check the URL, and that "
            "`lightbox serve` is running there and reachable from here")


def _first_line(text: str) -> str:
    line = _RUST_LOCATION.sub("", text.strip().splitlines()[0] if text.strip() else "")
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 3] + "..."


def _redact(message: str, args: argparse.Namespace) -> str:
    """The message without credentials: URI user info always, and a data root's secret options."""
    if getattr(args, "server", None):
        return _USERINFO.sub("://***@", message)
    from app.storage import redact
    from lightbox.cli import _storage_options

    try:
        secrets = _storage_options(args)
    except Exception:  # unreadable settings: still print the error, with URI credentials removed
        secrets = {}
    return redact(message, secrets)
