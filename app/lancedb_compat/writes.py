"""Writes from the LanceDB clients, through the same paths as native uploads.

Rows with an ``image`` column, sent to an image table, are an upload of one batch exactly as an Arrow
upload to ``POST /api/v1/tables/{t}/rows`` is (``app.services.uploads``): every image is probed and
hashed, any row that cannot be stored refuses the write, and vector columns are filled with the model
they record. Rows for any other table go
through ``append_rows`` (cast to the table's schema, ids kept unique). Keyed writes (update,
merge_insert, overwrite) are ``keyed_write``s on ``id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from app.errors import BadRequest, LightboxError, Unprocessable
from app.filters import tokenize
from app.services import tables as tables_svc
from app.services.query import QuerySpec, plan_query
from app.services.uploads import UploadOptions, add_images
from app.services.writes import IMMUTABLE, append_rows, delete_rows
from app.store import Ref, Store
from app.store.ids import SHOWN, check_id_column
from app.store.schema import STANDARD_NAMES, image_schema, is_image_table, is_vector, vector_meta
from app.store.upserts import keyed_write, write_turn
from embeddings.registry import Registry


class DuplicateIds(Unprocessable):
    code = "duplicate_ids"


class AlreadyExists(BadRequest):
    """The clients read "a 400 whose body says `already exists`" as TableAlreadyExists."""

    code = "table_exists"


CREATE_MODES = ("create", "overwrite", "exist_ok")
DeleteIds = Callable[[set[str]], list[str]]


def create_table(store: Store, registry: Registry, name: str, rows: pa.Table, mode: str) -> int:
    """A new table shaped like ``rows`` (an image table when they carry ``id`` and ``image`` bytes)."""
    if mode not in CREATE_MODES:
        raise BadRequest(f"mode must be one of {', '.join(CREATE_MODES)}, got {mode!r}")
    if "id" in rows.column_names:
        _check_ids(_new_schema(rows.schema), rows)  # before an existing table is dropped or a new one made
        _refuse_repeated_ids(rows)
    if store.exists(name):
        if mode == "exist_ok":
            return store.head(name).version
        if mode == "create":
            raise AlreadyExists(f"table {name!r} already exists", table=name)
    _refuse_unstorable(rows)  # before an old table is dropped: a refused overwrite must leave it be
    if store.exists(name):
        tables_svc.drop_table(store, name)
    tables_svc.create_table(store, name, _new_schema(rows.schema))
    try:
        return int(add_rows(store, registry, name, rows)["version"])
    except LightboxError:  # refused rows: no table is left behind by a create that failed
        tables_svc.drop_table(store, name)
        raise


def _refuse_unstorable(rows: pa.Table) -> None:
    """422 when rows for a new image table hold something the write would refuse (an image that is not
    one, a missing id), found without writing anything."""
    from ingest.probe import ProbeError, probe

    if not _makes_image_table(rows.schema):
        return
    refused = []
    for key, image in zip(rows.column("id").to_pylist(), rows.column("image").to_pylist(), strict=True):
        if key is None:
            refused.append({"file": None, "reason": "missing_id", "message": "every row needs an id"})
            continue
        try:
            probe(image or b"")
        except ProbeError as exc:
            refused.append({"file": str(key), "reason": exc.reason, "message": exc.message})
    if refused:
        first = refused[0]
        raise Unprocessable(f"{len(refused)} row(s) refused, nothing written; first: {first['file']}: "
                            f"{first['reason']} ({first['message']})", refused=refused)


def _makes_image_table(schema: pa.Schema) -> bool:
    """Rows that make an image table: an ``id`` and ``image`` bytes."""
    image = schema.field("image") if schema.names.count("image") == 1 else None
    return "id" in schema.names and image is not None and (pa.types.is_binary(image.type)
                                                           or pa.types.is_large_binary(image.type))


def _new_schema(schema: pa.Schema) -> pa.Schema:
    if _makes_image_table(schema):
        return image_schema([f for f in schema if f.name not in STANDARD_NAMES])
    return schema


def add_rows(store: Store, registry: Registry, name: str, rows: pa.Table, *, mode: str = "insert",
             branch: str | None = None, delete_ids: DeleteIds | None = None) -> dict[str, Any]:
    """Add (``insert``: ids already there are kept) or upsert rows, all or nothing.

    Every row is checked before anything is written: one that cannot be stored (an ``image`` that is
    not an image, a value that does not fit its column) refuses the write with a 422 and the table is
    left as it was. ``delete_ids`` (given the ids written, the ids to remove) deletes in the same version.
    Returns the write's report: ``{"version", "inserted", "updated", "deleted", "skipped"}``.
    """
    _refuse_repeated_ids(rows)
    if not rows.num_rows:
        if delete_ids is None:
            return {"version": store.head(name, branch).version, "inserted": 0, "updated": 0, "deleted": 0,
                    "skipped": []}
        with write_turn(store, name):
            out = delete_rows(store, name, ids=delete_ids(set()) or [], branch=branch)
        return {"version": out["version"], "inserted": 0, "updated": 0, "deleted": out["deleted"], "skipped": []}
    schema = store.head(name, branch).schema
    if is_image_table(schema) and "image" in rows.column_names:
        opts = UploadOptions(mode=mode, branch=branch, strict=True, delete_ids=delete_ids)
        opts.check()
        report = add_images(store, registry, name, _image_rows(rows, schema), opts)
    else:
        report = append_rows(store, name, rows, mode=mode, branch=branch, delete_ids=delete_ids)
    return {"deleted": 0, **report}


def _refuse_repeated_ids(rows: pa.Table) -> None:
    """One batch naming an id twice is a 422 naming the ids, not a write that quietly keeps the first row."""
    if "id" not in rows.column_names or rows.num_rows < 2:
        return
    try:
        counts = pc.value_counts(rows.column("id"))
    except pa.ArrowNotImplementedError:  # ids of a type that cannot be counted are refused by the id checks
        return
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        ids = repeated.field("values").to_pylist()
        shown = ", ".join(repr(i) for i in ids[:SHOWN]) + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")
        raise DuplicateIds(f"{len(ids)} id(s) appear more than once in these rows: {shown}; nothing was written",
                           ids=ids[:SHOWN], count=len(ids))


def _image_rows(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """Metadata beside the bytes: the columns the probe computes (and recorded embeddings) are its own.

    The ``image`` column must hold bytes (a 422 otherwise, before anything is written)."""
    from app.store.schema import check_image_bytes

    check_image_bytes(rows)
    computed = (STANDARD_NAMES - {"id", "image"}) | {
        f.name for f in schema if is_vector(f) and vector_meta(f).get("model")}
    return rows.drop_columns([c for c in rows.column_names if c in computed])


def overwrite(store: Store, registry: Registry, name: str, rows: pa.Table,
              branch: str | None = None) -> dict[str, Any]:
    """The table's rows become ``rows``, as one version: upsert them and delete every other id (history is
    kept). All or nothing: rows that are refused leave the table as it was."""
    schema = store.head(name, branch).schema
    if "id" not in schema.names or "id" not in rows.column_names:
        raise BadRequest("overwrite replaces rows by id, and the table or the rows have no id column")
    _check_ids(schema, rows)

    def others(written: set[str]) -> list[str]:
        return sorted(_current_ids(store, name, branch) - written)

    return add_rows(store, registry, name, rows, mode="upsert", branch=branch, delete_ids=others)


def merge_insert(store: Store, registry: Registry, name: str, rows: pa.Table, params: dict[str, Any],
                 branch: str | None = None) -> dict[str, int]:
    """``merge_insert("id")`` with any of update-all, insert-all and delete-by-source (by id), as one version."""
    if params.get("on") != ["id"]:
        raise BadRequest(f"merge_insert joins on 'id' here, got on={params.get('on')}")
    if params.get("when_matched_update_all_filt"):
        raise BadRequest("when_matched_update_all with a condition is not supported; update all matches")
    if "id" not in rows.column_names:
        raise BadRequest("merge_insert rows need an 'id' column")
    _check_ids(store.head(name, branch).schema, rows)
    update, insert = _flag(params, "when_matched_update_all"), _flag(params, "when_not_matched_insert_all")
    given = {str(i) for i in rows.column("id").to_pylist() if i is not None}
    delete_ids: DeleteIds | None = None
    if _flag(params, "when_not_matched_by_source_delete"):
        where = params.get("when_not_matched_by_source_delete_filt")

        def delete_ids(_written: set[str]) -> list[str]:
            return sorted(_ids_where(store, name, where, branch) - given)

    if update and not insert:  # update only: rows whose id is absent are dropped here
        before = _current_ids(store, name, branch)
        rows = rows.filter(pa.array([str(i) in before for i in rows.column("id").to_pylist()]))
    if not (update or insert):
        rows = rows.slice(0, 0)
    report = add_rows(store, registry, name, rows, mode="upsert" if update else "insert", branch=branch,
                      delete_ids=delete_ids)
    return {"version": int(report["version"]), "num_inserted_rows": report["inserted"],
            "num_updated_rows": report["updated"], "num_deleted_rows": report["deleted"]}


def _current_ids(store: Store, name: str, branch: str | None) -> set[str]:
    """The ids at the branch's latest version, read afresh (not from a handle cached for reads)."""
    return {i for i in store.head(name, branch, fresh=True).read(["id"]).column("id").to_pylist() if i is not None}


