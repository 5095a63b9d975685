"""The Lightbox SDK: a small httpx client mirroring the native HTTP API (``API.md`` §2 and §4).

>>> client = Client("http://127.0.0.1:8000")
>>> t = client.table("digits")
>>> t.count("label = 3")
183
>>> v1 = t.at(tag="v1")          # pinned, read-only
>>> v1.image("3/00003.png").size
(8, 8)

One ``httpx.Client`` per ``Client`` (connections are reused); idempotent calls (GET, PUT, DELETE and
the POST reads ``/query``, ``/fetch``, ``/search``) are retried with backoff on 429, 502, 503 and on
transport errors; writes are sent once. Every failure is a ``lightbox.LightboxError``.
``AsyncClient`` (``lightbox.async_client``) has the same calls, awaited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from os import PathLike
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pyarrow as pa

from lightbox import _calls
from lightbox._calls import ImageSource, TableCalls
from lightbox._wire import (
    ArrowStreamDecoder,
    Call,
    Options,
    Plan,
    Rebatcher,
    RefValue,
    TableInfo,
    error_from,
    new_request_id,
    one_ref,
    retryable,
    unreachable,
)
from lightbox.errors import Conflict, LightboxError
from lightbox.extras import need

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from PIL import Image

    from ingest.report import IngestReport
    from lightbox.torch import TableDataset

__all__ = ["Client", "Table", "TableInfo", "connect"]
T = TypeVar("T")


class Client:
    """A connection to one Lightbox service. Use it as a context manager, or ``close()`` it.

    >>> with lightbox.Client("http://127.0.0.1:8000", api_key="KEY") as client:
    ...     [t.name for t in client.tables()]
    ['digits', 'samples']
    """

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.25, transport: httpx.BaseTransport | None = None) -> None:
        self.options = Options(url.rstrip("/"), api_key, timeout, retries, backoff)
        self._http = httpx.Client(base_url=self.options.url, headers=self.options.headers(),
                                  timeout=self.options.timeouts(), transport=transport)

    @property
    def url(self) -> str:
        return self.options.url

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    # -- the one place requests are sent ---------------------------------------------------
    def _exchange(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        """Send ``call`` (retrying if it is idempotent); error statuses become ``LightboxError``s."""
        request_id = new_request_id()
        attempts = self.options.attempts(call)
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            try:
                response = self._http.send(call.build(self._http, request_id), stream=stream)
            except httpx.TransportError as exc:
                if last:
                    raise unreachable(exc, self.url, request_id) from exc
                time.sleep(self.options.delay(attempt, None))
                continue
            if response.status_code < 400:
                return response
            response.read()
            response.close()
            if retryable(response) and not last:
                time.sleep(self.options.delay(attempt, response))
                continue
            raise error_from(response, request_id)
        raise AssertionError("unreachable")

    def _run(self, plan: Call[T] | Plan[T]) -> T:
        """Run a call, or a plan of calls (each result is sent back into the plan)."""
        if isinstance(plan, Call):
            return plan.parse(self._exchange(plan))
        try:
            call = next(plan)
            while True:
                try:
                    result = call.parse(self._exchange(call))
                except LightboxError as exc:
                    call = plan.throw(exc)
                else:
                    call = plan.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    @contextmanager
    def _stream(self, call: Call[Any]) -> Iterator[Iterator[bytes]]:
        response = self._exchange(call, stream=True)
        try:
            yield response.iter_bytes()
        except httpx.TransportError as exc:
            raise unreachable(exc, self.url, response.headers.get("x-request-id", "")) from exc
        finally:
            response.close()

    # -- tables ----------------------------------------------------------------------------
    def tables(self) -> list[TableInfo]:
        """Every table with its latest version and row count."""
        return self._run(_calls.list_tables())

    def table(self, name: str) -> Table:
        """A handle on ``name`` at main's latest (nothing is sent until a call is made)."""
        return Table(self, name)

    def create_table(self, name: str, schema: pa.Schema | Sequence[Mapping[str, Any]] | None = None, *,
                     exist_ok: bool = False) -> Table:
        """An empty image table (plus extra columns ``[{"name": "label", "type": "int64"}]`` or a ``pa.Schema``)."""
        try:
            self._run(_calls.create_table(name, schema))
        except Conflict:
            if not exist_ok:
                raise
        return Table(self, name)

    def drop_table(self, name: str) -> None:
        """Delete a table and its history."""
        self._run(_calls.drop_table(name))

    def clone(self, source: str, name: str, *, version: int | None = None, tag: str | None = None,
              branch: str | None = None, as_of: datetime | str | None = None, message: str | None = None,
              author: str | None = None) -> Table:
        """A new table sharing ``source``'s files at a ref (latest by default); no bytes are copied.

        >>> client.clone("digits", "digits-copy", tag="v1").count()
        1797
        """
        self._run(_calls.clone(source, name, one_ref(version=version, tag=tag, branch=branch, as_of=as_of),
                                    message, author))
        return Table(self, name)


