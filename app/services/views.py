"""Saved views: a named filter, sort, columns and optional ref, kept in the table's config.

A view is stored as JSON under ``lightbox.view.<name>`` in the config of main's latest version
(``app.store.config``), so a restart and every replica reading the root see it, and saving or deleting
one is a small commit like any write. Views are settings of the table, not of a version: a restore
(which brings back an old version's config with its data) carries the current views over, in a second
small commit when they differ. It is checked when saved (the filter parses against the schema,
the columns and sort columns exist, the ref resolves); a view that stops fitting later (a column it
names was renamed) is still listed, with the error a query through it would get, never a 500.

Applying a view to a query (``apply``): the view's filter is ANDed with the request's, the request's
columns and sort win over the view's when given, and the view's ref is read unless the request names one.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from app.errors import InvalidRef, LightboxError, NotFound
from app.services.query import QuerySpec, plan_query
from app.store import LATEST, Ref, Store
from app.store.config import VIEW_PREFIX, read_config, update_config
from app.store.refs import check_name

__all__ = ["ViewNotFound", "apply", "delete_view", "get_view", "list_views", "save_view"]

REF_KEYS = ("version", "tag", "branch", "as_of")


class ViewNotFound(NotFound):
    code = "view_not_found"


def _ref(stored: dict[str, Any] | None) -> Ref:
    return Ref.parse(**{k: v for k, v in (stored or {}).items() if k in REF_KEYS}) if stored else LATEST


def _spec(view: dict[str, Any]) -> QuerySpec:
    return QuerySpec(filter=view.get("filter"), columns=view.get("columns"), order_by=view.get("order_by") or [],
                     limit=0)


def _problem(store: Store, table: str, view: dict[str, Any]) -> str | None:
    """What a query through the view would be refused with now (None when it fits)."""
    try:
        plan_query(store, table, _ref(view.get("ref")), _spec(view), max_rows=None)
    except LightboxError as exc:
        return str(exc)
    return None


def save_view(store: Store, table: str, name: str, *, filter: str | None = None, columns: list[str] | None = None,
              order_by: list[Any] | None = None, ref: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check the view against the table (a 4xx naming the problem) and store it (replacing one of that name)."""
    check_name(name, "view")
    if ref:
        unknown = [k for k in ref if k not in REF_KEYS]
        if unknown:
            raise InvalidRef(f"a view's ref takes {', '.join(REF_KEYS)}; got {unknown}")
        ref = {k: v for k, v in ref.items() if v is not None}
    view = {"filter": filter or None, "columns": columns or None, "order_by": list(order_by or []),
            "ref": ref or None}
    plan_query(store, table, _ref(view["ref"]), _spec(view), max_rows=None)  # refused here, not when used
    update_config(store, table, {VIEW_PREFIX + name: json.dumps(view, separators=(",", ":"))})
    return {"name": name, **view, "error": None}


def _stored(store: Store, table: str) -> dict[str, dict[str, Any]]:
    views = {}
    for key, text in sorted(read_config(store, table, VIEW_PREFIX).items()):
        try:
            views[key[len(VIEW_PREFIX):]] = dict(json.loads(text))
        except (ValueError, TypeError):
            views[key[len(VIEW_PREFIX):]] = {"filter": None, "columns": None, "order_by": [], "ref": None,
                                             "error": "the stored view is not valid JSON"}
    return views


def list_views(store: Store, table: str) -> list[dict[str, Any]]:
    """Every view of the table, each with ``error``: why a query through it would fail now, or null."""
    return [{"name": name, **view, "error": view.get("error") or _problem(store, table, view)}
            for name, view in _stored(store, table).items()]


def get_view(store: Store, table: str, name: str) -> dict[str, Any]:
    check_name(name, "view")
    view = _stored(store, table).get(name)
    if view is None:
        raise ViewNotFound(f"table {table!r} has no view {name!r}", view=name)
    return {"name": name, **view, "error": view.get("error") or _problem(store, table, view)}


def delete_view(store: Store, table: str, name: str) -> None:
    get_view(store, table, name)  # 404 for a view that is not there
    update_config(store, table, {VIEW_PREFIX + name: None})


def apply(store: Store, table: str, name: str, spec: QuerySpec, ref: Ref) -> tuple[QuerySpec, Ref]:
    """The query ``spec`` at ``ref`` seen through the view ``name``."""
    view = get_view(store, table, name)
    filters = [f for f in (view.get("filter"), spec.filter) if f and f.strip()]
    text = " AND ".join(f"({f})" for f in filters) if len(filters) > 1 else (filters[0] if filters else None)
    merged = replace(spec, filter=text, columns=spec.columns or view.get("columns"),
                     order_by=spec.order_by or view.get("order_by") or [])
    if ref != LATEST or spec.cursor:  # the request's own ref wins; a cursor already pins the version
        return merged, ref
    return merged, _ref(view.get("ref"))
