"""Storage options for a data root on object storage, and keeping their secrets out of logs and errors.

Lance takes the same ``storage_options`` dict for every URI scheme (``s3://``, ``gs://``, ``az://``)
and also reads the cloud's own environment variables (``AWS_*`` ...) when a key is not given. The
dict carries credentials, so anything that may print a URI, an option or an engine message goes
through ``redact`` first.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

# Option names whose values are secrets (matched as substrings of the lower-cased key).
SECRET_MARKERS = ("secret", "password", "token", "key", "credential", "sas", "signature")
# Keys that name a secret but are not one.
NOT_SECRET = frozenset({"aws_access_key_id", "access_key_id", "google_service_account_key_path"})
REDACTED = "***"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)(?::[^/@\s]*)?@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:sig|signature|token|x-amz-signature|x-amz-security-token|sv)=)[^&\s]+")


def root_uri(uri: str) -> str:
    """The one spelling of a data root, applied wherever a root enters (settings, ``--uri``, ``Store``).

    A local root becomes an absolute path (``file://`` and ``~`` resolved, relative paths taken from
    the current directory), and no root keeps a trailing slash. Lance records the location a branch or
    clone was made from as it was given, and resolves a relative one against whatever directory the
    reading process runs in, so only an absolute location reads the same from any directory.
    """
    text = str(uri).strip()
    if not text:
        raise ValueError("the data root (--uri / LIGHTBOX_URI) is empty")
    if text.lower().startswith("file://"):
        text = unquote(text[len("file://"):]) or "/"
    elif "://" in text:
        scheme, _, rest = text.partition("://")
        rest = rest.rstrip("/")
        if not rest:
            raise ValueError(f"the data root {redact(text)!r} names no bucket or container")
        return f"{scheme.lower()}://{rest}"
    return os.path.abspath(os.path.expanduser(text))


def is_secret(key: str) -> bool:
    lower = key.lower()
    return lower not in NOT_SECRET and any(marker in lower for marker in SECRET_MARKERS)


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` (from ``--storage-option``) -> a dict with lower-cased keys."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"a storage option is KEY=VALUE, not {redact(pair)!r}")
        options[key.strip().lower()] = value
    return options


def normalise(options: Mapping[str, object] | None) -> dict[str, str]:
    """Lance wants string values; JSON settings may carry booleans and numbers."""
    out: dict[str, str] = {}
    for key, value in (options or {}).items():
        if value is None:
            continue
        out[str(key).lower()] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def redact(text: str, options: Mapping[str, str] | None = None) -> str:
    """``text`` with credentials removed: secret option values, ``user:password@`` in URIs and signed
    query parameters. Used on every message that might carry a URI or an engine error."""
    for key, value in (options or {}).items():
        if value and len(value) >= 4 and is_secret(key):
            text = text.replace(value, REDACTED)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def shown_options(options: Mapping[str, str] | None) -> dict[str, str]:
    """The options as they may be shown: secret values replaced."""
    return {k: REDACTED if is_secret(k) else v for k, v in (options or {}).items()}


class RedactingFilter(logging.Filter):
    """A log filter that removes the data root's secrets from every record it passes."""

    def __init__(self, options: Mapping[str, str] | None) -> None:
        super().__init__()
        self.options = dict(options or {})

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.options)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted, self.options)
        return True


def redact_body(body: dict, options: Mapping[str, str] | None) -> dict:
    """An error body with the message redacted (the detail holds names and numbers we built)."""
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return {**body, "error": {**error, "message": redact(error["message"], options)}}
    return body


# a logger's filters see only its own records, so each logger that can print a URI or an error is named
LOGGERS = ("lightbox", "lightbox.vectors", "lightbox.access", "uvicorn", "uvicorn.error", "uvicorn.access")


def hide_secrets(options: Mapping[str, str] | None) -> None:
    """Install a ``RedactingFilter`` for these options on the service's loggers (once per set of secrets):
    when one is a secret, or a value is a URL with a password in it (``http://user:pw@host``)."""
    if not any(is_secret(k) or _USERINFO.search(str(v)) for k, v in (options or {}).items()):
        return
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) and f.options == dict(options or {}) for f in logger.filters):
            logger.addFilter(RedactingFilter(options))


# -- an object store's failures, told in one line ----------------------------------------------------
_STORE_ERROR = re.compile(r'Generic \w+ error|store: "\w+"|object[_ ]store', re.IGNORECASE)
_STORE_CODE = re.compile(r"<Code>(\w+)</Code>")
_HTTP_STATUS = re.compile(r"status(?: code)?: (\d{3})")
_ENDPOINT = re.compile(r"\b(https?://[^/\s?)\"]+)")
_NO_ANSWER = ("error sending request", "connection refused", "dns error", "failed to lookup address", "timed out",
              "connection reset", "tcp connect error")
_NO_BUCKET = frozenset({"NoSuchBucket", "ContainerNotFound"})
_DENIED = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken",
                     "AuthorizationHeaderMalformed", "AuthenticationFailed", "AuthorizationFailure"})


@dataclass(frozen=True)
class StorageFailure:
    """What went wrong between Lance and an object store: ``kind`` is ``no_bucket``, ``denied``,
    ``unreachable`` or ``refused`` (any other error answer); ``message`` says it in one line."""

    kind: str
    message: str

    @property
    def unreachable(self) -> bool:
        return self.kind == "unreachable"


def storage_failure(exc: BaseException, root: str | None = None) -> StorageFailure | None:
    """An engine error that is the object store's answer (or its silence), told for the data root
    ``root``; ``None`` for any other error. Lance reports these as ``ValueError``/``OSError`` whose text
    carries the store's error code and status; the text is read along the ``raise ... from`` chain, so a
    store error the store layer re-raised as something else is still recognised."""
    text = "\n".join(str(e) for e in _chain(exc))
    if not _STORE_ERROR.search(text):
        return None
    code = next(iter(_STORE_CODE.findall(text)), None)
    status = next(iter(_HTTP_STATUS.findall(text)), None)
    endpoint = next(iter(_ENDPOINT.findall(text)), None)
    at = f" at {endpoint}" if endpoint else ""
    where = f" for {root}" if root else ""
    if code in _NO_BUCKET or (code is None and status == "404" and "bucket" in text.lower()):
        bucket = urlsplit(root).netloc if root and "://" in root else "of the data root"
        return StorageFailure("no_bucket", f"the bucket {bucket!r}{where} does not exist{at}: check the URI "
                                           "(and the storage endpoint)")
    if code in _DENIED or (code is None and status in ("401", "403")):
        return StorageFailure("denied", f"the object store{at} refused the credentials{where} ({code or status}): "
                                        "check the access key and secret (--storage-option, "
                                        "LIGHTBOX_STORAGE_OPTIONS, or the cloud's own environment variables)")
    if status is None and any(marker in text.lower() for marker in _NO_ANSWER):
        return StorageFailure("unreachable", f"cannot reach the object store{at}{where}: it did not answer; check "
                                             "the storage endpoint and the network")
    if status is not None or code is not None:
        answer = " ".join(x for x in (status, code) if x)
        return StorageFailure("refused", f"the object store{at} answered {answer}{where}")
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
