"""Reading segment files safely: only regular files, only under the allowed directories.

The file name is derived from the message (``OUTPUT_PREFIX-NNNNN.ts``), never taken from a peer as
a path. The directory is resolved, checked against the allowed roots, then opened one component at
a time from the root's descriptor with O_NOFOLLOW, and the file itself with O_NOFOLLOW and an
fstat check. A symlink or directory swapped in after the check therefore fails the open instead of
leading the read outside the roots (no time-of-check/time-of-use gap).

A directory so opened is kept open (``OpenDirectories``: the most recently used few, for a minute
or two after their last use) and used again while its path still names it (``stat`` of the path
gives the same device and inode) and it is still where it was checked (``/proc/self/fd/N``). Those
two calls then stand for the resolve and the walk, which cost some 0.4 ms per segment; a path that
names another directory since (renamed, replaced, re-linked), and a directory moved elsewhere or
removed, are resolved and walked afresh.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, TypeVar

from .errors import UploaderError
from .mpegts import PACKET_SIZE, TransportStreamCheck

_SEGMENT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*-[0-9]{5,10}\.ts")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK so that opening a FIFO planted under the segment's name cannot block the daemon.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

T = TypeVar("T")

_CHECK_CHUNK = 188 * 4096  # whole packets: no piece carries a cut packet over to the next

# Directories kept open: a descriptor each, so a bound well under the usual 1024 of RLIMIT_NOFILE.
OPEN_DIRECTORIES = 128
# A directory no message named for this long is closed (``OpenDirectories.close_idle``), seconds:
# a file system whose streams ended can be unmounted.
IDLE_DIRECTORY_S = 60.0


# preadv2's flag for "only what the page cache holds" (Linux 4.14); None where there is none.
_CACHED_ONLY = getattr(os, "RWF_NOWAIT", None)
# A segment file larger than this is checked on a thread even when cached, bytes: a read on the
# event loop stays within a few ms (a 6-s segment at 5 Mbit/s is 3.6 MiB). Holes of a sparse
# file read without waiting for storage, so the cache alone would not bound it.
MAX_CACHED_CHECK_BYTES = 4 << 20


class WouldBlock(Exception):
    """Reading the segment would wait for storage (its bytes are not all in the page cache, or
    the file system cannot say): read it where waiting is fine, off the event loop."""


class DirectoryRefused(UploaderError):
    """A message names a directory the daemon may not read: the peer's request is refused."""


class SegmentFileError(UploaderError):
    """The segment cannot be read (missing, not a regular file, a symlink...): a permanent failure.
    ``errno``: the OSError's, when one was the cause (EMFILE, EIO: the file may still be read)."""

    def __init__(self, reason: str, *, errno: int | None = None) -> None:
        super().__init__(reason)
        self.errno = errno


@dataclass(frozen=True, slots=True)
class _Kept:
    fd: int
    identity: tuple[int, int]  # st_dev, st_ino
    real: str  # where it was when checked: its path as the kernel names it (/proc/self/fd/N)
    used_at: float  # time.monotonic()


