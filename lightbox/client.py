"""The Lightbox SDK: a small httpx client mirroring the native HTTP API.

>>> client = Client("http://127.0.0.1:8000")
>>> t = client.table("digits")
>>> t.count("label = 3")
183
>>> v1 = t.at(tag="v1")          # pinned, read-only
>>> v1.image("3/00003.png").size
(8, 8)
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow as pa

from lightbox.errors import LightboxError, ServerError, error_for

ARROW_STREAM = "application/vnd.apache.arrow.stream"
RETRY_STATUS = {429, 502, 503}


@dataclass(frozen=True)
class TableInfo:
    name: str
    version: int
    num_rows: int


class Client:
    """A connection to one Lightbox service; reuses its HTTP connections. Use as a context manager."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.2) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.retries = retries
        self.backoff = backoff

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> httpx.Response:
        """One call; status codes become ``LightboxError``s; idempotent calls retry 429/502/503."""
        safe = method in ("GET", "HEAD", "PUT", "DELETE") if idempotent is None else idempotent
        attempts = self.retries + 1 if safe else 1
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    time.sleep(self.backoff * 2**attempt)
                    continue
                raise ServerError(f"no answer from {self._http.base_url}: {exc}", status=0, code="unreachable") from exc
            if response.status_code in RETRY_STATUS and attempt + 1 < attempts:
                time.sleep(self.backoff * 2**attempt)
                continue
            if response.status_code >= 400:
                raise _error(response)
            return response
        raise AssertionError("unreachable")

    def tables(self) -> list[TableInfo]:
        body = self.request("GET", "/api/v1/tables").json()
        return [TableInfo(t["name"], t["version"], t["num_rows"]) for t in body["tables"]]

    def table(self, name: str) -> Table:
        return Table(self, name)

    def create_table(self, name: str, schema: list[dict[str, Any]] | None = None) -> Table:
        self.request("POST", "/api/v1/tables", json={"name": name, "schema": schema})
        return Table(self, name)

    def drop_table(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/tables/{quote(name)}")

    def clone(self, source: str, name: str, *, version: int | None = None, tag: str | None = None,
              branch: str | None = None) -> Table:
        """A new table sharing ``source``'s files at a ref (latest by default); no bytes are copied."""
        ref = {k: v for k, v in (("version", version), ("tag", tag), ("branch", branch)) if v is not None}
        self.request("POST", f"/api/v1/tables/{quote(source)}/clone", json={"name": name, **ref})
        return Table(self, name)


class Table:
    """One table at latest, or pinned to a ref with ``at(...)`` (then read-only)."""

    def __init__(self, client: Client, name: str, ref: dict[str, Any] | None = None) -> None:
        self.client = client
        self.name = name
        self.ref = ref or {}

    def __repr__(self) -> str:
        pinned = ", ".join(f"{k}={v!r}" for k, v in self.ref.items())
        return f"Table({self.name!r}{', ' + pinned if pinned else ''})"

    # -- refs ----------------------------------------------------------------------------
    def at(self, *, version: int | None = None, tag: str | None = None, branch: str | None = None,
           as_of: datetime | str | None = None) -> Table:
        """A handle on one point of history; reads through it never change (but for a branch's latest)."""
        given = {k: v for k, v in (("version", version), ("tag", tag), ("branch", branch), ("as_of", as_of))
                 if v is not None}
        if len(given) != 1:
            raise ValueError("give exactly one of version, tag, branch, as_of")
        if "as_of" in given and isinstance(given["as_of"], datetime):
            given["as_of"] = given["as_of"].isoformat()
        return Table(self.client, self.name, given)

    def _path(self, suffix: str = "") -> str:
        return f"/api/v1/tables/{quote(self.name)}{suffix}"

    def _row_path(self, row_id: str, suffix: str = "") -> str:
        return self._path(f"/rows/{quote(row_id, safe='/')}{suffix}")

    # -- reads ---------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self.client.request("GET", self._path(), params=self.ref).json()

    def get(self, row_id: str) -> dict[str, Any]:
        """One row as a dict (no image bytes, no vectors)."""
        return self.client.request("GET", self._row_path(row_id), params=self.ref).json()

    def image_bytes(self, row_id: str) -> bytes:
        """The original file bytes, exactly as ingested."""
        return self.client.request("GET", self._row_path(row_id, "/image"), params=self.ref).content

    def image(self, row_id: str) -> Any:
        """The image as a ``PIL.Image.Image``."""
        from PIL import Image

        return Image.open(io.BytesIO(self.image_bytes(row_id)))

    def array(self, row_id: str) -> Any:
        """The decoded pixels as a numpy array, dtype and shape preserved (16-bit stays uint16)."""
        import numpy as np

        content = self.client.request("GET", self._row_path(row_id, "/array"), params=self.ref).content
        return np.load(io.BytesIO(content), allow_pickle=False)

    def thumbnail(self, row_id: str, size: int = 256) -> bytes:
        params = {**self.ref, "size": size}
        return self.client.request("GET", self._row_path(row_id, "/thumbnail"), params=params).content

    def fetch(self, ids: Sequence[str], columns: Sequence[str] | None = None, *,
              with_images: bool = False) -> pa.Table:
        """Rows for ``ids`` in the order asked; ids that are not there are left out."""
        body = {"ids": list(ids), "columns": list(columns) if columns else None, "with_images": with_images}
        response = self.client.request("POST", self._path("/fetch"), params=self.ref, json=body,
                                       headers={"accept": ARROW_STREAM}, idempotent=True)
        return _read_arrow(response.content)

    def query(self, filter: str | None = None, *, columns: Sequence[str] | None = None, limit: int | None = 1000,
              offset: int | None = None, order_by: Sequence[str] | None = None) -> pa.Table:
        """Rows matching a SQL filter as an Arrow table (``limit=None`` for all of them)."""
        body = {"filter": filter, "columns": list(columns) if columns else None, "limit": limit,
                "offset": offset, "order_by": list(order_by or [])}
        response = self.client.request("POST", self._path("/query"), params=self.ref, json=body,
                                       headers={"accept": ARROW_STREAM}, idempotent=True)
        return _read_arrow(response.content)

    def iter_batches(self, filter: str | None = None, *, columns: Sequence[str] | None = None,
                     batch_size: int = 10_000) -> Iterator[pa.Table]:
        """Page through every matching row; the pages all come from one version."""
        pinned = self if self.ref else self.at(version=self.info()["version"])
        offset = 0
        while True:
            page = pinned.query(filter, columns=columns, limit=batch_size, offset=offset)
            if page.num_rows:
                yield page
            if page.num_rows < batch_size:
                return
            offset += batch_size

    def to_pandas(self, filter: str | None = None, *, columns: Sequence[str] | None = None) -> Any:
        return self.query(filter, columns=columns, limit=None).to_pandas()

    def count(self, filter: str | None = None) -> int:
        params = {**self.ref, **({"filter": filter} if filter else {})}
        return int(self.client.request("GET", self._path("/count"), params=params).json()["count"])

    # -- history -------------------------------------------------------------------------
    def versions(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The version log, oldest first."""
        params = {"limit": limit, "order": "asc", **({"branch": self.ref["branch"]} if "branch" in self.ref else {})}
        return self.client.request("GET", self._path("/versions"), params=params).json()

    def tags(self) -> list[dict[str, Any]]:
        return self.client.request("GET", self._path("/tags")).json()["tags"]

    def tag(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Point a tag at a version (latest when None); moving an existing tag is explicit: untag first."""
        body: dict[str, Any] = {"name": name, **({"version": version} if version is not None else {})}
        return self.client.request("POST", self._path("/tags"), json=body).json()

    def untag(self, name: str) -> None:
        self.client.request("DELETE", self._path(f"/tags/{quote(name)}"))

    def diff(self, from_ref: str | int, to_ref: str | int = "main", *, limit: int = 100_000) -> dict[str, Any]:
        """Ids added, removed and changed (with the changed columns) between two refs."""
        params = {"from": str(from_ref), "to": str(to_ref), "limit": limit}
        return self.client.request("GET", self._path("/diff"), params=params).json()

    def branches(self) -> list[dict[str, Any]]:
        return self.client.request("GET", self._path("/branches")).json()["branches"]

    def create_branch(self, name: str, *, version: int | None = None, tag: str | None = None) -> Table:
        """A branch from this table's latest (or a version/tag); returns a writable handle on it."""
        body: dict[str, Any] = {"name": name, **{k: v for k, v in (("version", version), ("tag", tag)) if v}}
        self.client.request("POST", self._path("/branches"), json=body)
        return Table(self.client, self.name, {"branch": name})

    def delete_branch(self, name: str) -> None:
        self.client.request("DELETE", self._path(f"/branches/{quote(name)}"))

    def merge(self, branch: str, *, into: str = "main", on_conflict: str = "fail",
              message: str | None = None) -> dict[str, Any]:
        """Apply a branch's changes since its fork to ``into`` as one version (409 on conflicts)."""
        body = {"into": into, "on_conflict": on_conflict, "message": message}
        return self.client.request("POST", self._path(f"/branches/{quote(branch)}/merge"), json=body).json()

    # -- writes --------------------------------------------------------------------------
    def _write_params(self, **extra: Any) -> dict[str, Any]:
        if set(self.ref) - {"branch"}:
            raise ValueError(f"{self!r} is pinned to a point in history and is read-only")
        return {**self.ref, **{k: v for k, v in extra.items() if v is not None}}

    def add(self, images: Sequence[Any] | pa.Table | None = None, metadata: Sequence[dict[str, Any]] | None = None,
            *, mode: str = "insert", dedup: str = "id", message: str | None = None, author: str | None = None,
            tag: str | None = None) -> dict[str, Any]:
        """Add images (paths or bytes, with a metadata dict each) or an Arrow table, as one version."""
        params = self._write_params(mode=mode, dedup=dedup, message=message, author=author, tag=tag)
        if isinstance(images, pa.Table):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, images.schema) as writer:
                writer.write_table(images)
            return self.client.request("POST", self._path("/rows"), params=params, content=sink.getvalue().to_pybytes(),
                                       headers={"content-type": ARROW_STREAM}, idempotent=False).json()
        files = [_file_part(i, item) for i, item in enumerate(images or [])]
        data = {"metadata": json.dumps(list(metadata))} if metadata is not None else None
        return self.client.request("POST", self._path("/rows"), params=params, files=files, data=data,
                                   idempotent=False).json()

    def update(self, row_id: str, values: dict[str, Any], *, message: str | None = None) -> dict[str, Any]:
        """Change some columns of one row (one new version)."""
        return self.client.request("PATCH", self._row_path(row_id), params=self._write_params(message=message),
                                   json=values, idempotent=False).json()

    def delete(self, filter: str, *, message: str | None = None) -> dict[str, Any]:
        """Delete the rows a filter matches (one new version)."""
        return self.client.request("POST", self._path("/delete"), params=self._write_params(),
                                   json={"filter": filter, "message": message}, idempotent=False).json()

    def delete_row(self, row_id: str, *, message: str | None = None) -> dict[str, Any]:
        return self.client.request("DELETE", self._row_path(row_id), params=self._write_params(message=message)).json()

    def optimize(self) -> dict[str, Any]:
        return self.client.request("POST", self._path("/optimize"), idempotent=False).json()

    def restore(self, *, version: int | None = None, tag: str | None = None,
                as_of: datetime | str | None = None) -> dict[str, Any]:
        """Make a past version's content the new latest version."""
        body = {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in (("version", version), ("tag", tag), ("as_of", as_of)) if v is not None}
        return self.client.request("POST", self._path("/restore"), json=body).json()


def _file_part(index: int, item: Any) -> tuple[str, tuple[str, bytes, str]]:
    """One multipart file from a path or bytes."""
    if isinstance(item, bytes | bytearray):
        return ("files", (f"image-{index}", bytes(item), "application/octet-stream"))
    path = Path(item)
    return ("files", (path.name, path.read_bytes(), "application/octet-stream"))


def _read_arrow(content: bytes) -> pa.Table:
    return pa.ipc.open_stream(content).read_all()


def _error(response: httpx.Response) -> LightboxError:
    request_id = response.headers.get("x-request-id")
    try:
        err = response.json()["error"]
        message, code, detail = err["message"], err["code"], err.get("detail") or {}
    except (ValueError, KeyError, TypeError):
        message, code, detail = response.text[:500] or response.reason_phrase, "http_error", {}
    cls = error_for(response.status_code)
    return cls(message, status=response.status_code, code=code, request_id=request_id, detail=detail)
