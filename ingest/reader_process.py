"""Small local files read by a helper process, so reading them takes the machine's other core.

A small-file ingest is bound by per-file work in Python: opening and reading each file, then
probing, hashing and staging it. Threads cannot share that work (the interpreter runs one at a
time, and a small file's read is too short to release it for long), so the reading goes to a
second, minimal interpreter (``python -S``, standard library only) that reads each chunk of paths
and answers with their sizes and bytes back to back: one pipe write per chunk, no object per file
to pickle. The run reads the next chunks there while it works on this one; the answers come back in
order. A file is read as ``ingest.sources`` reads one (one 64 KiB read for a small file; ``fstat``,
the size limit and one ``pread`` for a larger one); a file that cannot be read comes back as an
error number, or as "too large" with its size. It also lists a folder (``ask_listing``), so a run can
begin its session and read its side file while the folder is listed.

If the helper cannot be started (no usable interpreter), the caller reads in-process.
"""

from __future__ import annotations

import array
import contextlib
import os
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

from ingest.pool import received

__all__ = ["NOT_REGULAR", "TOO_LARGE", "FileReader", "refusal", "too_large"]

TOO_LARGE = -(1 << 48)  # a size below this is "too large": TOO_LARGE - size
NOT_REGULAR = -(1 << 40)  # not a regular file (a FIFO, a device)
AHEAD = 16  # chunks read before the caller takes them
_END = object()

CHILD = r"""
import array, errno, os, stat, struct, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
flags, small, too_large, not_regular = os.O_RDONLY | os.O_NONBLOCK, 65536, -(1 << 48), -(1 << 40)

dirs = {}

def read(path, limit, dir_fd):
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        head = os.read(fd, small)
        if 0 < len(head) < small:
            return head
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return not_regular
        if info.st_size > limit:
            return too_large - info.st_size
        return head if info.st_size <= len(head) else os.pread(fd, info.st_size, 0)
    finally:
        os.close(fd)

def listing(root):
    found, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if not filenames:
            continue
        rel_dir = os.path.relpath(dirpath, root)
        dirs.append(f"{len(found)}/{rel_dir}")
        if rel_dir == ".":
            found.extend(sorted(filenames))
        else:
            prefix = rel_dir.replace(os.sep, "/") + "/"
            found.extend([prefix + name for name in sorted(filenames)])
    return os.fsencode("\0".join(dirs)), os.fsencode("\0".join(found))

while True:
    head = inp.read(32)
    if len(head) < 32:
        break
    kind, size, limit, root_size = struct.unpack("<QQQQ", head)
    if kind == 1:
        folders, files = listing(os.fsdecode(inp.read(root_size)))
        out.write(struct.pack("<QQ", len(folders), len(files)) + folders + files)
        out.flush()
        continue
    dir_fd = None
    if root_size:
        root = inp.read(root_size)
        if root not in dirs:
            try:
                dirs[root] = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                dirs[root] = None
        dir_fd = dirs[root]
    sizes, datas = [], []
    for path in inp.read(size).split(b"\0") if size else []:
        try:
            if root_size and dir_fd is None:
                raise FileNotFoundError(errno.ENOENT, "no such folder")
            data = read(path, limit, dir_fd)
        except OSError as exc:
            data = -(exc.errno or errno.EIO)
        if isinstance(data, int):
            sizes.append(data)
        else:
            sizes.append(len(data))
            datas.append(data)
    blob = b"".join(datas)
    out.write(struct.pack("<QQ", len(sizes), len(blob)) + array.array("q", sizes).tobytes())
    out.write(blob)
    out.flush()
"""


def too_large(why: str, limit: int, service_cap: int | None) -> str:
    """Why a file over ``limit`` bytes was skipped, naming the service's setting when its cap is the limit."""
    if limit == service_cap:
        why += ": the service takes requests of up to that many bytes (LIGHTBOX_MAX_UPLOAD_BYTES)"
    return why


def refusal(size: int, limit: int, service_cap: int | None) -> tuple[str, str]:
    """The skip reason and message of a file the helper answered with a negative ``size`` for."""
    if size <= TOO_LARGE:
        return "too_large", too_large(f"{TOO_LARGE - size} bytes exceeds the limit of {limit}", limit, service_cap)
    return "unreadable", "not a regular file" if size == NOT_REGULAR else os.strerror(-size)