class Table:
    """One table: at main's latest (writable), on a branch (writable), or pinned with ``at(...)`` (read-only).

    >>> t = client.table("digits")
    >>> t.query("label = 3", columns=["id", "ink"], limit=2).to_pylist()
    [{'id': '3/00003.png', 'ink': 4.172}, {'id': '3/00013.png', 'ink': 5.016}]
    """

    def __init__(self, client: Client, name: str, ref: Mapping[str, Any] | None = None, *,
                 writable: bool | None = None) -> None:
        self.client = client
        self.name = name
        self.ref: dict[str, Any] = dict(ref or {})
        self._calls = TableCalls(name, dict(self.ref), not self.ref if writable is None else writable)

    def __repr__(self) -> str:
        pinned = "".join(f", {k}={v!r}" for k, v in self.ref.items())
        return f"Table({self.name!r}{pinned}{'' if self.writable else ', read_only'})"

    @property
    def writable(self) -> bool:
        """False for handles from ``at(...)``: their writes raise ``ReadOnly``."""
        return self._calls.writable

    def _run(self, plan: Call[T] | Plan[T]) -> T:
        return self.client._run(plan)

    # -- refs ------------------------------------------------------------------------------
    def at(self, *, version: int | None = None, tag: str | None = None, branch: str | None = None,
           as_of: datetime | str | None = None) -> Table:
        """A read-only handle on one point of history; writes through it raise ``ReadOnly``.

        Reads at a version, a tag or a past ``as_of`` never change; ``at(branch=...)`` follows the
        branch's latest, and ``at(version=2, branch=...)`` reads a version of the branch (each branch
        numbers its own versions). ``pin()`` turns a latest or an ``as_of`` into its version number.

        >>> v1 = t.at(tag="v1"); t.at(version=3); t.at(as_of=datetime(2025, 1, 1, tzinfo=UTC))
        """
        ref = one_ref(version=version, tag=tag, branch=branch, as_of=as_of)
        if not ref:
            raise ValueError("give one of version, tag, branch, as_of")
        return Table(self.client, self.name, ref, writable=False)

    def branch(self, name: str) -> Table:
        """A writable handle on an existing branch: reads see its latest, writes go to it."""
        return Table(self.client, self.name, {"branch": name}, writable=True)

    def pin(self) -> Table:
        """A read-only handle on the exact version this handle reads now (latest or ``as_of`` resolved)."""
        return Table(self.client, self.name, self._run(self._calls.pin()), writable=False)

    # -- reads -----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Version, row count, schema, tags, branches, indexes and embeddings."""
        return self._run(self._calls.info())

    def describe(self) -> dict[str, Any]:
        """``info()`` plus what costs more to gather: each branch's head (``version``, ``num_rows``), the
        number of ``versions``, each index with its tuning, and the table's ``size`` in storage
        (``bytes``, ``files``, ``parts``: data, indexes, versions, deletions, branches, ...).

        >>> t.describe()["size"]["bytes"]
        212992
        """
        return self._run(self._calls.describe())

    def get(self, row_id: str) -> dict[str, Any]:
        """One row as a dict (no image bytes, no vectors), plus ``image_url``: ``t.get("3/00003.png")["label"]``."""
        return self._run(self._calls.get(row_id))

    def image_bytes(self, row_id: str) -> bytes:
        """The original file bytes, exactly as ingested."""
        return self._run(self._calls.image_bytes(row_id))

    def image(self, row_id: str) -> Image.Image:
        """The image as a ``PIL.Image.Image``: ``t.image("3/00003.png").size`` -> ``(8, 8)``."""
        return self._run(self._calls.image(row_id))

    def array(self, row_id: str, frame: int | None = None) -> np.ndarray:
        """The decoded pixels as a numpy array, dtype and shape preserved (16-bit stays uint16; pages first;
        ``frame`` picks one frame or page, 0-based).

        >>> samples.array("skimage/camera_uint16.tif").dtype
        dtype('uint16')
        """
        return self._run(self._calls.array(row_id, frame))

    def thumbnail(self, row_id: str, size: int = 256, format: str | None = None) -> bytes:
        """A small JPEG/PNG/WebP rendering of any image (``format`` picks one)."""
        return self._run(self._calls.thumbnail(row_id, size, format))

    def fetch(self, ids: Sequence[str], columns: Sequence[str] | None = None, *,
              with_images: bool = False) -> pa.Table:
        """Rows for ``ids`` in the order asked (repeats kept, missing ids left out), as Arrow.

        >>> t.fetch(["3/00003.png", "0/00000.png"], columns=["id", "label"]).to_pylist()
        [{'id': '3/00003.png', 'label': 3}, {'id': '0/00000.png', 'label': 0}]
        """
        return self._run(self._calls.fetch(ids, columns, with_images))

    def query(self, filter: str | None = None, *, columns: Sequence[str] | None = None, limit: int | None = 1000,
              offset: int | None = None, order_by: str | Sequence[str] | None = None,
              view: str | None = None) -> pa.Table:
        """Rows matching a SQL filter as Arrow (``limit=None`` for all of them; ``order_by="ink desc"``;
        ``view``: a saved view's filter ANDed with ``filter``, its columns, sort and ref unless given)."""
        return self._run(self._calls.query(filter, columns, limit, offset, order_by, view))

    def to_pandas(self, filter: str | None = None, *, columns: Sequence[str] | None = None,
                  limit: int | None = None) -> pd.DataFrame:
        """Matching rows (all by default) as a pandas DataFrame: ``t.to_pandas("split = 'test'", columns=["id"])``."""
        need("pandas", "pandas", "to_pandas")
        return self.query(filter, columns=columns, limit=limit).to_pandas()

    def iter_batches(self, filter: str | None = None, *, columns: Sequence[str] | None = None,
                     batch_size: int = 10_000, order_by: str | Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Every matching row, ``batch_size`` rows at a time, all from the version the call started on.

        One Arrow stream is read as it arrives, so memory stays at about one batch whatever the size.

        >>> sum(b.num_rows for b in t.iter_batches("split = 'train'", columns=["id"], batch_size=500))
        1437
        """
        rebatch = Rebatcher(batch_size)
        decoder = ArrowStreamDecoder()
        with self.client._stream(self._calls.query(filter, columns, None, None, order_by)) as chunks:
            for chunk in chunks:
                for batch in decoder.feed(chunk):
                    yield from rebatch.push(batch)
        decoder.finish()
        yield from rebatch.flush()

    def count(self, filter: str | None = None, *, view: str | None = None) -> int:
        """Rows matching a filter (all rows by default): ``t.count("label = 3")`` -> ``183``."""
        return self._run(self._calls.count(filter, view))

    def facets(self, filter: str | None = None, columns: Sequence[str] | None = None, *, max_values: int = 20,
               bins: int = 10) -> dict[str, Any]:
        """Value counts of low-cardinality columns and histograms of numeric ones under a filter (what the
        gallery's side panel shows); each count equals ``count`` of that value."""
        return self._run(self._calls.facets(filter, columns, max_values, bins))

    def search(self, text: str | None = None, *, image: ImageSource | None = None,
               vector: Sequence[float] | None = None, like: str | None = None, k: int = 10,
               filter: str | None = None, columns: Sequence[str] | None = None, column: str | None = None,
               nprobes: int | None = None, refine_factor: int | None = None, keywords: str | None = None,
               keyword_columns: Sequence[str] | None = None, offset: int = 0, fusion: str | None = None,
               weight: float | None = None, view: str | None = None) -> pa.Table:
        """The ``k`` nearest rows (``_distance`` ascending) to a text, an image (path, bytes or PIL), a
        vector, or the row ``like`` (itself left out); embedded with the vector column's own model
        (``view``: among a saved view's rows).

        ``keywords`` searches the full-text indexes instead (``_score`` descending; ``"a phrase"``,
        ``+must``, ``-must_not``), or, beside one of the above, both, fused (hybrid, ``_relevance_score``
        descending; ``fusion="rrf"`` by default, or ``"linear"`` with the vector side's ``weight``).

        >>> t.search(like="3/00003.png", k=3, columns=["id", "label"]).column("label").to_pylist()
        [3, 3, 3]
        >>> t.search(keywords='"space rocket" -launch', k=5).column("id").to_pylist()
        ['rocket.jpg']
        """
        words = _calls.keyword_options(keywords, keyword_columns, offset, fusion, weight)
        return self._run(self._calls.search_through(view, filter, columns, text=text, image=image, vector=vector,
                                                    like=like, k=k, column=column, nprobes=nprobes,
                                                    refine_factor=refine_factor, keywords=words))

    def torch_dataset(self, filter: str | None = None, *, columns: Sequence[str] | None = None,
                      transform: Callable[[Any], Any] | None = None, decode: bool = True,
                      view: str | None = None) -> TableDataset:
        """A map-style ``torch.utils.data.Dataset`` over this handle's rows, pinned (see ``lightbox.torch``).

        >>> ds = t.at(tag="v1").torch_dataset(filter="split = 'train'", columns=["label"])
        >>> loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)
        """
        spec = self._run(self._calls.dataset_spec(filter, columns, view))
        return _calls.dataset_class()(self.client.options, spec, transform=transform, decode=decode)

    def export(self, dest: str | PathLike[str], format: str = "parquet", *, filter: str | None = None,
               columns: Sequence[str] | None = None, label_column: str = "label", archive: str | None = None,
               shard_size: int | None = None, view: str | None = None) -> dict[str, Any]:
        """Write this handle's rows to disk as ``parquet`` (one file with a Hugging Face image column),
        ``webdataset`` (a folder of tar shards, ``shard_size`` samples each) or ``imagefolder`` (a
        ``label/file`` tree under ``dest``, or one ``archive="tar"|"zip"`` file). Streamed to disk, so
        memory stays flat; every part reads the same version.

        >>> t.at(tag="v1").export("digits.parquet")["rows"]
        200
        """
        job = self._run(self._calls.export(dest, format, filter, columns, label_column, archive, shard_size, view))
        with job.all_or_nothing():
            for part in job.parts:
                with part.open() as sink, self.client._stream(self._calls.export_part(part)) as chunks:
                    for chunk in chunks:
                        sink.write(chunk)
            return job.finish()

    # -- history ---------------------------------------------------------------------------
    def versions(self, *, limit: int | None = None, newest_first: bool = False) -> list[dict[str, Any]]:
        """The version log (of this handle's branch, else main), oldest first (or the ``limit`` newest,
        newest first).

        >>> [(v["version"], v["message"], v["tags"]) for v in t.versions()]
        [(1, 'scikit-learn digits 0-9', ['v1'])]
        """
        return self._run(self._calls.versions(limit, newest_first))

    def tags(self) -> list[dict[str, Any]]:
        """Every tag: name, version, branch, created_at."""
        return self._run(self._calls.tags())

    def tag(self, name: str, version: int | None = None, *, move: bool = False) -> dict[str, Any]:
        """Name a version (latest when None); an existing tag is a ``Conflict`` unless ``move=True``.

        >>> t.tag("v2")["version"]; t.tag("v2", version=1, move=True)
        """
        return self._run(self._calls.tag(name, version, move))

    def untag(self, name: str) -> None:
        """Delete a tag (the version stays)."""
        self._run(self._calls.untag(name))

    def restore(self, *, version: int | None = None, tag: str | None = None,
                as_of: datetime | str | None = None, message: str | None = None,
                author: str | None = None) -> dict[str, Any]:
        """Commit a new latest version of main whose content is that of a past version: ``t.restore(tag="v1")``."""
        return self._run(self._calls.restore(one_ref(version=version, tag=tag, as_of=as_of), message, author))

    def diff(self, from_ref: RefValue, to_ref: RefValue = "main") -> dict[str, Any]:
        """Ids ``added``, ``removed`` and ``changed`` (with the changed columns) between two refs.

        >>> t.diff("v1", "main")["counts"]
        {'added': 0, 'removed': 0, 'changed': 1}
        """
        return self._run(self._calls.diff(from_ref, to_ref))

    def branches(self) -> list[dict[str, Any]]:
        """Every branch with its fork point, latest version and row count."""
        return self._run(self._calls.branches())

    def create_branch(self, name: str, *, version: int | None = None, tag: str | None = None,
                      as_of: datetime | str | None = None) -> Table:
        """A branch from this handle's latest (or a version, tag or time); returns a writable handle on it.

        >>> b = t.create_branch("relabel"); b.update("3/00003.png", {"label": 8}); t.merge("relabel")
        """
        self._run(self._calls.create_branch(name, one_ref(version=version, tag=tag, as_of=as_of)))
        return self.branch(name)

    def delete_branch(self, name: str) -> None:
        """Delete a branch."""
        self._run(self._calls.delete_branch(name))

    def merge(self, branch: str, *, into: str = "main", on_conflict: str = "fail", message: str | None = None,
              author: str | None = None) -> dict[str, Any]:
        """Apply a branch's changes since its fork to ``into`` as one version (``Conflict`` on clashes,
        unless ``on_conflict`` is ``"theirs"`` or ``"ours"``)."""
        return self._run(self._calls.merge(branch, into, on_conflict, message, author))

    # -- writes ----------------------------------------------------------------------------
    def add(self, images: Sequence[ImageSource] | pa.Table | pd.DataFrame | None = None,
            metadata: Sequence[Mapping[str, Any]] | None = None, *, ids: Sequence[str] | None = None,
            mode: str = "insert", dedup: str = "id", message: str | None = None, author: str | None = None,
            tag: str | None = None) -> dict[str, Any]:
        """Add images (paths, bytes or PIL images, each with a metadata dict) or rows (Arrow, pandas) as one version.

        Row ids: ``ids``, else a metadata ``"id"``, else the file name of a path, else the SHA-256 of the bytes.

        >>> t.add(["cat.png"], metadata=[{"label": 3}], message="one more")["inserted"]
        1
        """
        options = {"mode": mode, "dedup": dedup, "message": message, "author": author, "tag": tag}
        return self._run(self._calls.add(images, metadata, ids, options))

    def ingest(self, sources: str | PathLike[str] | Sequence[str | PathLike[str]], *,
               metadata: str | PathLike[str] | None = None, key: str | None = None, labels_from_dirs: bool = False,
               id_mode: str = "path", mode: str = "insert", dedup: str = "id", embed: str | None = None,
               embed_text: str | None = None, tag: str | None = None, message: str | None = None,
               author: str | None = None, branch: str | None = None, batch_rows: int | None = None,
               batch_bytes: int | None = None, workers: int | None = None, commit_every: int | None = None,
               verify: str = "header", max_pixels: int | None = None, progress: bool | None = False) -> IngestReport:
        """Load folders, manifests (CSV/TSV/Parquet/JSONL of paths), Parquet files of image bytes and WebDataset
        shards into this table as **one** new version (the table is created when it does not exist).

        Files are read here and streamed to the service in batches of one upload session, which probes,
        hashes, deduplicates (``dedup="content"`` also skips bytes already stored) and embeds them, then
        commits once with ``message``, ``author`` and ``tag``; a failure or an interrupt commits nothing.
        Ids are the path under the folder (``id_mode="name"``: the file name, ``"sha256"``: the bytes'
        digest); ``metadata`` is a side file joined by its ``key`` column; ``labels_from_dirs`` adds each
        file's folder as ``label``; ``mode="upsert"`` replaces rows whose id exists (files whose bytes and
        values are unchanged are skipped); ``embed`` adds a vector column to a new table (from the images,
        or the text column ``embed_text``). ``branch`` (created from main's latest if new) defaults to this
        handle's. Returns the run's report: rows added, files skipped with their reasons, the version.

        >>> report = client.table("digits").ingest("./digits", labels_from_dirs=True, tag="v1")
        >>> report.added, report.version, report.skipped_by_reason()
        (1797, 1, {})
        """
        from lightbox._ingest import ingest

        return ingest(self, sources, metadata=metadata, key=key, labels_from_dirs=labels_from_dirs, id_mode=id_mode,
                      mode=mode, dedup=dedup, embed=embed, embed_text=embed_text, tag=tag, message=message,
                      author=author, branch=branch, batch_rows=batch_rows, batch_bytes=batch_bytes, workers=workers,
                      commit_every=commit_every, verify=verify, max_pixels=max_pixels, progress=progress)

    def update(self, row_id: str, values: Mapping[str, Any], *, message: str | None = None,
               author: str | None = None) -> dict[str, Any]:
        """Change some columns of one row (one new version): ``t.update("3/00003.png", {"label": 8})``.

        Values equal to the stored ones write no version (``{"updated": 0, "unchanged": 1}``)."""
        return self._run(self._calls.update(row_id, values, message, author))

    def import_annotations(self, source: str | PathLike[str] | Mapping[str, Any], format: str = "coco", *,
                           match: str = "auto", classes: str | PathLike[str] | Sequence[str] | None = None,
                           message: str | None = None, author: str | None = None) -> dict[str, Any]:
        """COCO JSON (a file or a loaded dict) or YOLO labels (a folder of ``.txt``, ``classes`` names) into
        the list columns ``boxes``, ``categories``, ``category_ids``, ``segmentation``, ``annotation_ids``
        of the matching rows, as one version; unmatched images and annotations are reported.

        >>> t.import_annotations("instances.json")["rows_updated"]
        180
        """
        from lightbox._annotations import annotation_body

        body = annotation_body(source, format, classes)
        return self._run(self._calls.import_annotations(body, format, match, message, author))

    def delete(self, filter: str, *, message: str | None = None, author: str | None = None) -> dict[str, Any]:
        """Delete the rows a filter matches (one new version): ``t.delete("label = 9")``."""
        return self._run(self._calls.delete(filter, message, author))

    def delete_row(self, row_id: str, *, message: str | None = None, author: str | None = None) -> dict[str, Any]:
        """Delete one row by id (one new version)."""
        return self._run(self._calls.delete_row(row_id, message, author))

    # -- maintenance -----------------------------------------------------------------------
    def indexes(self) -> list[dict[str, Any]]:
        """The table's Lance indexes."""
        return self._run(self._calls.indexes())

    def create_index(self, column: str, index_type: str = "BTREE", **params: Any) -> dict[str, Any]:
        """Build a Lance index (``IVF_PQ``, ``IVF_HNSW_SQ``, ``BTREE``, ``BITMAP``, ``FTS``) on a column.

        ``FTS`` (full-text) takes tokenizer settings: ``with_position`` (default True: phrases work),
        ``base_tokenizer``, ``language``, ``stem``, ``remove_stop_words``, ``lower_case``, ``ascii_folding``.
        """
        return self._run(self._calls.create_index(column, index_type, params))

    def drop_index(self, name: str) -> dict[str, Any]:
        """Drop an index by name from main's latest version (one new version); older versions keep theirs."""
        return self._run(self._calls.drop_index(name))

    def optimize(self, *, retention_seconds: float | None = None, message: str | None = None,
                 author: str | None = None) -> dict[str, Any]:
        """Compact files, fold new rows into indexes, prune old untagged versions."""
        return self._run(self._calls.optimize(retention_seconds, message, author))

    def embed(self, model: str = "builtin", *, source: str = "image", column: str | None = None,
              message: str | None = None, author: str | None = None) -> dict[str, Any]:
        """Add or refresh a vector column computed by ``model`` from ``source`` (one new version).

        >>> t.embed("builtin")["column"]
        'vector'
        """
        return self._run(self._calls.embed(model, source, column, message, author))

    def curate(self, label: str | None = None, *, column: str | None = None, k: int = 10,
               threshold: float | None = None, message: str | None = None,
               author: str | None = None) -> dict[str, Any]:
        """Write ``label_issue``, ``suggested_label``, ``duplicate_of`` and ``uniqueness`` for every row
        (one version, logged as ``curate``); without ``label``, duplicates and uniqueness only.

        >>> t.curate(label="label")["columns"]
        ['label_issue', 'suggested_label', 'duplicate_of', 'uniqueness']
        """
        return self._run(self._calls.curate(label, column, k, threshold, message, author))

    # -- saved views -----------------------------------------------------------------------
    def views(self) -> list[dict[str, Any]]:
        """The table's saved views, each with ``error`` (null, or why a query through it fails now)."""
        return self._run(self._calls.views())

    def view(self, name: str) -> dict[str, Any]:
        """One saved view: ``{"name", "filter", "columns", "order_by", "ref", "error"}``."""
        return self._run(self._calls.view(name))

    def save_view(self, name: str, filter: str | None = None, *, columns: Sequence[str] | None = None,
                  order_by: str | Sequence[str] | None = None,
                  ref: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Create or replace a saved view (checked against the table first), kept in the table's config.

        >>> t.save_view("suspects", "label_issue > 0.5", order_by="label_issue desc")["name"]
        'suspects'
        """
        return self._run(self._calls.save_view(name, filter, columns, order_by, ref))

    def delete_view(self, name: str) -> None:
        """Remove a saved view."""
        self._run(self._calls.delete_view(name))


def connect(target: str | None = None, *, api_key: str | None = None, **options: Any) -> Client:
    """A ``Client`` on a service (an ``http(s)://`` URL) or on a data root served in this process.

    >>> lightbox.connect("http://127.0.0.1:8000").tables()       # a running service
    >>> lightbox.connect("./lightbox-data").tables()              # no server: the same calls, in-process

    A data root (a folder or any Lance URI; default ``$LIGHTBOX_URI`` or ``./lightbox-data``) needs the
    service installed (``pip install 'lightbox[server]'``); ``options`` are its settings
    (``storage_options``, ``index_min_rows``, ...). For a URL they are ``Client``'s (``timeout``, ...).
    """
    import os

    target = target or os.environ.get("LIGHTBOX_URI") or "./lightbox-data"
    if target.startswith(("http://", "https://")):
        return Client(target, api_key=api_key, **options)
    from lightbox._inprocess import connect_local

    return connect_local(target, api_key=api_key, **options)  # type: ignore[no-any-return]
