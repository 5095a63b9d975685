"""What an upload session is asked to do, fixed when it begins; checked before anything is read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from app.errors import BadRequest, Unprocessable
from app.store.catalog import check_name
from app.store.writes import check_tag_name
from ingest.probe import DEFAULT_MAX_PIXELS

MODES = ("insert", "upsert")
DEDUPS = ("id", "content", "none")
VERIFY = ("header", "decode")
TEXT_OPTIONS = ("message", "author", "tag", "branch", "embed", "embed_text")
MAX_FILE_BYTES = 2 * 1024**3


@dataclass
class UploadOptions:
    """``mode``: insert (an id already stored is skipped) or upsert (its row is replaced; a row whose values
    all equal the stored ones is left alone as ``unchanged``); ``dedup``: ids are always unique,
    ``content`` also skips bytes already stored; ``branch`` is created from main's latest when new;
    ``embed`` (a model) adds a vector column to a new table from the images, or from the text column
    ``embed_text``; the table's own vector columns are always filled with the models they record."""

    mode: str = "insert"
    dedup: str = "id"
    branch: str | None = None
    embed: str | None = None
    embed_text: str | None = None
    message: str | None = None
    author: str | None = None
    tag: str | None = None
    verify: str = "header"
    max_pixels: int = DEFAULT_MAX_PIXELS
    thumbnails: bool = True  # render and keep the gallery's thumbnails of the images written
    # one-shot writes only (not on the wire): refuse every row when one cannot be stored (the LanceDB
    # protocol's writes are all or nothing), and ids to delete in the same version, given the ids written
    strict: bool = False
    delete_ids: Callable[[set[str]], list[str]] | None = None

    @classmethod
    def parse(cls, given: Mapping[str, Any] | None) -> UploadOptions:
        """Options from a request body or query (unknown names are a 422 naming them)."""
        given = dict(given or {})
        wire = {f.name for f in fields(cls)} - {"strict", "delete_ids"}
        unknown = sorted(set(given) - wire)
        if unknown:
            raise Unprocessable(f"unknown upload option(s) {unknown}; known: {sorted(wire)}", unknown=unknown)
        for name in TEXT_OPTIONS:
            if given.get(name) is not None and not isinstance(given[name], str):
                raise BadRequest(f"option {name!r} must be text", option=name)
        max_pixels = given.get("max_pixels", DEFAULT_MAX_PIXELS)
        if isinstance(max_pixels, str) and max_pixels.isdigit():
            max_pixels = int(max_pixels)
        if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or not 0 < max_pixels <= DEFAULT_MAX_PIXELS:
            raise BadRequest(f"max_pixels is a whole number from 1 to {DEFAULT_MAX_PIXELS}", option="max_pixels")
        opts = cls(**{**{k: v for k, v in given.items() if v is not None}, "max_pixels": max_pixels})
        opts.check()
        return opts

    def check(self) -> None:
        for name, value, allowed in (("mode", self.mode, MODES), ("dedup", self.dedup, DEDUPS),
                                     ("verify", self.verify, VERIFY)):
            if value not in allowed:
                raise BadRequest(f"{name} is one of {'|'.join(allowed)}, got {value!r}", option=name)
        if self.branch is not None:
            check_name(self.branch, "branch")
        if self.tag is not None:
            check_tag_name(self.tag)
        if not isinstance(self.thumbnails, bool):
            raise BadRequest("thumbnails is true or false", option="thumbnails")
        if self.embed_text and not self.embed:
            raise Unprocessable("embed_text needs embed: the model that embeds that text column")

    def public(self) -> dict[str, Any]:
        """The options as the session's state shows them."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("strict", "delete_ids")}
