"""Every SDK call, described once as the request(s) it makes: ``Table`` and ``AsyncTable`` run these.

One method here per native route (``API.md`` §2); a few are ``Plan``s that page or resolve a ref
first. The handle's ref goes on every read as ``?version=|tag=|branch=|as_of=``; writes go to main,
or to the handle's branch, and are refused on read-only handles before anything is sent.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from warnings import warn

import httpx
import pyarrow as pa

from lightbox._export import ExportJob, Part, plan_export
from lightbox._ids import check_id, id_problem, id_segment, segment
from lightbox._wire import (
    ARROW_STREAM,
    Call,
    Plan,
    RefValue,
    TableInfo,
    drop_none,
    listed,
    read_arrow,
    read_bytes,
    read_json,
    read_none,
    ref_text,
    with_headers,
)
from lightbox.errors import InvalidId, ReadOnly

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from lightbox.torch import TableDataset

ImageSource: TypeAlias = "str | PathLike[str] | bytes | bytearray | memoryview | Image.Image"
KeywordOptions: TypeAlias = dict[str, Any]
API = "/api/v1/tables"
MAX_FETCH_IDS = 10_000  # the service's limit per POST /fetch
DIFF_PAGE = 100_000
STANDARD_COLUMNS = ("id", "image", "mime", "width", "height", "mode", "frames", "size_bytes", "sha256", "source",
                    "ingested_at")
ARROW = {"accept": ARROW_STREAM}


# -- the client's own routes -------------------------------------------------------------------
def list_tables() -> Call[list[TableInfo]]:
    def parse(r: httpx.Response) -> list[TableInfo]:
        return [TableInfo(t["name"], int(t["version"]), int(t["num_rows"])) for t in r.json()["tables"]]

    return Call("GET", API, parse, idempotent=True)


def create_table(name: str, schema: pa.Schema | Sequence[Mapping[str, Any]] | None) -> Call[dict[str, Any]]:
    if isinstance(schema, pa.Schema):
        schema = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
    body = drop_none({"name": name, "schema": list(schema) if schema is not None else None})
    return Call("POST", API, read_json, json=body)


def drop_table(name: str) -> Call[None]:
    return Call("DELETE", f"{API}/{segment(name)}", read_none, idempotent=True)


def clone(source: str, name: str, ref: dict[str, Any], message: str | None = None,
          author: str | None = None) -> Call[dict[str, Any]]:
    return Call("POST", f"{API}/{segment(source)}/clone", read_json, json={"name": name, **ref},
                params=drop_none({"message": message, "author": author}))


# -- one table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableCalls:
    """The requests of one table handle: ``ref`` is the point read, ``writable`` whether writes are allowed."""

    name: str
    ref: Mapping[str, Any]
    writable: bool

    @property
    def branch(self) -> str | None:
        return self.ref.get("branch")

    def path(self, suffix: str = "") -> str:
        return f"{API}/{segment(self.name)}{suffix}"

    def row_path(self, row_id: str, suffix: str = "") -> str:
        """The id as one encoded segment (``a/b`` as ``a%2Fb``): no client or proxy can walk out of the row."""
        return self.path(f"/rows/{id_segment(row_id)}{suffix}")

    def read(self, method: str, path: str, parse: Any, **kw: Any) -> Call[Any]:
        """A read at this handle's ref (idempotent, so retried)."""
        params = {**self.ref, **kw.pop("params", {})}
        return Call(method, path, parse, params=params, idempotent=True, **kw)

    def write(self, what: str, method: str, path: str, *, main_only: bool = False, **kw: Any) -> Call[Any]:
        """A write to main or to this handle's branch; a read-only handle raises ``ReadOnly``."""
        self.check_writable(what, main_only=main_only)
        params = drop_none({"branch": self.branch, **kw.pop("params", {})})
        return Call(method, path, kw.pop("parse", read_json), params=params, **kw)

    def check_writable(self, what: str, *, main_only: bool = False) -> None:
        if not self.writable:
            pinned = ", ".join(f"{k}={v!r}" for k, v in self.ref.items())
            raise ReadOnly(f"{what}: this handle on {self.name!r} is pinned ({pinned}) and read-only; "
                           f"write through client.table({self.name!r})", code="read_only")
        if main_only and self.branch:
            raise ValueError(f"{what} works on main; call it on client.table({self.name!r})")

    # -- reads ---------------------------------------------------------------------------
    def info(self) -> Call[dict[str, Any]]:
        return self.read("GET", self.path(), read_json)

    def describe(self) -> Call[dict[str, Any]]:
        return self.read("GET", self.path("/describe"), read_json)

    def get(self, row_id: str) -> Call[dict[str, Any]]:
        return self.read("GET", self.row_path(row_id), read_json)

    def image_bytes(self, row_id: str) -> Call[bytes]:
        return self.read("GET", self.row_path(row_id, "/image"), read_bytes)

    def image(self, row_id: str) -> Call[Image.Image]:
        def parse(r: httpx.Response) -> Image.Image:
            from PIL import Image

            return Image.open(io.BytesIO(r.content))

        return self.read("GET", self.row_path(row_id, "/image"), parse)

    def array(self, row_id: str, frame: int | None = None) -> Call[np.ndarray]:
        def parse(r: httpx.Response) -> np.ndarray:
            import numpy as np

            pixels: np.ndarray = np.load(io.BytesIO(r.content), allow_pickle=False)
            return pixels

        return self.read("GET", self.row_path(row_id, "/array"), parse, params=drop_none({"frame": frame}))

    def thumbnail(self, row_id: str, size: int, format: str | None) -> Call[bytes]:
        params = drop_none({"size": size, "format": format})
        return self.read("GET", self.row_path(row_id, "/thumbnail"), read_bytes, params=params)

    def fetch(self, ids: Sequence[str], columns: Sequence[str] | None, with_images: bool) -> Plan[pa.Table]:
        ids = list(ids)
        chunks = [ids[i: i + MAX_FETCH_IDS] for i in range(0, len(ids), MAX_FETCH_IDS)] or [[]]
        calls = self
        parts = []
        for chunk in chunks:
            body = {"ids": chunk, "columns": listed(columns), "with_images": with_images}
            table, headers = yield calls.read("POST", self.path("/fetch"), with_headers(read_arrow), json=body,
                                              headers=ARROW)
            parts.append(table)
            calls = calls.pinned_by(headers)  # every chunk reads the version the first one read
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]

    def query(self, filter: str | None, columns: Sequence[str] | None, limit: int | None, offset: int | None,
              order_by: str | Sequence[str] | None, view: str | None = None) -> Call[pa.Table]:
        body = drop_none({"filter": filter, "columns": listed(columns), "offset": offset,
                          "order_by": listed(order_by), "view": view})
        body["limit"] = limit
        return self.read("POST", self.path("/query"), read_arrow, json=body, headers=ARROW)

    def count(self, filter: str | None, view: str | None = None) -> Call[int]:
        return self.read("GET", self.path("/count"), lambda r: int(r.json()["count"]),
                         params=drop_none({"filter": filter, "view": view}))

    def through_view(self, view: str | None, filter: str | None,
                     columns: Sequence[str] | None) -> Plan[tuple[TableCalls, str | None, Sequence[str] | None]]:
        """The handle, filter and columns of a read seen through a saved view (fetched first): the view's
        filter ANDed with ``filter``, its columns unless given, its ref unless this handle names one."""
        if not view:
            return self, filter, columns
        saved = yield self.view(view)
        filters = [f for f in (saved.get("filter"), filter) if f and f.strip()]
        merged = " AND ".join(f"({f})" for f in filters) if len(filters) > 1 else (filters[0] if filters else None)
        calls = self if self.ref or not saved.get("ref") else TableCalls(self.name, saved["ref"], writable=False)
        return calls, merged, columns or saved.get("columns")

    def search_through(self, view: str | None, filter: str | None, columns: Sequence[str] | None,
                       **options: Any) -> Plan[pa.Table]:
        calls, filter, columns = yield from self.through_view(view, filter, columns)
        return (yield calls.search(filter=filter, columns=columns, **options))

    def facets(self, filter: str | None, columns: Sequence[str] | None, max_values: int, bins: int
               ) -> Call[dict[str, Any]]:
        params = drop_none({"filter": filter, "columns": listed(columns), "max_values": max_values, "bins": bins})
        return self.read("GET", self.path("/facets"), read_json, params=params)

    def search(self, *, text: str | None, image: ImageSource | None, vector: Sequence[float] | None,
               like: str | None, k: int, filter: str | None, columns: Sequence[str] | None, column: str | None,
               nprobes: int | None, refine_factor: int | None,
               keywords: KeywordOptions | None = None) -> Call[pa.Table]:
        fields = drop_none({"text": text, "image_id": like, "k": k, "filter": filter, "columns": listed(columns),
                            "column": column, "nprobes": nprobes, "refine_factor": refine_factor,
                            "vector": [float(x) for x in vector] if vector is not None else None,
                            **(keywords or {})})
        if image is None:
            return self.read("POST", self.path("/search"), read_arrow, json=fields, headers=ARROW)
        name, data = image_part(image)
        form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        return self.read("POST", self.path("/search"), read_arrow, files=[("image", (name, data, "image/*"))],
                         data=form, headers=ARROW)

    def pinned_by(self, headers: httpx.Headers) -> TableCalls:
        """This handle pinned to the version an answer read (branch heads cannot be named by version)."""
        version = headers.get("x-lightbox-version")
        if "version" in self.ref or "tag" in self.ref or headers.get("x-lightbox-branch") or not version:
            return self
        return TableCalls(self.name, {"version": int(version)}, writable=False)

    def pin(self) -> Plan[dict[str, Any]]:
        """The ref of an immutable point: a version or tag as is, the latest or ``as_of`` as its version."""
        if "version" in self.ref or "tag" in self.ref:
            return dict(self.ref)
        if self.branch:
            raise ValueError(f"branch {self.branch!r} moves: read one of its versions with "
                             f"at(version=N, branch={self.branch!r}), or tag the point and use at(tag=...)")
        info = yield self.info()
        return {"version": int(info["version"])}

    def dataset_spec(self, filter: str | None, columns: Sequence[str] | None,
                     view: str | None = None) -> Plan[dict[str, Any]]:
        """Everything a ``TableDataset`` needs: the pinned ref, the ids (fetched once) and the columns."""
        if view:
            calls, filter, columns = yield from self.through_view(view, filter, columns)
            return (yield from calls.dataset_spec(filter, columns))
        ref = yield from self.pin()
        pinned = TableCalls(self.name, ref, writable=False)
        info = yield pinned.info()
        ids = (yield pinned.query(filter, ["id"], None, None, None)).column("id").to_pylist()
        names = [f["name"] for f in info["schema"]]
        if columns is None:
            columns = [f["name"] for f in info["schema"] if _plain_user_column(f)]
        return {"name": self.name, "ref": ref, "ids": ids, "columns": [c for c in columns if c != "id"],
                "images": "image" in names, "version": int(info["version"])}

    def export(self, dest: str | PathLike[str], format: str, filter: str | None, columns: Sequence[str] | None,
               label_column: str, archive: str | None, shard_size: int | None,
               view: str | None = None) -> Plan[ExportJob]:
        """The parts of an export (``lightbox._export``), all reading one version: the handle's ref
        pinned first (a branch head cannot be, so it is exported in one request)."""
        if view:
            calls, filter, columns = yield from self.through_view(view, filter, columns)
            return (yield from calls.export(dest, format, filter, columns, label_column, archive, shard_size))
        ref = dict(self.ref) if self.branch else (yield from self.pin())
        pinned = TableCalls(self.name, ref, writable=False)
        rows, headers = yield pinned.read("GET", self.path("/count"), with_headers(lambda r: int(r.json()["count"])),
                                          params=drop_none({"filter": filter}))
        version = headers.get("x-lightbox-version")
        return plan_export(self.name, dest, format, rows=rows, version=int(version) if version else None,
                           filter=filter, columns=columns, label_column=label_column, archive=archive,
                           shard_size=shard_size, ref=ref)

    def export_part(self, part: Part) -> Call[None]:
        return Call("GET", self.path("/export"), read_none, params=part.params, idempotent=True)

    # -- history -------------------------------------------------------------------------
    def versions(self, limit: int | None, newest_first: bool = False) -> Plan[list[dict[str, Any]]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        order = "desc" if newest_first else "asc"
        while limit is None or len(out) < limit:
            page = 1000 if limit is None else min(1000, limit - len(out))
            params = drop_none({"branch": self.branch, "order": order, "limit": page, "cursor": cursor})
            rows, headers = yield Call("GET", self.path("/versions"), with_headers(read_json), params=params,
                                       idempotent=True)
            out.extend(rows)
            cursor = headers.get("x-lightbox-next-cursor")
            if not cursor or not rows:
                break
        return out

    def tags(self) -> Call[list[dict[str, Any]]]:
        return Call("GET", self.path("/tags"), lambda r: r.json()["tags"], idempotent=True)

    def tag(self, name: str, version: int | None, move: bool) -> Call[dict[str, Any]]:
        self.check_writable("tag")
        ref = drop_none({"version": version, "branch": self.branch})
        if move:
            return Call("PUT", self.path(f"/tags/{segment(name)}"), read_json, json=ref, idempotent=True)
        return Call("POST", self.path("/tags"), read_json, json={"name": name, **ref})

    def untag(self, name: str) -> Call[None]:
        self.check_writable("untag")
        return Call("DELETE", self.path(f"/tags/{segment(name)}"), read_none, idempotent=True)

    def restore(self, ref: dict[str, Any], message: str | None = None,
                author: str | None = None) -> Call[dict[str, Any]]:
        if not ref:
            raise ValueError("restore(version=|tag=|as_of=): say which point to restore")
        return self.write("restore", "POST", self.path("/restore"), main_only=True, json=ref,
                          params=drop_none({"message": message, "author": author}))

    def diff(self, from_ref: RefValue, to_ref: RefValue) -> Plan[dict[str, Any]]:
        """All pages of ``/diff``; later pages read the versions the first one resolved."""
        refs = [ref_text(from_ref), ref_text(to_ref)]
        out: dict[str, Any] = {}
        cursor: str | None = None
        while True:
            params = drop_none({"from": refs[0], "to": refs[1], "limit": DIFF_PAGE, "cursor": cursor})
            page = yield Call("GET", self.path("/diff"), read_json, params=params, idempotent=True)
            if not out:
                out = ({k: page[k] for k in ("from", "to", "counts")} | {"vectors_only": page.get("vectors_only", 0)}
                       | {"added": [], "removed": [], "changed": []})
                # a branch's version is pinned as BRANCH@VERSION: a write to it between pages moves nothing
                refs = [str(p["version"]) if p["branch"] is None else f"{p['branch']}@{p['version']}"
                        for p in (page["from"], page["to"])]
            for key in ("added", "removed", "changed"):
                out[key].extend(page[key])
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def branches(self) -> Call[list[dict[str, Any]]]:
        return Call("GET", self.path("/branches"), lambda r: r.json()["branches"], idempotent=True)

    def create_branch(self, name: str, ref: dict[str, Any]) -> Call[dict[str, Any]]:
        self.check_writable("create_branch")
        on_branch = drop_none({"branch": self.branch}) if not ref or "version" in ref else {}
        body = {"name": name, **(ref or {}), **on_branch}  # a version given on a branch handle is the branch's
        return Call("POST", self.path("/branches"), read_json, json=body)

    def delete_branch(self, name: str) -> Call[None]:
        self.check_writable("delete_branch")
        return Call("DELETE", self.path(f"/branches/{segment(name)}"), read_none, idempotent=True)

    def merge(self, branch: str, into: str, on_conflict: str, message: str | None,
              author: str | None) -> Call[dict[str, Any]]:
        self.check_writable("merge")
        body = drop_none({"into": into, "on_conflict": on_conflict, "message": message, "author": author})
        return Call("POST", self.path(f"/branches/{segment(branch)}/merge"), read_json, json=body)

    # -- writes --------------------------------------------------------------------------
    def add(self, images: Any, metadata: Sequence[Mapping[str, Any]] | None, ids: Sequence[str] | None,
            options: dict[str, Any]) -> Call[dict[str, Any]]:
        self.check_writable("add")
        params = drop_none(options)
        if _is_dataframe(images):
            images = pa.Table.from_pandas(images, preserve_index=False)
        if isinstance(images, pa.Table | pa.RecordBatch):
            if "id" in images.schema.names:
                _check_id_column(images.column("id"))
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, images.schema) as writer:
                writer.write(images)
            return self.write("add", "POST", self.path("/rows"), params=params, content=sink.getvalue().to_pybytes(),
                              headers={"content-type": ARROW_STREAM}, parse=read_added)
        items = list(images or [])
        metas = [dict(m) for m in metadata] if metadata is not None else [{} for _ in items]
        if len(metas) != len(items) or (ids is not None and len(ids) != len(items)):
            raise ValueError(f"{len(items)} images need as many metadata dicts and ids")
        row_ids: list[str | None] = list(ids) if ids is not None else [None] * len(items)
        for meta, row_id in zip(metas, row_ids, strict=True):
            if row_id is not None:
                meta["id"] = row_id
        files = [("files", (*image_part(item), "application/octet-stream")) for item in items]
        for meta, (_, (name, _, _)) in zip(metas, files, strict=True):
            check_id(meta["id"] if meta.get("id") is not None else name)  # the id the service will store
        return self.write("add", "POST", self.path("/rows"), params=params, files=files, parse=read_added,
                          data={"metadata": json.dumps(metas, default=str)})

    def update(self, row_id: str, values: Mapping[str, Any], message: str | None,
               author: str | None) -> Call[dict[str, Any]]:
        return self.write("update", "PATCH", self.row_path(row_id), json=dict(values),
                          params=drop_none({"message": message, "author": author}))

    def delete(self, filter: str, message: str | None, author: str | None) -> Call[dict[str, Any]]:
        body = drop_none({"filter": filter, "message": message, "author": author})
        return self.write("delete", "POST", self.path("/delete"), json=body)

    def delete_row(self, row_id: str, message: str | None, author: str | None) -> Call[dict[str, Any]]:
        return self.write("delete_row", "DELETE", self.row_path(row_id), idempotent=True,
                          params=drop_none({"message": message, "author": author}))

    def import_annotations(self, body: Any, format: str, match: str, message: str | None,
                           author: str | None) -> Call[dict[str, Any]]:
        params = drop_none({"format": format, "match": match, "message": message, "author": author})
        return self.write("import_annotations", "POST", self.path("/annotations"), params=params, json=body)

    def curate(self, label: str | None, column: str | None, k: int, threshold: float | None,
               message: str | None, author: str | None) -> Call[dict[str, Any]]:
        return self.write("curate", "POST", self.path("/curate"), main_only=True,
                          json=drop_none({"label": label, "column": column, "k": k, "threshold": threshold}),
                          params=drop_none({"message": message, "author": author}))

    # -- saved views -------------------------------------------------------------------------
    def views(self) -> Call[list[dict[str, Any]]]:
        return Call("GET", self.path("/views"), lambda r: r.json()["views"], idempotent=True)

    def view(self, name: str) -> Call[dict[str, Any]]:
        return Call("GET", self.path(f"/views/{segment(name)}"), read_json, idempotent=True)

    def save_view(self, name: str, filter: str | None, columns: Sequence[str] | None,
                  order_by: str | Sequence[str] | None, ref: Mapping[str, Any] | None) -> Call[dict[str, Any]]:
        body = drop_none({"filter": filter, "columns": listed(columns), "order_by": listed(order_by),
                          "ref": dict(ref) if ref else None})
        return self.write("save_view", "PUT", self.path(f"/views/{segment(name)}"), main_only=True, json=body,
                          idempotent=True)

    def delete_view(self, name: str) -> Call[None]:
        return self.write("delete_view", "DELETE", self.path(f"/views/{segment(name)}"), main_only=True,
                          parse=read_none, idempotent=True)

    # -- maintenance ---------------------------------------------------------------------
    def indexes(self) -> Call[list[dict[str, Any]]]:
        return self.read("GET", self.path("/indexes"), lambda r: r.json()["indexes"])

    def create_index(self, column: str, index_type: str, params: dict[str, Any]) -> Call[dict[str, Any]]:
        return self.write("create_index", "POST", self.path("/indexes"), main_only=True,
                          json={"column": column, "type": index_type, **params})

    def drop_index(self, index: str) -> Call[dict[str, Any]]:
        return self.write("drop_index", "DELETE", self.path(f"/indexes/{segment(index)}"), main_only=True)

    def optimize(self, retention_seconds: float | None, message: str | None = None,
                 author: str | None = None) -> Call[dict[str, Any]]:
        return self.write("optimize", "POST", self.path("/optimize"), main_only=True,
                          params=drop_none({"retention_seconds": retention_seconds, "message": message,
                                            "author": author}))

    def embed(self, model: str, source: str, column: str | None, message: str | None = None,
              author: str | None = None) -> Call[dict[str, Any]]:
        return self.write("embed", "POST", self.path("/embeddings"), main_only=True,
                          json=drop_none({"model": model, "source": source, "column": column}),
                          params=drop_none({"message": message, "author": author}))