class FileReader:
    """One helper process for one run; ``chunks`` gives each chunk's paths' sizes and bytes in order."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", CHILD], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)

    def ask_listing(self, root: str) -> None:
        """Ask for the listing of the folder ``root`` (``listing`` takes the answer): every file under it, sorted
        folder by folder, as ``ingest.sources.FolderSource`` lists one; the caller works meanwhile."""
        stdin = self.proc.stdin
        assert stdin is not None
        path = os.fsencode(root)
        stdin.write(struct.pack("<QQQQ", 1, 0, 0, len(path)) + path)
        stdin.flush()

    def listing(self) -> tuple[list[str], list[tuple[int, str]]]:
        """The answer to ``ask_listing``: the files' paths under the folder (with '/'), and each folder that holds
        files as (the index of its first file, its path under the folder, '.' for the folder itself)."""
        folders_size, files_size = self._head()
        folders, files = os.fsdecode(self._read(folders_size)), os.fsdecode(self._read(files_size))
        parts = (d.partition("/") for d in folders.split("\0")) if folders else ()
        dirs = [(int(start), rel) for start, _, rel in parts]
        return (files.split("\0") if files else []), dirs

    def chunks(self, chunks: Iterator[tuple[Any, list[str]]], max_bytes: int, ahead: int = AHEAD,
               root: str | None = None) -> Iterator[tuple[Any, array.array[int], bytes]]:
        """For each ``(tag, paths)``: ``(tag, sizes, bytes)``, where a size is the file's length in ``bytes``
        (the files back to back), ``-errno`` when it could not be read, ``NOT_REGULAR``, or below ``TOO_LARGE``. Up to
        ``ahead`` chunks are read before the caller takes them. ``root``: the paths are relative to this folder
        (opened once by the helper, each file opened relative to it)."""
        asked: queue.Queue[Any] = queue.Queue()  # tags of the chunks asked for, in order
        answers: queue.Queue[Any] = queue.Queue(ahead)
        stop = threading.Event()
        threads = [threading.Thread(target=self._ask, args=(chunks, max_bytes, root, asked, answers, stop), daemon=True,
                                    name="lightbox-ingest-ask"),
                   threading.Thread(target=self._take, args=(asked, answers, stop), daemon=True,
                                    name="lightbox-ingest-take")]
        for thread in threads:
            thread.start()
        done = False
        try:
            yield from received(answers)
            done = True
        finally:
            stop.set()
            self.close(kill=not done)
            with contextlib.suppress(queue.Empty):
                while True:
                    answers.get_nowait()
            for thread in threads:
                thread.join(timeout=10)

    def _ask(self, chunks: Iterator[tuple[Any, list[str]]], max_bytes: int, root: str | None,
             asked: queue.Queue[Any], answers: queue.Queue[Any], stop: threading.Event) -> None:
        """Send every chunk's paths (the pipe and the helper's answers bound how far ahead this gets)."""
        stdin = self.proc.stdin
        assert stdin is not None
        prefix = os.fsencode(root) if root else b""
        try:
            for tag, paths in chunks:
                if stop.is_set():
                    return
                asked.put(tag)
                payload = os.fsencode("\0".join(paths))  # one call for the chunk, not one per path
                stdin.write(struct.pack("<QQQQ", 0, len(payload), max_bytes, len(prefix)) + prefix + payload)
                stdin.flush()
            asked.put(_END)
        except BaseException as exc:  # handed to the reader of the answers, who raises it
            if not stop.is_set():
                _put(answers, ("error", exc), stop)

    def _take(self, asked: queue.Queue[Any], answers: queue.Queue[Any], stop: threading.Event) -> None:
        """Read the answers as they come, in order, into ``answers``."""
        try:
            while not stop.is_set():
                try:
                    tag = asked.get(timeout=0.1)
                except queue.Empty:
                    continue
                if tag is _END:
                    _put(answers, ("end", None), stop)
                    return
                _put(answers, ("chunk", (tag, *self._answer())), stop)
        except BaseException as exc:
            if not stop.is_set():
                _put(answers, ("error", exc), stop)

    def _answer(self) -> tuple[array.array[int], bytes]:
        count, size = self._head()
        sizes = array.array("q", self._read(8 * count))
        data = self._read(size)
        return sizes, data

    def _head(self) -> tuple[int, int]:
        """The two sizes that begin every answer."""
        first, second = struct.unpack("<QQ", self._read(16))
        return first, second

    def _read(self, size: int) -> bytes:
        """``size`` bytes of an answer; an ``OSError`` if the helper stopped before it gave them."""
        stdout = self.proc.stdout
        assert stdout is not None
        data = stdout.read(size) if size else b""
        if len(data) < size:
            raise OSError(f"the file reader process stopped (exit {self.proc.poll()})")
        return data

    def close(self, kill: bool = False) -> None:
        """Ask the helper to end (its input closes), and make sure it has; ``kill``: at once (a run that stops
        early: the helper may be blocked writing answers no one will read, and the asking thread with it)."""
        if kill:
            self.proc.kill()
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _put(answers: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            answers.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
