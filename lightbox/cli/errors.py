"""How the ``lightbox`` command ends: one line on stderr and a documented exit status, never a traceback.

Every subcommand's handler runs through ``run``; ``explain`` is the one place an exception becomes a
message and an exit status (``docs/cli.md``, "Exit codes"):

- ``0`` done; ``1`` ``row`` did not find every id it was given;
- ``2`` an error: bad arguments, or a request that was refused or failed (no such table, ref or row,
  a bad filter, a conflict, a file that cannot be read or written, a data root that does not exist,
  an object store that refuses the credentials or has no such bucket, a missing optional dependency);
- ``3`` unreachable: the service or the object store did not answer (retrying later may help);
- ``130`` interrupted; ``141`` the reader of the output went away (``| head``): quiet, as git is.

Commands are SDK calls, on a service (``--server``) or on a data root served in this process
(``--uri``), so almost every failure arrives as the SDK's ``LightboxError``; the service has already
told object-store failures in one line and removed credentials from every message. An error nobody
foresaw still prints one line (with a hint to set ``LIGHTBOX_DEBUG=1``, which lets the traceback
through).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Callable

__all__ = ["EXIT_CODES", "StoreFailure", "UsageError", "explain", "run"]

OK, NOT_ALL_FOUND, ERROR, UNREACHABLE, INTERRUPTED, CLOSED_PIPE = 0, 1, 2, 3, 130, 141
EXIT_CODES = (OK, NOT_ALL_FOUND, ERROR, UNREACHABLE, INTERRUPTED, CLOSED_PIPE)
MESSAGE_CHARS = 400  # an engine message longer than this is cut: the rest is debug output
STORE_UNREACHABLE = "store_unreachable"  # the service's code for an object store that did not answer
_RUST_LOCATION = re.compile(r",?\s*/\S+\.rs:\d+:\d+")
_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")
_USERINFO = re.compile(r"://[^/@\s]*@")
# The service's own refusals, when a data-root-only command (ingest, doctor, --engine ray) runs its code
# here. Looked up only if their modules were imported: an error of theirs implies they were.
_SERVICE_ERRORS = (("app.errors", "LightboxError"), ("ingest.tables", "SideFileError"),
                   ("embeddings.registry", "UnknownModel"))


class UsageError(ValueError):
    """Arguments that do not make a request; printed as one line."""


class StoreFailure(Exception):
    """A data-root command's object store refused or did not answer (``unreachable``), told in one line."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


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
        redact = getattr(args, "redact", None)  # a data-root command's own: its storage options' secrets
        message = redact(message) if redact else message
        with contextlib.suppress(BrokenPipeError):  # stderr gone too: the status still tells
            print(f"lightbox: error: {_USERINFO.sub('://***@', message)}", file=sys.stderr)
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
    from lightbox.errors import LightboxError as ClientError
    from lightbox.errors import Unreachable
    from lightbox.extras import MissingExtra

    if isinstance(exc, Unreachable):
        return UNREACHABLE, _service_unreachable(exc, args)
    if isinstance(exc, ClientError):
        return _refused(exc, args)
    if isinstance(exc, StoreFailure):
        return (UNREACHABLE if exc.unreachable else ERROR), str(exc)
    if isinstance(exc, MissingExtra | UsageError) or _service_error(exc):
        return ERROR, str(exc)
    if isinstance(exc, OSError) and exc.filename:
        return ERROR, f"{exc.filename}: {exc.strerror or exc}"
    return ERROR, _unexpected(str(exc), type(exc).__name__)


def _refused(exc: BaseException, args: argparse.Namespace) -> tuple[int, str]:
    """A request the service (or the app in this process) refused or failed. A service's message keeps
    its status and request id (they find the request in its log); in-process ones have no log to find."""
    from lightbox._inprocess import AppError

    code = ERROR if getattr(exc, "code", None) != STORE_UNREACHABLE else UNREACHABLE
    cause = exc.__cause__
    if isinstance(cause, AppError):  # what the app in this process raised: nobody else will tell it
        return code, _unexpected(str(cause))
    return code, (str(exc) if getattr(args, "server", None) else str(getattr(exc, "message", exc)))


def _unexpected(text: str, kind: str | None = None) -> str:
    return (f"unexpected {kind + ': ' if kind else ''}{_first_line(text)} "
            "(set LIGHTBOX_DEBUG=1 to see where; please report it)")


def _service_error(exc: BaseException) -> bool:
    types = [getattr(sys.modules.get(module), name, None) for module, name in _SERVICE_ERRORS]
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
