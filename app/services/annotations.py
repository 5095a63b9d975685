"""Import annotations (COCO JSON, YOLO txt) into list columns of the rows they describe, as one version.

Each matched row gets, one entry per annotation, in these columns:

- ``boxes``: ``list<list<float32>>``, ``[x, y, width, height]`` in pixels (COCO's convention;
  YOLO's normalised centre boxes are converted with the row's width and height);
- ``categories``: ``list<string>``, the category names; ``category_ids``: ``list<int64>``;
- ``segmentation``: ``list<list<list<float32>>>``, each annotation's polygons ``[x1, y1, x2, y2, ...]``
  in pixels (empty for a box-only annotation; COCO RLE masks are not kept and are counted);
- ``annotation_ids``: ``list<int64>`` (COCO ids; line numbers for YOLO).

An image file is matched to a row by ``match``: ``id`` (the file name is the id), ``name`` (the
id's last path part), ``stem`` (that, without its extension), or ``auto`` (id, then a unique
name; for YOLO, whose label files are named after the image's stem, ``auto`` means ``stem``).
Images and annotations that match nothing are reported, not guessed. An image that matches
but has no annotations gets empty lists; rows the file does not mention are left as they were.

The version is logged as ``annotate``, counting the rows whose annotations changed (what ``diff``
shows): rows the file does not mention keep their null columns and are not counted, and importing
a file whose annotations are already stored writes no version.

Bounds (a 422 past them, nothing written): at most ``MAX_PER_IMAGE`` annotations and
``MAX_POINTS_PER_IMAGE`` polygon coordinates per row; ids and category ids are int64.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from app.errors import BadRequest, Conflict, Unprocessable
from app.models import check_fields
from app.store import Store
from app.store.commits import write_turn
from app.store.schema import STANDARD_NAMES
from app.store.upserts import keyed_write
from app.store.writes import merge_columns

Match = Literal["auto", "id", "name", "stem"]
REPORT_LIMIT = 100  # unmatched names listed in a report (all are counted)
MAX_PER_IMAGE = 10_000  # annotations one row may hold (dense crowd sets have hundreds, COCO at most ~90)
MAX_POINTS_PER_IMAGE = 1_000_000  # polygon coordinates one row may hold
INT64 = (-(2**63), 2**63 - 1)
YOLO_FIELDS = ["labels", "classes"]
COLUMNS = {
    "boxes": pa.list_(pa.list_(pa.float32())),
    "categories": pa.list_(pa.string()),
    "category_ids": pa.list_(pa.int64()),
    "segmentation": pa.list_(pa.list_(pa.list_(pa.float32()))),
    "annotation_ids": pa.list_(pa.int64()),
}


class InvalidAnnotations(BadRequest):
    code = "invalid_annotations"


class TooManyAnnotations(Unprocessable):
    code = "too_many_annotations"


def _int64(value: Any, what: str) -> int:
    """An id or category id as the int64 its column holds; a larger number is a 400 naming it."""
    number = int(value)
    if not INT64[0] <= number <= INT64[1]:
        raise InvalidAnnotations(f"{what} {number} does not fit a 64-bit integer", value=str(number))
    return number


def _add(found: list[Annotation], annotation: Annotation, image: str) -> None:
    """Append, refusing an image past ``MAX_PER_IMAGE`` as soon as it gets there (not after parsing it all)."""
    if len(found) >= MAX_PER_IMAGE:
        raise TooManyAnnotations(f"image {image!r} has more than {MAX_PER_IMAGE} annotations, the most one row "
                                 "may hold", image=image, limit=MAX_PER_IMAGE)
    found.append(annotation)


@dataclass
class Annotation:
    box: list[float]
    category_id: int
    category: str
    polygons: list[list[float]] = field(default_factory=list)
    ident: int = 0


@dataclass
class Parsed:
    """Annotations by image file name, plus what could not be placed."""

    by_image: dict[str, list[Annotation]]
    orphans: int = 0  # annotations naming an image the file does not list
    rle: int = 0  # segmentations given as RLE masks (not kept)


def parse_coco(doc: Any) -> Parsed:
    """A COCO ``instances`` document -> annotations per ``file_name``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise InvalidAnnotations("a COCO file is a JSON object with an 'images' list (and 'annotations', "
                                 "'categories')")
    try:
        names = {int(c["id"]): str(c.get("name", c["id"])) for c in doc.get("categories") or []}
        files = {int(im["id"]): str(im["file_name"]) for im in doc["images"]}
        parsed = Parsed({name: [] for name in files.values()})
        for ann in doc.get("annotations") or []:
            image = files.get(int(ann["image_id"]))
            if image is None:
                parsed.orphans += 1
                continue
            category = _int64(ann.get("category_id", -1), "category_id")
            polygons, seg = [], ann.get("segmentation")
            if isinstance(seg, list):
                polygons = [[float(v) for v in poly] for poly in seg if isinstance(poly, list)]
            elif seg:
                parsed.rle += 1
            box = [float(v) for v in ann.get("bbox") or []]
            if len(box) not in (0, 4):
                raise ValueError(f"annotation {ann.get('id')}: bbox has {len(box)} values")
            _add(parsed.by_image[image], Annotation(box, category, names.get(category, str(category)), polygons,
                                                    _int64(ann.get("id", 0), "annotation id")), image)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidAnnotations(f"not a COCO annotation file: {exc!r}") from exc
    return parsed


