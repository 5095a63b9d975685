"""What ``/openapi.json`` declares each operation may answer: the truth a client (and the fuzz) checks.

FastAPI documents only a 200 and its own validation 422; Lightbox answers every refusal in one error
shape with the status the error class carries, and some routes answer images, ``.npy`` arrays or
Arrow IPC. ``declare_responses`` adds those to the generated document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.lancedb_compat.fields import OPERATIONS
from app.responses import ARROW_FILE, ARROW_STREAM

# The one error shape, inline (a model given to FastAPI after the routes exist would not be rendered).
ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "title": "Error",
    "properties": {"error": {
        "type": "object", "required": ["code", "message", "detail"],
        "properties": {
            "code": {"type": "string", "description": "stable, machine-readable: table_not_found, ..."},
            "message": {"type": "string", "description": "for a person: what was wrong and how to fix it"},
            "detail": {"type": "object", "description": "structured context (a name, a limit, field errors)"},
        },
    }},
}

# LanceDB namespace-spec clients (requests with ?delimiter=) get the spec's ErrorResponse instead.
NAMESPACE_ERROR_SCHEMA = {
    "type": "object", "required": ["error", "code"], "title": "NamespaceError",
    "properties": {"error": {"type": "string"}, "code": {"type": "integer", "description": "the spec's error number"},
                   "detail": {"type": "string"}, "instance": {"type": ["string", "null"]}},
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
LANCEDB_ERROR_REF = {"anyOf": [ERROR_REF, {"$ref": "#/components/schemas/NamespaceError"}]}

# Any operation: bad parameters or body (400, 422 when well-formed but refused), a missing key (401) or a
# read-only one writing (403), something named that does not exist (404), a body too slow (408) or too
# large (413) or of a type the operation does not take (415), a conflicting state (409).
COMMON_ERRORS = {
    400: "Invalid request: a parameter or the body is malformed or out of range",
    401: "No valid API key (when the service has keys)",
    403: "A read-only key asked for a write",
    404: "A table, row, version, tag, branch or index that does not exist",
    408: "The request body stalled",
    409: "The request conflicts with the table's state",
    413: "The request body exceeds the limit",
    415: "The body's media type is not one this operation takes",
    422: "Well-formed, but cannot be carried out on this data",
}
LANCEDB_ERRORS = {501: "A LanceDB-protocol operation Lightbox does not serve"}
RANGE_ERRORS = {416: "The requested byte range is outside the image"}
NOT_MODIFIED = {304: {"description": "The client's copy (If-None-Match) is current"}}

# Success answers that are not (only) JSON, by route path and method.
IMAGE = {"image/*": {"schema": {"type": "string", "format": "binary"}}}
NPY = {"application/x-npy": {"schema": {"type": "string", "format": "binary"}}}
ARROW = {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}}
ARROW_IPC_FILE = {ARROW_FILE: {"schema": {"type": "string", "format": "binary"}}}
SUCCESS: dict[tuple[str, str], dict[int | str, dict[str, Any]]] = {
    ("GET", "/api/v1/tables/{table}/rows/{row_id}/image"): {
        200: {"content": IMAGE}, 206: {"description": "The requested byte range", "content": IMAGE}, **NOT_MODIFIED},
    ("GET", "/api/v1/tables/{table}/rows/{row_id}/thumbnail"): {200: {"content": IMAGE}, **NOT_MODIFIED},
    ("GET", "/api/v1/tables/{table}/rows/{row_id}/array"): {200: {"content": NPY}},
    ("POST", "/api/v1/tables/{table}/query"): {200: {"content": ARROW}},
    ("POST", "/api/v1/tables/{table}/fetch"): {200: {"content": ARROW}},
    ("POST", "/api/v1/tables/{table}/search"): {200: {"content": ARROW}},
    ("POST", "/v1/table/{table_id}/query"): {200: {"content": ARROW_IPC_FILE}},
    ("GET", "/api/v1/tables/{table}/export"): {200: {"content": {
        kind: {"schema": {"type": "string", "format": "binary"}}
        for kind in ("application/vnd.apache.parquet", "application/x-tar", "application/zip")}}},
}

# Bodies the routes read themselves (so FastAPI cannot document them).
BINARY = {"type": "string", "format": "binary"}
STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
REF_FIELDS = {"version": INT, "branch": STR}
# The request object of each LanceDB-protocol operation (the fields it reads, per the LanceDB REST protocol).
LANCEDB_FIELDS: dict[str, dict[str, Any]] = {
    "describe": REF_FIELDS, "exists": REF_FIELDS, "stats": REF_FIELDS, "index/list": REF_FIELDS,
    "index/{index_name}/stats": REF_FIELDS, "tags/list": {}, "drop": {},
    "count_rows": {**REF_FIELDS, "predicate": STR},
    "version/list": {"branch": STR, "limit": INT, "descending": BOOL},
    "tags/create": {"tag": STR, **REF_FIELDS}, "tags/update": {"tag": STR, **REF_FIELDS},
    "tags/delete": {"tag": STR}, "tags/version": {"tag": STR}, "restore": {**REF_FIELDS, "tag": STR},
    "delete": {"predicate": STR, "branch": STR},
    "update": {"predicate": STR, "branch": STR, "updates": {"type": "array", "items": {
        "type": "array", "items": STR, "minItems": 2, "maxItems": 2}}},
    "create_index": {"column": STR, "index_type": STR, "name": STR, "replace": BOOL, "metric_type": STR,
                     "distance_type": STR, "num_partitions": INT, "num_sub_vectors": INT, "num_bits": INT},
    "create_scalar_index": {"column": STR, "index_type": STR, "name": STR, "replace": BOOL},
    "query": {**REF_FIELDS, "vector": {"type": "array", "items": {"type": "number"}}, "k": INT, "filter": STR,
              "columns": {"type": "array", "items": STR}, "prefilter": BOOL, "nprobes": INT, "refine_factor": INT,
              "offset": INT, "with_row_id": BOOL, "fast_search": BOOL, "bypass_vector_index": BOOL,
              "distance_type": STR, "vector_column": STR},
}


LANCEDB_REQUIRED = {"tags/create": ["tag", "version"], "tags/update": ["tag", "version"], "tags/delete": ["tag"],
                    "tags/version": ["tag"], "delete": ["predicate"], "update": ["updates"],
                    "create_index": ["column"], "create_scalar_index": ["column"]}


def _lancedb_json(op: str) -> dict[str, Any]:
    """The request object: every field the operation accepts (typed where it is read), and no other."""
    typed = LANCEDB_FIELDS.get(op, {})
    schema: dict[str, Any] = {"type": "object", "properties": typed,
                              "description": "The LanceDB request object of this operation"}
    if op in OPERATIONS:
        schema["properties"] = {name: typed.get(name, {}) for name in OPERATIONS[op]}
        schema["additionalProperties"] = False
    if op in LANCEDB_REQUIRED:
        schema["required"] = LANCEDB_REQUIRED[op]
    return {"content": {"application/json": {"schema": schema}}}


LANCEDB_ARROW = {"content": {ARROW_STREAM: {"schema": BINARY}}}
UPLOAD = {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": BINARY}, "metadata": {"type": "string"},
        "mode": {"type": "string", "enum": ["insert", "upsert"]}, "dedup": {"type": "string"},
        "message": {"type": "string"}, "author": {"type": "string"}, "tag": {"type": "string"},
        "branch": {"type": "string"}}}},
    ARROW_STREAM: {"schema": BINARY},
}}


BATCH = {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": BINARY}, "metadata": {"type": "string"}}}},
    ARROW_STREAM: {"schema": BINARY},
}}


def _request_body(path: str, method: str) -> dict[str, Any] | None:
    if method == "POST" and path == "/api/v1/tables/{table}/rows":
        return UPLOAD
    if method == "POST" and path == "/api/v1/tables/{table}/uploads/{upload_id}/batches":
        return BATCH
    if method == "POST" and path.startswith("/v1/table/{table_id}/"):
        op = path.removeprefix("/v1/table/{table_id}/")
        return LANCEDB_ARROW if op in ("create", "insert", "merge_insert") else _lancedb_json(op)
    if method == "POST" and path.startswith("/v1/"):
        return _lancedb_json("")
    return None


def declare_responses(app: FastAPI) -> None:
    """Have ``app.openapi()`` declare the error answers (in the error shape), the non-JSON successes, and the
    request bodies of the routes that read their body themselves."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's, cached until the routes change; the additions are idempotent
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Error"], components["NamespaceError"] = ERROR_SCHEMA, NAMESPACE_ERROR_SCHEMA
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                _declare(path, method.upper(), operation.setdefault("responses", {}))
                body = _request_body(path, method.upper())
                if body is not None:
                    operation.setdefault("requestBody", body)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _declare(path: str, method: str, responses: dict[str, Any]) -> None:
    errors, shape = dict(COMMON_ERRORS), ERROR_REF
    if path.startswith("/v1/"):
        errors, shape = errors | LANCEDB_ERRORS, LANCEDB_ERROR_REF
    if path.endswith("/image"):
        errors |= RANGE_ERRORS
    for status, description in errors.items():
        # FastAPI's own 422 describes a body this service never sends (validation answers 400)
        if str(status) not in responses or status == 422:
            responses[str(status)] = {"description": description,
                                      "content": {"application/json": {"schema": shape}}}
    for status, extra in SUCCESS.get((method, path), {}).items():
        declared = responses.setdefault(str(status), {"description": extra.get("description", "")})
        declared.setdefault("content", {}).update(extra.get("content", {}))
