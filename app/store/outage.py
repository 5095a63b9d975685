"""An object store that does not answer, told apart from every other engine error.

Lance reports a store it cannot reach as a plain ``ValueError``, ``OSError`` or pyarrow error whose
text carries the transport's complaint, after its own retries, e.g. "LanceError(IO): Generic S3
error: Error performing list request: ... after 3 retries, max_retries: 3, retry_timeout: 180s -
HTTP error: error sending request" (pylance 14.0.2 against a stopped S3 server). The failure can
surface from any engine call. Often it is re-raised on the way as a 404, 409 or 400 (``raise ...
from exc``). So the service's error handlers look along the exception's chain, and answer 503
``store_unreachable`` when a store failure is in it.

The wait before that answer is bounded by the storage options ``Store`` adds on object storage
unless given: ``connect_timeout`` and ``client_retry_timeout`` (Lance's default retry budget is
180 s).
"""

from __future__ import annotations

from app.errors import StoreUnreachable

# the transport's words, lower-cased (object_store / reqwest / hyper, as Lance passes them on)
TRANSPORT_FAILURES = (
    "error sending request", "connection refused", "connection reset", "dns error", "failed to lookup address",
    "timed out", "tcp connect error", "broken pipe", "connection closed before message completed",
)
# what Lance says around them, so that a user's own text (a filter, an id) is never mistaken for one
# (pylance's display form, and lancedb's debug form: "IO { source: Generic { store: "S3", ... RetryError ...")
ENGINE_MARKERS = ("lanceerror(io)", "http error", "httperror", "retryerror", "object_store", "generic s3 error",
                  "generic gcs error", "generic microsoftazure error", "error performing")
# Lance's own retry budget on object storage, when the data root's options do not say (seconds/durations)
STORE_DEFAULTS = {"connect_timeout": "5s", "client_retry_timeout": "20"}


def store_failure(exc: BaseException | None) -> BaseException | None:
    """The engine error along ``exc``'s chain (itself, its causes and contexts) that says the store did
    not answer, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).lower()
        if any(m in text for m in ENGINE_MARKERS) and any(f in text for f in TRANSPORT_FAILURES):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def unreachable(exc: BaseException) -> StoreUnreachable | None:
    """The 503 to answer instead of ``exc`` when the object store did not answer; else None."""
    if isinstance(exc, StoreUnreachable):
        return exc
    failure = store_failure(exc)
    if failure is None:
        return None
    return StoreUnreachable("the data root's object store did not answer; try again later",
                            reason=str(failure).split(", /")[0][:300])