def _check_ids(schema: pa.Schema, rows: pa.Table) -> None:
    """Ids are checked before anything is matched or deleted (a table whose ``id`` is not a string keeps its own)."""
    if "id" in schema.names and pa.types.is_string(schema.field("id").type):
        check_id_column(rows.column("id"))


def _flag(params: dict[str, Any], key: str) -> bool:
    value = params.get(key)
    return str(value).lower() in ("true", "1") if value is not None else False


def _ids_where(store: Store, name: str, predicate: str | None, branch: str | None) -> set[str]:
    if not predicate:
        return _current_ids(store, name, branch)
    plan = plan_query(store, name, Ref(branch=branch), QuerySpec(filter=predicate, columns=["id"], limit=None),
                      max_rows=None)
    return {str(i) for i in plan.stream().read_all().column("id").to_pylist()}


def update(store: Store, name: str, predicate: str | None, updates: Any,
           branch: str | None = None) -> dict[str, int]:
    """``UPDATE t SET col = literal WHERE predicate`` as one keyed write of the matching ids."""
    schema = store.head(name, branch).schema
    values = _literal_updates(schema, updates)
    if "id" not in schema.names:
        raise BadRequest("update writes rows by id, and this table has no id column")
    ids = sorted(_ids_where(store, name, predicate or "true", branch))
    if not ids:
        return {"rows_updated": 0, "version": store.head(name, branch).version}
    arrays = {"id": pa.array(ids, pa.string())}
    for column, value in values.items():
        try:
            arrays[column] = pa.array([value] * len(ids)).cast(schema.field(column).type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError) as exc:
            raise Unprocessable(f"{value!r} does not fit column {column!r}: {exc}") from exc
    version, counts = keyed_write(store, name, pa.table(arrays), mode="update", branch=branch)
    return {"rows_updated": counts.get("updated", 0), "version": version or store.head(name, branch).version}


