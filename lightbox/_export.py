"""Where an export lands on disk: one Parquet file, WebDataset shards, or an ImageFolder tree.

An export is a list of ``Part``s, each the query string of one ``GET .../export`` and the file its
streamed body is written to; ``ExportJob.finish`` then unpacks an ImageFolder archive into its tree.
The sync and async tables, and the CLI working on a data root, all run the same job, all or
nothing: a failure removes the parts already written, and a tree is unpacked beside its destination
first and moved into it only once whole.
"""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from lightbox.errors import LightboxError

FORMATS = ("parquet", "webdataset", "imagefolder")
SHARD_SIZE = 10_000


@dataclass
class Part:
    params: dict[str, Any]
    path: Path

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """The part's file, removed again if writing it fails (no half-written export is left). Its folder
        is the export's destination folder, whose parent ``plan_export`` checked."""
        self.path.parent.mkdir(exist_ok=True)
        try:
            with open(self.path, "wb") as sink:
                yield sink
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise


@dataclass
class ExportJob:
    format: str
    dest: Path
    rows: int
    version: int | None
    parts: list[Part]
    extract_into: Path | None = None  # an ImageFolder tar to unpack here
    paths: list[str] = field(default_factory=list)

    @contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """Around writing the parts and ``finish``: if anything fails, the parts written so far go too."""
        try:
            yield
        except BaseException:
            for part in self.parts:
                part.path.unlink(missing_ok=True)
            raise

    def finish(self) -> dict[str, Any]:
        """Unpack an ImageFolder archive (safely: no absolute paths, no links) and say what was written."""
        if self.extract_into is not None:
            archive = self.parts[0].path
            _unpack(archive, self.extract_into)
            archive.unlink()
            self.paths = [str(self.extract_into)]
        else:
            self.paths = [str(p.path) for p in self.parts]
        return {"format": self.format, "rows": self.rows, "version": self.version, "paths": self.paths}


def _unpack(archive: Path, dest: Path) -> None:
    """Extract into a staging folder inside ``dest``, then move each file into place: an extraction
    that fails (a name the file system refuses, a full disk) leaves ``dest`` as it was."""
    staging = dest / f".lightbox-unpack-{uuid.uuid4().hex}"
    try:
        with tarfile.open(archive, mode="r|") as tar:
            tar.extractall(staging, filter="data")
        moves = []
        for folder, _, files in os.walk(staging):
            target = dest / Path(folder).relative_to(staging)
            if target.exists() and not target.is_dir():
                raise ExportConflict(f"cannot unpack into {dest}: {target} is a file where the export has a folder")
            for name in files:
                if (target / name).is_dir():
                    raise ExportConflict(f"cannot unpack into {dest}: {target / name} is a folder where the export "
                                         "has a file")
                moves.append((Path(folder) / name, target / name))
        for source, target in moves:  # checked first, so a clash is refused before anything lands in dest
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class ExportConflict(LightboxError):
    """The destination holds something where the export would put something else; nothing was changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="export_conflict")


def plan_export(table: str, dest: str | os.PathLike[str], format: str, *, rows: int, version: int | None,
                filter: str | None, columns: Sequence[str] | None, label_column: str, archive: str | None,
                shard_size: int | None, ref: Mapping[str, Any]) -> ExportJob:
    """The parts of an export of ``rows`` rows at ``ref`` (a pinned ref, unless it is a branch head).

    - parquet: ``dest`` is the file (or, an existing folder, ``dest/{table}.parquet``);
    - webdataset: ``dest`` is a folder of ``{table}-000000.tar`` shards of ``shard_size`` samples
      (one shard when the ref is a moving branch head, so every shard reads the same version);
    - imagefolder: ``dest`` is the folder the ``label/file`` tree is unpacked into, or, with
      ``archive="tar"|"zip"``, the archive file itself.

    The folder ``dest`` is in must exist (as for ``cp`` or ``tar``): a typo never becomes a new tree of
    folders. A destination folder itself (webdataset, imagefolder) is created when missing.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    base: dict[str, Any] = {k: v for k, v in ref.items() if v is not None}
    base["format"] = format
    if filter:
        base["filter"] = filter
    if columns:
        base["columns"] = ",".join(columns)
    out = Path(dest)
    _check_parent(out)
    if format == "parquet":
        path = out / f"{table}.parquet" if out.is_dir() else out
        return ExportJob(format, out, rows, version, [Part(base, path)])
    if format == "imagefolder":
        params = {**base, "label_column": label_column, "archive": archive or "tar"}
        if archive:
            return ExportJob(format, out, rows, version, [Part(params, out)])
        temp = out / f".lightbox-export-{uuid.uuid4().hex}.tar"
        return ExportJob(format, out, rows, version, [Part(params, temp)], extract_into=out)
    size = max(1, shard_size or SHARD_SIZE)
    count = 1 if "branch" in base or rows <= size else -(-rows // size)
    parts = []
    for i in range(count):
        params = dict(base) if count == 1 else {**base, "offset": i * size, "limit": size}
        parts.append(Part(params, out / f"{table}-{i:06d}.tar"))
    return ExportJob(format, out, rows, version, parts)


def _check_parent(dest: Path) -> None:
    parent = dest.absolute().parent
    if not dest.is_dir() and not parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"the folder {parent} does not exist (create it first; nothing "
                                "was written)", str(dest))