class OpenDirectories:
    """Descriptors of checked directories, by the path a message named them with: up to
    ``limit``, the least recently used closed first. One is used again only while the path
    still names it (``stat``: the same device and inode) and it is still where it was checked
    (the kernel's name of the descriptor, ``/proc/self/fd/N``: a directory moved out of the
    roots, or removed, is not). Safe to share between threads: each use gets its own duplicate
    of the descriptor, so closing one here never pulls it from under a reader."""

    def __init__(self, limit: int = OPEN_DIRECTORIES) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Kept] = OrderedDict()  # by path, least recently used first

    def holds(self, path: str) -> bool:
        """Whether ``path`` still names a directory kept, which is where it was checked."""
        return self._use(path, lambda kept: True) is not None

    def get(self, path: str) -> int | None:
        """A new descriptor (the caller's to close) of the directory ``path`` was checked as, if
        ``path`` still names it and it is where it was; else None (also when no descriptor is
        left to duplicate it: the caller checks the path afresh)."""
        return self._use(path, _duplicate)

    def _use(self, path: str, take: Callable[[_Kept], T]) -> T | None:
        """``take(kept)``, under the lock (no descriptor is closed meanwhile), of the directory
        kept for ``path`` if ``path`` still names it and it is where it was checked, marked as
        used now; else None."""
        try:
            info = os.stat(path)
        except OSError:
            return None
        with self._lock:
            kept = self._open.get(path)
            if kept is None or kept.identity != (info.st_dev, info.st_ino) or _real_name(kept.fd) != kept.real:
                return None
            self._open[path] = replace(kept, used_at=time.monotonic())
            self._open.move_to_end(path)
            return take(kept)

    def keep(self, path: str, fd: int) -> None:
        """Keep a duplicate of ``fd``, the checked directory ``path`` names, for ``get``; nothing
        where the kernel does not name descriptors (no /proc). Raises OSError (EMFILE)."""
        real = _real_name(fd)
        if real is None:
            return
        info = os.fstat(fd)
        with self._lock:
            old = self._open.pop(path, None)
            if old is not None:
                os.close(old.fd)
            self._open[path] = _Kept(os.dup(fd), (info.st_dev, info.st_ino), real, time.monotonic())
            while len(self._open) > self._limit:
                os.close(self._open.popitem(last=False)[1].fd)

    def close_idle(self, idle_s: float = IDLE_DIRECTORY_S) -> None:
        """Close the directories not used for ``idle_s`` seconds (hls-uploadd calls it every
        ``IDLE_DIRECTORY_S``)."""
        before = time.monotonic() - idle_s
        with self._lock:
            while self._open and next(iter(self._open.values())).used_at <= before:
                os.close(self._open.popitem(last=False)[1].fd)

    def __len__(self) -> int:
        return len(self._open)

    def close(self) -> None:
        """Close every descriptor kept."""
        with self._lock:
            while self._open:
                os.close(self._open.popitem()[1].fd)

    __del__ = close


def _duplicate(kept: _Kept) -> int | None:
    try:
        return os.dup(kept.fd)
    except OSError:  # out of descriptors
        return None


def _real_name(fd: int) -> str | None:
    """The path the kernel gives the open directory ``fd`` now ("... (deleted)" once removed);
    None without /proc."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class AllowedDirs:
    """The roots segment files may be read from, already resolved with realpath; the directories
    below them that messages named, kept open (``OpenDirectories``)."""

    roots: tuple[Path, ...]
    opened: OpenDirectories = field(default_factory=OpenDirectories, compare=False, repr=False)

    def check(self, output_directory: str) -> None:
        """Raise DirectoryRefused unless a message's directory is under one of the roots:
        ``resolve``, unless the path still names a directory checked and kept open before."""
        if not self.opened.holds(output_directory):
            self.resolve(output_directory)

    def resolve(self, output_directory: str) -> tuple[Path, tuple[str, ...]]:
        """(root, components below it) of a message's directory, resolved with realpath.

        Raises DirectoryRefused when it is relative, unresolvable or under none of the roots.
        """
        if not output_directory.startswith("/"):
            raise DirectoryRefused(f"output directory {output_directory} must be an absolute path")
        try:
            real = Path(os.path.realpath(output_directory))
        except OSError as error:
            # realpath races with the file system: a symlink on the way that is removed between its
            # lstat and its readlink. Whatever was there is not resolvable now: refuse, do not crash.
            raise DirectoryRefused(
                f"output directory {output_directory} cannot be resolved ({error.strerror or error})"
            ) from None
        for root in self.roots:
            if real == root or root in real.parents:
                return root, real.relative_to(root).parts
        raise DirectoryRefused(
            f"output directory {output_directory} is not allowed (add --allow-dir {output_directory})"
        )

    def open_segment(self, output_directory: str, name: str) -> BinaryIO:
        """The segment file, open for reading; raises DirectoryRefused or SegmentFileError."""
        shown = os.path.join(output_directory, name)
        directory = self._open_directory(output_directory, name)
        try:
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=directory)
            except OSError as error:
                raise SegmentFileError(_describe(error, shown), errno=error.errno) from None
        finally:
            os.close(directory)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise SegmentFileError(f"segment {shown} is not a regular file")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def remove_segment(self, output_directory: str, name: str) -> None:
        """Unlink the segment file (once stored); one already gone is not an error. The directory
        is reached as ``open_segment`` reaches it: never through a symlink below the root.
        Raises DirectoryRefused or SegmentFileError."""
        directory = self._open_directory(output_directory, name)
        try:
            os.unlink(name, dir_fd=directory)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise SegmentFileError(_describe(error, os.path.join(output_directory, name))) from None
        finally:
            os.close(directory)

    def _open_directory(self, output_directory: str, name: str) -> int:
        """A descriptor of the directory of segment ``name``, checked as the module says."""
        if not _SEGMENT_NAME.fullmatch(name):
            raise SegmentFileError(f"{name!r} is not a segment file name")
        kept = self.opened.get(output_directory)
        if kept is not None:
            return kept
        root, parts = self.resolve(output_directory)
        fd = _open_below(root, parts, os.path.join(output_directory, name))
        try:
            self.opened.keep(output_directory, fd)
        except OSError:
            pass  # out of descriptors: this one still serves, unkept
        return fd

    def not_mpegts(self, output_directory: str, name: str, *, cached_only: bool = False) -> str | None:
        """Why the segment file is not MPEG-TS (mpegts.py), one line naming it; None when it is,
        or when it cannot be opened now (its upload then fails and says why, as for a file that
        goes away later). Reads the file once, in chunks; blocking, run it off the event loop,
        unless ``cached_only``: then only bytes the page cache holds are read (``preadv2`` with
        ``RWF_NOWAIT``; a segment just written is there), and WouldBlock is raised when one is
        not. The file's metadata (opening it) is still read either way."""
        check = TransportStreamCheck()
        try:
            with self.open_segment(output_directory, name) as file:
                if cached_only:
                    _feed_cached(file.fileno(), check)
                else:
                    while not check.settled and (piece := file.read(_CHECK_CHUNK)):
                        check.feed(piece)
        except (UploaderError, OSError):
            return None
        reason = check.refusal()
        return None if reason is None else f"segment {os.path.join(output_directory, name)} is not MPEG-TS: {reason}"


