"""``AsyncClient`` and ``AsyncTable``: the SDK over ``httpx.AsyncClient``, with the same calls, awaited.

>>> async with lightbox.AsyncClient("http://127.0.0.1:8000") as client:
...     t = client.table("digits")
...     n = await t.count("label = 3")
...     rows = await t.at(tag="v1").query("label = 3", columns=["id"], limit=5)
...     async for batch in t.iter_batches(columns=["id", "label"], batch_size=500):
...         ...

Both clients run the same request descriptions (``lightbox._calls``), so their routes, retries and
errors are identical; a test checks their public method names and signatures match. Methods that
send nothing (``table``, ``at``, ``branch``) are plain methods here too; ``iter_batches`` is an
async generator; every other call is a coroutine. Docstrings are those of ``lightbox.client``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
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
from lightbox.client import Client, Table
from lightbox.errors import Conflict, LightboxError
from lightbox.extras import need

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from PIL import Image

    from ingest.report import IngestReport
    from lightbox.torch import TableDataset

__all__ = ["AsyncClient", "AsyncTable"]
T = TypeVar("T")


class AsyncClient:
    """A connection to one Lightbox service over ``httpx.AsyncClient``; ``async with`` it, or ``await close()``."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.25, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.options = Options(url.rstrip("/"), api_key, timeout, retries, backoff)
        self._http = httpx.AsyncClient(base_url=self.options.url, headers=self.options.headers(),
                                       timeout=self.options.timeouts(), transport=transport)

    @property
    def url(self) -> str:
        return self.options.url

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _exchange(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        request_id = new_request_id()
        attempts = self.options.attempts(call)
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            try:
                response = await self._http.send(call.build(self._http, request_id), stream=stream)
            except httpx.TransportError as exc:
                if last:
                    raise unreachable(exc, self.url, request_id) from exc
                await asyncio.sleep(self.options.delay(attempt, None))
                continue
            if response.status_code < 400:
                return response
            await response.aread()
            await response.aclose()
            if retryable(response) and not last:
                await asyncio.sleep(self.options.delay(attempt, response))
                continue
            raise error_from(response, request_id)
        raise AssertionError("unreachable")

    async def _run(self, plan: Call[T] | Plan[T]) -> T:
        if isinstance(plan, Call):
            return plan.parse(await self._exchange(plan))
        try:
            call = next(plan)
            while True:
                try:
                    result = call.parse(await self._exchange(call))
                except LightboxError as exc:
                    call = plan.throw(exc)
                else:
                    call = plan.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    @asynccontextmanager
    async def _stream(self, call: Call[Any]) -> AsyncIterator[AsyncIterator[bytes]]:
        response = await self._exchange(call, stream=True)
        try:
            yield response.aiter_bytes()
        except httpx.TransportError as exc:
            raise unreachable(exc, self.url, response.headers.get("x-request-id", "")) from exc
        finally:
            await response.aclose()

    async def tables(self) -> list[TableInfo]:
        return await self._run(_calls.list_tables())

    def table(self, name: str) -> AsyncTable:
        return AsyncTable(self, name)

    async def create_table(self, name: str, schema: pa.Schema | Sequence[Mapping[str, Any]] | None = None, *,
                           exist_ok: bool = False) -> AsyncTable:
        try:
            await self._run(_calls.create_table(name, schema))
        except Conflict:
            if not exist_ok:
                raise
        return AsyncTable(self, name)

    async def drop_table(self, name: str) -> None:
        await self._run(_calls.drop_table(name))

    async def clone(self, source: str, name: str, *, version: int | None = None, tag: str | None = None,
                    branch: str | None = None, as_of: datetime | str | None = None,
                    message: str | None = None, author: str | None = None) -> AsyncTable:
        await self._run(_calls.clone(source, name, one_ref(version=version, tag=tag, branch=branch, as_of=as_of),
                                     message, author))
        return AsyncTable(self, name)


class AsyncTable:
    """One table, like ``lightbox.Table``, with awaited calls."""

    def __init__(self, client: AsyncClient, name: str, ref: Mapping[str, Any] | None = None, *,
                 writable: bool | None = None) -> None:
        self.client = client
        self.name = name
        self.ref: dict[str, Any] = dict(ref or {})
        self._calls = TableCalls(name, dict(self.ref), not self.ref if writable is None else writable)

    def __repr__(self) -> str:
        pinned = "".join(f", {k}={v!r}" for k, v in self.ref.items())
        return f"AsyncTable({self.name!r}{pinned}{'' if self.writable else ', read_only'})"

    @property
    def writable(self) -> bool:
        return self._calls.writable

    async def _run(self, plan: Call[T] | Plan[T]) -> T:
        return await self.client._run(plan)

    # -- refs ------------------------------------------------------------------------------
    def at(self, *, version: int | None = None, tag: str | None = None, branch: str | None = None,
           as_of: datetime | str | None = None) -> AsyncTable:
        ref = one_ref(version=version, tag=tag, branch=branch, as_of=as_of)
        if not ref:
            raise ValueError("give one of version, tag, branch, as_of")
        return AsyncTable(self.client, self.name, ref, writable=False)

    def branch(self, name: str) -> AsyncTable:
        return AsyncTable(self.client, self.name, {"branch": name}, writable=True)

    async def pin(self) -> AsyncTable:
        return AsyncTable(self.client, self.name, await self._run(self._calls.pin()), writable=False)

    # -- reads -----------------------------------------------------------------------------
    async def info(self) -> dict[str, Any]:
        return await self._run(self._calls.info())

    async def describe(self) -> dict[str, Any]:
        return await self._run(self._calls.describe())

    async def get(self, row_id: str) -> dict[str, Any]:
        return await self._run(self._calls.get(row_id))

    async def image_bytes(self, row_id: str) -> bytes:
        return await self._run(self._calls.image_bytes(row_id))

    async def image(self, row_id: str) -> Image.Image:
        return await self._run(self._calls.image(row_id))

    async def array(self, row_id: str, frame: int | None = None) -> np.ndarray:
        return await self._run(self._calls.array(row_id, frame))

    async def thumbnail(self, row_id: str, size: int = 256, format: str | None = None) -> bytes:
        return await self._run(self._calls.thumbnail(row_id, size, format))

    async def fetch(self, ids: Sequence[str], columns: Sequence[str] | None = None, *,
                    with_images: bool = False) -> pa.Table:
        return await self._run(self._calls.fetch(ids, columns, with_images))

    async def query(self, filter: str | None = None, *, columns: Sequence[str] | None = None,
                    limit: int | None = 1000, offset: int | None = None,
                    order_by: str | Sequence[str] | None = None, view: str | None = None) -> pa.Table:
        return await self._run(self._calls.query(filter, columns, limit, offset, order_by, view))

    async def to_pandas(self, filter: str | None = None, *, columns: Sequence[str] | None = None,
                        limit: int | None = None) -> pd.DataFrame:
        need("pandas", "pandas", "to_pandas")
        return (await self.query(filter, columns=columns, limit=limit)).to_pandas()

    async def iter_batches(self, filter: str | None = None, *, columns: Sequence[str] | None = None,
                           batch_size: int = 10_000,
                           order_by: str | Sequence[str] | None = None) -> AsyncIterator[pa.RecordBatch]:
        rebatch = Rebatcher(batch_size)
        decoder = ArrowStreamDecoder()
        async with self.client._stream(self._calls.query(filter, columns, None, None, order_by)) as chunks:
            async for chunk in chunks:
                for batch in decoder.feed(chunk):
                    for out in rebatch.push(batch):
                        yield out
        decoder.finish()
        for out in rebatch.flush():
            yield out

    async def count(self, filter: str | None = None, *, view: str | None = None) -> int:
        return await self._run(self._calls.count(filter, view))

    async def facets(self, filter: str | None = None, columns: Sequence[str] | None = None, *, max_values: int = 20,
                     bins: int = 10) -> dict[str, Any]:
        return await self._run(self._calls.facets(filter, columns, max_values, bins))

    async def search(self, text: str | None = None, *, image: ImageSource | None = None,
                     vector: Sequence[float] | None = None, like: str | None = None, k: int = 10,
                     filter: str | None = None, columns: Sequence[str] | None = None, column: str | None = None,
                     nprobes: int | None = None, refine_factor: int | None = None, keywords: str | None = None,
                     keyword_columns: Sequence[str] | None = None, offset: int = 0, fusion: str | None = None,
                     weight: float | None = None, view: str | None = None) -> pa.Table:
        words = _calls.keyword_options(keywords, keyword_columns, offset, fusion, weight)
        return await self._run(self._calls.search_through(view, filter, columns, text=text, image=image,
                                                          vector=vector, like=like, k=k, column=column,
                                                          nprobes=nprobes, refine_factor=refine_factor,
                                                          keywords=words))

    async def torch_dataset(self, filter: str | None = None, *, columns: Sequence[str] | None = None,
                            transform: Callable[[Any], Any] | None = None, decode: bool = True,
                            view: str | None = None) -> TableDataset:
        spec = await self._run(self._calls.dataset_spec(filter, columns, view))
        return _calls.dataset_class()(self.client.options, spec, transform=transform, decode=decode)

    async def export(self, dest: str | PathLike[str], format: str = "parquet", *, filter: str | None = None,
                     columns: Sequence[str] | None = None, label_column: str = "label", archive: str | None = None,
                     shard_size: int | None = None, view: str | None = None) -> dict[str, Any]:
        job = await self._run(self._calls.export(dest, format, filter, columns, label_column, archive, shard_size,
                                                 view))
        with job.all_or_nothing():
            for part in job.parts:
                with part.open() as sink:
                    async with self.client._stream(self._calls.export_part(part)) as chunks:
                        async for chunk in chunks:
                            sink.write(chunk)
            return await asyncio.to_thread(job.finish)

    # -- history ---------------------------------------------------------------------------
    async def versions(self, *, limit: int | None = None, newest_first: bool = False) -> list[dict[str, Any]]:
        return await self._run(self._calls.versions(limit, newest_first))

    async def tags(self) -> list[dict[str, Any]]:
        return await self._run(self._calls.tags())

    async def tag(self, name: str, version: int | None = None, *, move: bool = False) -> dict[str, Any]:
        return await self._run(self._calls.tag(name, version, move))

    async def untag(self, name: str) -> None:
        await self._run(self._calls.untag(name))

    async def restore(self, *, version: int | None = None, tag: str | None = None,
                      as_of: datetime | str | None = None, message: str | None = None,
                      author: str | None = None) -> dict[str, Any]:
        return await self._run(self._calls.restore(one_ref(version=version, tag=tag, as_of=as_of), message, author))

    async def diff(self, from_ref: RefValue, to_ref: RefValue = "main") -> dict[str, Any]:
        return await self._run(self._calls.diff(from_ref, to_ref))

    async def branches(self) -> list[dict[str, Any]]:
        return await self._run(self._calls.branches())

    async def create_branch(self, name: str, *, version: int | None = None, tag: str | None = None,
                            as_of: datetime | str | None = None) -> AsyncTable:
        await self._run(self._calls.create_branch(name, one_ref(version=version, tag=tag, as_of=as_of)))
        return self.branch(name)

    async def delete_branch(self, name: str) -> None:
        await self._run(self._calls.delete_branch(name))

    async def merge(self, branch: str, *, into: str = "main", on_conflict: str = "fail",
                    message: str | None = None, author: str | None = None) -> dict[str, Any]:
        return await self._run(self._calls.merge(branch, into, on_conflict, message, author))

    # -- writes ----------------------------------------------------------------------------
    async def add(self, images: Sequence[ImageSource] | pa.Table | pd.DataFrame | None = None,
                  metadata: Sequence[Mapping[str, Any]] | None = None, *, ids: Sequence[str] | None = None,
                  mode: str = "insert", dedup: str = "id", message: str | None = None, author: str | None = None,
                  tag: str | None = None) -> dict[str, Any]:
        options = {"mode": mode, "dedup": dedup, "message": message, "author": author, "tag": tag}
        return await self._run(self._calls.add(images, metadata, ids, options))

    async def ingest(self, sources: str | PathLike[str] | Sequence[str | PathLike[str]], *,
                     metadata: str | PathLike[str] | None = None, key: str | None = None,
                     labels_from_dirs: bool = False, id_mode: str = "path", mode: str = "insert", dedup: str = "id",
                     embed: str | None = None, embed_text: str | None = None, tag: str | None = None,
                     message: str | None = None, author: str | None = None, branch: str | None = None,
                     batch_rows: int | None = None, batch_bytes: int | None = None, workers: int | None = None,
                     commit_every: int | None = None, verify: str = "header", max_pixels: int | None = None,
                     progress: bool | None = False) -> IngestReport:
        # The run (file reads, batches, one commit) goes on a worker thread, with a sync client of its own on
        # the same service: it reads files and waits on the service, which an event loop must not do.
        from lightbox.client import Client

        self._calls.check_writable("ingest")
        opts = self.client.options
        options = {k: v for k, v in locals().items() if k not in ("self", "sources", "Client", "opts")}

        def run() -> IngestReport:
            with Client(opts.url, opts.api_key, timeout=opts.timeout, retries=opts.retries,
                        backoff=opts.backoff) as client:
                table = client.table(self.name)
                on = table.branch(self._calls.branch) if self._calls.branch else table
                return on.ingest(sources, **options)

        return await asyncio.to_thread(run)

    async def update(self, row_id: str, values: Mapping[str, Any], *, message: str | None = None,
                     author: str | None = None) -> dict[str, Any]:
        return await self._run(self._calls.update(row_id, values, message, author))

    async def import_annotations(self, source: str | PathLike[str] | Mapping[str, Any], format: str = "coco", *,
                                 match: str = "auto", classes: str | PathLike[str] | Sequence[str] | None = None,
                                 message: str | None = None, author: str | None = None) -> dict[str, Any]:
        from lightbox._annotations import annotation_body

        body = await asyncio.to_thread(annotation_body, source, format, classes)
        return await self._run(self._calls.import_annotations(body, format, match, message, author))

    async def delete(self, filter: str, *, message: str | None = None, author: str | None = None) -> dict[str, Any]:
        return await self._run(self._calls.delete(filter, message, author))

    async def delete_row(self, row_id: str, *, message: str | None = None,
                         author: str | None = None) -> dict[str, Any]:
        return await self._run(self._calls.delete_row(row_id, message, author))

    # -- maintenance -----------------------------------------------------------------------
    async def indexes(self) -> list[dict[str, Any]]:
        return await self._run(self._calls.indexes())

    async def create_index(self, column: str, index_type: str = "BTREE", **params: Any) -> dict[str, Any]:
        return await self._run(self._calls.create_index(column, index_type, params))

    async def drop_index(self, name: str) -> dict[str, Any]:
        return await self._run(self._calls.drop_index(name))

    async def optimize(self, *, retention_seconds: float | None = None, message: str | None = None,
                       author: str | None = None) -> dict[str, Any]:
        return await self._run(self._calls.optimize(retention_seconds, message, author))

    async def embed(self, model: str = "builtin", *, source: str = "image",
                    column: str | None = None, message: str | None = None,
                    author: str | None = None) -> dict[str, Any]:
        return await self._run(self._calls.embed(model, source, column, message, author))

    async def curate(self, label: str | None = None, *, column: str | None = None, k: int = 10,
                     threshold: float | None = None, message: str | None = None,
                     author: str | None = None) -> dict[str, Any]:
        return await self._run(self._calls.curate(label, column, k, threshold, message, author))

    async def views(self) -> list[dict[str, Any]]:
        return await self._run(self._calls.views())

    async def view(self, name: str) -> dict[str, Any]:
        return await self._run(self._calls.view(name))

    async def save_view(self, name: str, filter: str | None = None, *, columns: Sequence[str] | None = None,
                        order_by: str | Sequence[str] | None = None,
                        ref: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self._run(self._calls.save_view(name, filter, columns, order_by, ref))

    async def delete_view(self, name: str) -> None:
        await self._run(self._calls.delete_view(name))


def _share_docs(target: type, source: type) -> None:
    """Give each async method the docstring of its sync twin, so the two are documented once."""
    for name, member in vars(target).items():
        twin = getattr(source, name, None)
        if callable(member) and not member.__doc__ and twin is not None and twin.__doc__:
            member.__doc__ = inspect.cleandoc(twin.__doc__) + "\n\n(Awaited: see ``lightbox.client``.)"


_share_docs(AsyncClient, Client)
_share_docs(AsyncTable, Table)