def _literal_updates(schema: pa.Schema, updates: Any) -> dict[str, Any]:
    if isinstance(updates, dict):
        updates = list(updates.items())
    if not isinstance(updates, list) or not updates:
        raise BadRequest("updates must be a non-empty list of [column, value] pairs")
    out: dict[str, Any] = {}
    for pair in updates:
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not all(isinstance(p, str) for p in pair):
            raise BadRequest("each update is a [column, SQL literal] pair of strings")
        column, expression = pair
        if column not in schema.names:
            raise Unprocessable(f"unknown column {column!r}", column=column, columns=schema.names)
        if column in IMMUTABLE or column == "id":
            raise Unprocessable(f"column {column!r} describes the stored image or keys the row; it cannot be updated")
        out[column] = sql_literal(expression)
    return out


def sql_literal(text: str) -> Any:
    """The value of a SQL literal (number, string, TRUE/FALSE/NULL); anything else is a 400."""
    tokens = [t for t in tokenize(text) if t.kind != "end"]
    sign = 1
    if len(tokens) == 2 and tokens[0].kind == "op" and tokens[0].text in "+-":
        sign = -1 if tokens[0].text == "-" else 1
        tokens = tokens[1:]
    if len(tokens) == 1:
        tok = tokens[0]
        if tok.kind == "num":
            number = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
            return sign * number
        if tok.kind == "str" and sign == 1:
            quote = tok.text[0]
            return tok.text[1:-1].replace(quote * 2, quote)
        if tok.kind == "kw" and tok.text in ("TRUE", "FALSE", "NULL") and sign == 1:
            return {"TRUE": True, "FALSE": False, "NULL": None}[tok.text]
    raise BadRequest(f"update values must be SQL literals (a number, 'text', true, false or null), got {text!r}")