def _feed_cached(fd: int, check: TransportStreamCheck) -> None:
    """Feed ``check`` the whole file ``fd`` from the page cache (until its verdict is settled);
    raises WouldBlock as soon as a chunk is not all there (preadv2 returns the part that is,
    then EAGAIN), and for a file over ``MAX_CACHED_CHECK_BYTES``."""
    size = os.fstat(fd).st_size
    if _CACHED_ONLY is None or size > MAX_CACHED_CHECK_BYTES:
        raise WouldBlock
    offset = 0
    while not check.settled:
        # What the file has left and a packet more, to meet its end (or that it grew): a buffer
        # cut down after the read costs some 0.9 ms here, twenty times the read itself.
        piece = bytearray(min(_CHECK_CHUNK, max(size - offset, 0) + PACKET_SIZE))
        try:
            count = os.preadv(fd, [piece], offset, _CACHED_ONLY)
        except OSError:  # EAGAIN: not in the cache; EOPNOTSUPP: a file system that cannot say
            raise WouldBlock from None
        if count == 0:
            return
        if offset + count > MAX_CACHED_CHECK_BYTES:  # grown since its fstat
            raise WouldBlock
        del piece[count:]
        check.feed(piece)
        offset += count


def _open_below(root: Path, parts: tuple[str, ...], shown: str) -> int:
    """A descriptor of root/parts..., never following a symlink below root."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise SegmentFileError(f"allowed directory {root}: {error.strerror}", errno=error.errno) from None
    for part in parts:
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as error:
            os.close(fd)
            raise SegmentFileError(_describe(error, shown), errno=error.errno) from None
        os.close(fd)
        fd = child
    return fd


def _describe(error: OSError, shown: str) -> str:
    if error.errno == errno.ENOENT:
        return f"segment {shown} does not exist"
    if error.errno == errno.ELOOP:
        return f"segment {shown} or a directory above it is a symlink (refused)"
    if error.errno == errno.ENOTDIR:
        # O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR on Linux.
        return f"a directory above segment {shown} is a symlink or not a directory (refused)"
    return f"segment {shown}: {error.strerror}"
