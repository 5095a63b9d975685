"""The upload use case: images (with metadata) into a table, one version per upload.

A session (``Uploads``: begin, batches, commit or abort) takes any number of batches and commits
them as one version; ``add_images`` is a session of one batch, for ``POST /rows`` and the LanceDB
protocol's writes. Both run the same checks on every row (``rows``) and the same commit
(``app.store.staging``).
"""

from app.services.uploads.oneshot import add_images, refuse_nothing_written
from app.services.uploads.options import UploadOptions
from app.services.uploads.registry import Uploads
from app.services.uploads.session import RowsRefused, UploadClosed, UploadNotFound
from app.services.uploads.wire import arrow_rows, files_table, meta_for

__all__ = ["RowsRefused", "UploadClosed", "UploadNotFound", "UploadOptions", "Uploads", "add_images", "arrow_rows",
           "files_table", "meta_for",
           "refuse_nothing_written"]