def parse_yolo(labels: dict[str, str], classes: list[str] | None) -> Parsed:
    """YOLO label files (``{image stem or name: file text}``), each line ``class cx cy w h`` or a
    segment ``class x1 y1 x2 y2 ...``, normalised to 0..1. Boxes stay normalised here; ``import_annotations``
    scales them by each row's size."""
    parsed = Parsed({})
    for image, text in labels.items():
        found = parsed.by_image.setdefault(image, [])
        for number, line in enumerate(text.splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                cls, values = _int64(parts[0], f"{image}, line {number}: class"), [float(v) for v in parts[1:]]
            except ValueError as exc:
                raise InvalidAnnotations(f"{image}, line {number}: not 'class x y ...' numbers") from exc
            if len(values) == 4:
                cx, cy, w, h = values
                box, polygons = [cx - w / 2, cy - h / 2, w, h], []
            elif len(values) >= 6 and len(values) % 2 == 0:
                xs, ys = values[0::2], values[1::2]
                box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                polygons = [values]
            else:
                raise InvalidAnnotations(f"{image}, line {number}: a box needs 4 values, a segment an even number "
                                         f"of at least 6; got {len(values)}")
            name = classes[cls] if classes is not None and 0 <= cls < len(classes) else str(cls)
            _add(found, Annotation(box, cls, name, polygons, number), image)
    return parsed


def parse_body(format: str, doc: Any) -> tuple[Parsed, bool]:
    """A request body (COCO file, or YOLO ``{"labels", "classes"}``) parsed; True when boxes are normalised."""
    if format == "coco":
        return parse_coco(doc), False
    if format == "yolo":
        if isinstance(doc, dict):
            check_fields(doc, YOLO_FIELDS, {"class": "classes", "names": "classes", "label": "labels"})
        labels = doc.get("labels") if isinstance(doc, dict) else None
        classes = doc.get("classes") if isinstance(doc, dict) else None
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise InvalidAnnotations("YOLO labels are sent as {\"labels\": {\"<image>\": \"<txt>\"}, "
                                         "\"classes\": [...]}")
        if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            raise InvalidAnnotations("classes is a list of names")
        return parse_yolo(labels, classes), True
    raise InvalidAnnotations(f"format must be coco or yolo, got {format!r}")


def import_annotations(store: Store, name: str, parsed: Parsed, *, match: Match = "auto", normalised: bool = False,
                       branch: str | None = None, message: str | None = None,
                       author: str | None = None) -> dict[str, Any]:
    """Write the annotations into the matched rows as one version; report what matched and what did not."""
    if match not in ("auto", "id", "name", "stem"):
        raise BadRequest(f"match must be auto, id, name or stem, got {match!r}")
    with write_turn(store, name):  # the rows matched and the columns found are those the write changes
        return _import(store, name, parsed, match, normalised, branch, message, author)


def _import(store: Store, name: str, parsed: Parsed, match: Match, normalised: bool, branch: str | None,
            message: str | None, author: str | None) -> dict[str, Any]:
    snap = store.head(name, branch, fresh=True)
    schema = snap.schema
    needed = ["id", "width", "height"] if normalised else ["id"]  # YOLO's boxes are fractions of the size
    missing = [c for c in needed if c not in schema.names]
    if missing:
        raise InvalidAnnotations(f"table {name!r} has no column(s) {missing}, which these annotations need",
                                 columns=missing)
    rows = snap.read(needed).to_pylist()
    finder = _Finder([r["id"] for r in rows], "stem" if normalised and match == "auto" else match)
    sizes = {r["id"]: (r.get("width") or 0, r.get("height") or 0) for r in rows}
    matched: dict[str, list[Annotation]] = {}
    unmatched_images, unmatched_annotations = [], parsed.orphans
    for image, found in parsed.by_image.items():
        row_id = finder.find(image)
        if row_id is None:
            unmatched_images.append(image)
            unmatched_annotations += len(found)
        else:
            matched.setdefault(row_id, []).extend(found)
    _check_bounds(matched)
    present = [c for c in COLUMNS if c in schema.names]
    clash = [c for c in present if schema.field(c).type != COLUMNS[c]] + [c for c in COLUMNS if c in STANDARD_NAMES]
    if clash:
        raise Conflict(f"column(s) {clash} exist with another type; rename them first", columns=clash)
    if present and len(present) != len(COLUMNS):
        raise Conflict(f"the table has some annotation columns ({present}) but not all of {list(COLUMNS)}")
    version, counts = None, {}
    if matched:
        table = _table(matched, sizes if normalised else None)
        extra = {"lightbox:op": "annotate"}
        if present:  # rows whose annotations are already these are left alone (and not counted)
            version, counts = keyed_write(store, name, table, mode="update", branch=branch, message=message,
                                          author=author, extra=extra)
        else:
            version, counts = merge_columns(store, name, table, branch=branch, message=message, author=author,
                                            extra=extra)
    return {"version": version or store.head(name, branch).version, "rows_updated": counts.get("updated", 0),
            "rows_unchanged": counts.get("unchanged", 0),
            "annotations": sum(len(v) for v in matched.values()), "columns": list(COLUMNS),
            "unmatched_images": len(unmatched_images), "unmatched_image_names": unmatched_images[:REPORT_LIMIT],
            "unmatched_annotations": unmatched_annotations, "rle_segmentations_skipped": parsed.rle}


def _check_bounds(matched: dict[str, list[Annotation]]) -> None:
    """Per row (several files may name one row): at most ``MAX_PER_IMAGE`` annotations and
    ``MAX_POINTS_PER_IMAGE`` polygon coordinates."""
    for row_id, items in matched.items():
        points = sum(len(p) for a in items for p in a.polygons)
        if len(items) > MAX_PER_IMAGE or points > MAX_POINTS_PER_IMAGE:
            raise TooManyAnnotations(f"row {row_id!r} would hold {len(items)} annotations with {points} polygon "
                                     f"coordinates; a row holds at most {MAX_PER_IMAGE} and {MAX_POINTS_PER_IMAGE}",
                                     id=row_id, annotations=len(items), points=points, limit=MAX_PER_IMAGE,
                                     points_limit=MAX_POINTS_PER_IMAGE)


class _Finder:
    def __init__(self, ids: list[str], match: Match) -> None:
        self.match = match
        self.ids = set(ids)
        self.names: dict[str, list[str]] = defaultdict(list)
        self.stems: dict[str, list[str]] = defaultdict(list)
        for row_id in ids:
            base = row_id.rpartition("/")[2]
            self.names[base].append(row_id)
            self.stems[base.rpartition(".")[0] or base].append(row_id)

    def find(self, image: str) -> str | None:
        if self.match in ("auto", "id") and image in self.ids:
            return image
        base = image.replace("\\", "/").rpartition("/")[2]
        if self.match in ("auto", "name"):
            found = self.names.get(base, [])
        elif self.match == "stem":  # YOLO label files are named by stem already ("img.v2" stays whole)
            found = self.stems.get(base, []) or self.stems.get(base.rpartition(".")[0] or base, [])
        else:
            found = []
        return found[0] if len(found) == 1 else None  # ambiguous names are not guessed


def _table(matched: dict[str, list[Annotation]], sizes: dict[str, tuple[int, int]] | None) -> pa.Table:
    cols: dict[str, list[Any]] = {"id": [], **{c: [] for c in COLUMNS}}
    for row_id, items in matched.items():
        w, h = sizes.get(row_id, (1, 1)) if sizes is not None else (1, 1)
        cols["id"].append(row_id)
        cols["boxes"].append([_scale(a.box, w, h) for a in items])
        cols["categories"].append([a.category for a in items])
        cols["category_ids"].append([a.category_id for a in items])
        cols["segmentation"].append([[_scale(p, w, h) for p in a.polygons] for a in items])
        cols["annotation_ids"].append([a.ident for a in items])
    schema = pa.schema([pa.field("id", pa.string(), nullable=False),
                        *(pa.field(c, t) for c, t in COLUMNS.items())])
    return pa.table(cols, schema=schema)


def _scale(values: list[float], w: int, h: int) -> list[float]:
    return [v * (w if i % 2 == 0 else h) for i, v in enumerate(values)]
