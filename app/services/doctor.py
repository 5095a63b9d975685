"""``lightbox doctor``: walk a data root, say what cannot be read, and repair what can be safely.

For every table (every ``*.lance`` folder of the root), it reads every manifest of main and of each
branch, checks the base paths each records (where a branch's parent and a clone's source live),
opens every version and checks that the files it reads are there at the size its manifest gives,
checks that each tag and branch names a readable version, reads a sample of each branch head's
images against their ``sha256``, and reads each version note.

Repairs are the ones that lose nothing: pointing base paths recorded in another place at this root
(a moved or copied root; the same rewrite a store does when it first opens such a table), deleting
a clone's guard tag whose clone no longer exists (it only kept old files from being pruned), and
deleting a version note that cannot be read (the log already ignores it). A missing or truncated
file, an unreadable manifest, bytes that no longer match their digest and a clone whose source was
dropped are reported, never "repaired": only a backup has what they lost.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field

from app.errors import InvalidName, NotFound
from app.storage import redact
from app.store import Store
from app.store.audit import FileUse, Root, delete_tag_at, files_of, open_version, refs_of, sampled_images
from app.store.bases import (
    Base,
    ManifestFile,
    ManifestUnreadable,
    exists_here,
    expected_path,
    is_placed,
    manifest_files,
    read_bases,
    read_manifest,
    relocate,
)
from app.store.refs import check_name
from app.store.snapshot import Snapshot
from app.store.tags import CLONE_TAG_PREFIX

Point = tuple[str | None, int]  # (branch, version)


@dataclass
class Problem:
    table: str
    what: str
    repaired: bool = False

    def line(self) -> str:
        return f"{self.table}: {self.what}"


@dataclass
class Checkup:
    """What one walk of a root found: counts of what it checked, and every problem."""

    root: str
    tables: int = 0
    versions: int = 0
    files: int = 0
    images: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """No problem is left (none found, or every one repaired)."""
        return all(p.repaired for p in self.problems)

    def summary(self) -> str:
        left = sum(not p.repaired for p in self.problems)
        repaired = len(self.problems) - left
        return (f"checked {self.tables} table(s), {self.versions} version(s), {self.files} file(s), "
                f"{self.images} image(s) in {self.root}: "
                + ("no problems" if not self.problems else f"{left} problem(s) left, {repaired} repaired"))


def where(point: Point) -> str:
    branch, version = point
    return f"version {version}" + (f" of branch {branch!r}" if branch else "")


class TableCheck:
    """The walk of one table; ``run`` adds what it finds to the checkup."""

    def __init__(self, store: Store, root: Root, name: str, names: set[str], out: Checkup, repair: bool) -> None:
        self.store, self.root, self.name, self.names, self.out, self.repair = store, root, name, names, out, repair
        self.readable: dict[Point, ManifestFile] = {}
        self.bases: dict[Point, list[Base]] = {}
        self.gone: set[Point] = set()  # versions sharing files of a table that is not in this root
        self.unplaced: set[Point] = set()  # versions whose bases name another place (reported, not repaired)

    def problem(self, what: str, repaired: bool = False) -> Problem:
        found = Problem(self.name, redact(what, self.store.storage_options), repaired)
        self.out.problems.append(found)
        return found

    def run(self, sample: int) -> None:
        files = manifest_files(self.store, self.name)
        if not any(f.branch is None for f in files):
            self.problem("has no versions (no manifest in _versions/): not a readable table")
            return
        self.read_manifests(files)
        self.check_bases()
        entry = max((p[1] for p in self.readable if p[0] is None), default=None)
        if entry is None:  # (each unreadable one is reported already)
            return
        heads = self.check_versions(entry)
        self.check_refs(entry)
        self.check_images(heads, sample)
        self.check_notes()

    def read_manifests(self, files: list[ManifestFile]) -> None:
        for file in files:
            point = (file.branch, file.version)
            try:
                self.bases[point] = read_bases(read_manifest(self.store, self.name, file))
                self.readable[point] = file
            except (OSError, ManifestUnreadable) as exc:
                self.problem(f"{where(point)}: its manifest {self.root.relative(file.path)} is unreadable ({exc}); "
                             "not repaired: restore it from a backup")

    def check_bases(self) -> None:
        moved: dict[tuple[str, str], list[Point]] = defaultdict(list)
        gone: dict[str, list[Point]] = defaultdict(list)
        present: dict[str, bool] = {}
        for point, bases in self.bases.items():
            for base in bases:
                expected = expected_path(self.store.uri, base.path)
                if expected is None:  # not a table location: Lance reads it where it is
                    continue
                if expected not in present:
                    present[expected] = exists_here(self.store, expected)
                if not present[expected]:
                    gone[expected].append(point)
                elif not is_placed(base.path, expected):
                    moved[(base.path, expected)].append(point)
        for location, points in gone.items():
            self.gone.update(points)
            source = location.removeprefix(self.store.uri + "/")
            self.problem(f"{len(points)} version(s) read files of {source}, which is not in this root (a clone "
                         "whose source was dropped?): they cannot be read; not repaired: restore the source from a "
                         "backup, or drop this table")
        if not moved:
            return
        done = {(m.old, m.new) for m in relocate(self.store, self.name)} if self.repair else set()
        for (old, new), points in moved.items():
            if (old, new) not in done:
                self.unplaced.update(points)
            self.problem(f"{len(points)} version(s) record their shared files at {old}, not at {new} (the root was "
                         "moved or copied)" + ("; now pointed at it" if (old, new) in done else ""),
                         repaired=(old, new) in done)
        self.store.forget(self.name)

    def check_versions(self, entry: int) -> dict[str | None, Snapshot]:
        """Open every readable version, check the files it reads; the newest opened of each lineage."""
        users: dict[FileUse, list[Point]] = defaultdict(list)
        heads: dict[str | None, Snapshot] = {}
        def placed(path: str) -> str:  # files are checked where the table reads them once its bases are pointed here
            return expected_path(self.store.uri, path) or path

        for point in sorted(self.readable, key=lambda p: (p[0] or "", p[1])):
            if point in self.gone:
                continue
            try:
                snap = open_version(self.store, self.name, entry, *point)
                for use in files_of(self.root, self.store, self.name, point[0], snap, placed):
                    users[use].append(point)
            except (OSError, ValueError, RuntimeError) as exc:
                self.problem(f"{where(point)} cannot be opened: {first_line(exc)}")
                continue
            self.out.versions += 1
            heads[point[0]] = snap
            if point in self.unplaced:  # Lance would read its images from the other place
                heads.pop(point[0])
        self.out.files += len(users)
        for use, why in sorted(self.root.missing(list(users)).items(), key=lambda item: item[0].path):
            points = users[use]
            for branch, _ in points:  # its sampled images would only repeat this
                heads.pop(branch, None)
            also = f" (and {len(points) - 1} later version(s))" if len(points) > 1 else ""
            self.problem(f"{use.kind} file {self.root.relative(use.path)} {why}: {where(points[0])}{also} cannot "
                         "be read whole; not repaired: restore it from a backup")
        return heads

    def check_refs(self, entry: int) -> None:
        main = open_version(self.store, self.name, entry, None, entry)
        tags, branches = refs_of(main)
        for tag, info in sorted(tags.items()):
            point = (info.get("branch"), int(info["version"]))
            clone = tag.removeprefix(CLONE_TAG_PREFIX) if tag.startswith(CLONE_TAG_PREFIX) else None
            if clone is not None and clone not in self.names:
                if self.repair:
                    delete_tag_at(self.store, main, tag)
                self.problem(f"tag {tag!r} keeps {where(point)} for clone {clone!r}, which no longer exists"
                             + ("; deleted" if self.repair else ""), repaired=self.repair)
            elif point not in self.readable:
                self.problem(f"tag {tag!r} points at {where(point)}, which has no readable manifest")
        for branch in sorted(branches):
            if not any(p[0] == branch for p in self.readable):
                self.problem(f"branch {branch!r} has no version with a readable manifest")

    def check_images(self, heads: dict[str | None, Snapshot], sample: int) -> None:
        seen: set[tuple[str, str]] = set()
        for branch, snap in heads.items():
            at = where((branch, snap.version))
            try:
                for key, digest, data in sampled_images(snap, sample):
                    if data is None or (key, digest) in seen:
                        continue
                    seen.add((key, digest))
                    self.out.images += 1
                    if hashlib.sha256(data).hexdigest() != digest:
                        self.problem(f"{at}: row {key!r}: its image bytes do not match its sha256; not repaired: "
                                     "restore the table from a backup, or ingest the image again")
            except (OSError, ValueError, RuntimeError) as exc:
                self.problem(f"{at}: sampled images cannot be read: {first_line(exc)}")

    def check_notes(self) -> None:
        for path, readable in self.root.notes(self.name):
            if not readable:
                if self.repair:
                    self.root.delete(path)
                self.problem(f"version note {self.root.relative(path)} is unreadable (the log ignores it)"
                             + ("; deleted" if self.repair else ""), repaired=self.repair)


def first_line(exc: BaseException) -> str:
    """An engine error as one short line: no source locations of the engine's build."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r",\s*/\S+\.rs:\d+:\d+", "", text)
    return text if len(text) <= 300 else text[:297] + "..."


def doctor(store: Store, *, repair: bool = False, sample: int = 32) -> Checkup:
    """Walk every table of ``store``'s root (``sample`` images per branch head, 0 for all of them).

    Give it a store opened with ``relocate=False``, or the store will have pointed bases at the
    root before they are seen.
    """
    root = Root(store)
    if not store.is_local:
        store.names()  # an object store's own answer (no such bucket, credentials refused) says more
    if not root.exists():
        raise NotFound(f"no data root at {redact(store.uri, store.storage_options)}")
    out = Checkup(redact(store.uri, store.storage_options))
    dirs = root.table_dirs()
    names = set(dirs)
    for name in dirs:
        try:
            check_name(name)
        except InvalidName:
            out.problems.append(Problem(f"{name}.lance", "is not a table name Lightbox opens; not checked"))
            continue
        out.tables += 1
        TableCheck(store, root, name, names, out, repair).run(sample)
    return out
