"""Annotation files read on the client: a COCO JSON file as is; YOLO labels (a folder of ``.txt``
files named after their images, or one file) as ``{"labels": {stem: text}, "classes": [...]}``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def annotation_body(source: str | os.PathLike[str] | Mapping[str, Any], format: str,
                    classes: str | os.PathLike[str] | Sequence[str] | None = None) -> Any:
    """The JSON body ``POST .../annotations?format=`` takes, from a path or an already-loaded document."""
    if format not in ("coco", "yolo"):
        raise ValueError(f"format must be coco or yolo, got {format!r}")
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    if format == "coco":
        return json.loads(path.read_text())
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    names = [p for p in files if p.name != "classes.txt"]
    if classes is None and path.is_dir() and (path / "classes.txt").exists():
        classes = path / "classes.txt"
    if isinstance(classes, str | os.PathLike):
        classes = [line.strip() for line in Path(classes).read_text().splitlines() if line.strip()]
    return {"labels": {p.stem: p.read_text() for p in names}, "classes": list(classes) if classes else None}