def keyword_options(keywords: str | None, keyword_columns: Sequence[str] | None, offset: int, fusion: str | None,
                    weight: float | None) -> KeywordOptions:
    """The search body's keyword and paging fields, those given."""
    return drop_none({"keywords": keywords, "keyword_columns": listed(keyword_columns), "offset": offset or None,
                      "fusion": fusion, "weight": weight})


def image_part(item: ImageSource) -> tuple[str, bytes]:
    """(file name, bytes) of an image given as a path, bytes or a PIL image.

    A path keeps its file name (the row id unless one is given); bytes and PIL images are named by
    their SHA-256, so the same content always gets the same id. PIL images are sent as PNG.
    """
    if isinstance(item, bytes | bytearray | memoryview):
        data = bytes(item)
        return hashlib.sha256(data).hexdigest(), data
    if isinstance(item, str | PathLike):
        path = Path(item)
        return path.name, path.read_bytes()
    if hasattr(item, "save"):
        buf = io.BytesIO()
        item.save(buf, format="PNG")
        data = buf.getvalue()
        return hashlib.sha256(data).hexdigest() + ".png", data
    raise TypeError(f"an image is a path, bytes or a PIL image, not {type(item).__name__}")


def _check_id_column(column: pa.Array | pa.ChunkedArray) -> None:
    """The service's checks of an Arrow ``id`` column, before the upload is sent."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InvalidId(f"the 'id' column must be strings, not {kind}; ids are never converted", code="invalid_id")
    for value in column.to_pylist():
        if id_problem(value) is not None:
            check_id(value)


def dataset_class() -> type[TableDataset]:
    """``lightbox.torch.TableDataset``, importing torch now (it is an optional dependency)."""
    from lightbox.extras import need

    need("torch", "torch", "torch_dataset")
    from lightbox.torch import TableDataset

    return TableDataset


def _plain_user_column(f: Mapping[str, Any]) -> bool:
    """A column a dataset sample carries by default: metadata, not the standard image columns or vectors."""
    kind = str(f["type"])
    return f["name"] not in STANDARD_COLUMNS and not kind.startswith("fixed_size_list") and "binary" not in kind \
        and kind != "blob"


def _is_dataframe(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "columns")


class SkippedFiles(UserWarning):
    """An upload wrote some files and skipped others (each with its reason)."""


def read_added(response: httpx.Response) -> dict[str, Any]:
    """An upload's report; files the service skipped are a warning naming each one and why.

    (When every file was skipped nothing is written and the service answers 422, raised as ``Unprocessable``.)
    """
    report: dict[str, Any] = response.json()
    skipped = report.get("skipped") or []
    if skipped:
        reasons = "; ".join(f"{s.get('file')}: {s.get('reason')}" + (f" ({s['message']})" if s.get("message") else "")
                            for s in skipped[:5])
        more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warn(f"{len(skipped)} of the files were skipped: {reasons}{more}", SkippedFiles, stacklevel=4)
    return report
