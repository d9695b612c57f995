"""Durable file writes: temp name, fsync, rename, fsync the directory; written once for both
programs (segments, payloads, file-store objects, the port file); and the one way both open a
SQLite database that must survive a crash (the daemon's spool, the segmenter's outbox).

A file written here is either absent or whole after a crash at any instant: the bytes are on disk
before the name points at them, and the directory entry itself is made durable afterwards.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

StrPath = str | os.PathLike[str]


def fsync_directory(directory: StrPath) -> None:
    """Make the last rename or creation in ``directory`` survive a crash. Raises OSError."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(temp_path: StrPath, path: StrPath, *, directory_fd: int | None = None,
                before_rename: Callable[[], object] | None = None, exclusive: bool = False) -> None:
    """fsync a finished file, rename it to its real name, and fsync the directory.

    ``before_rename`` runs between the fsync and the rename: what must be durable before the file
    is visible under its name. ``directory_fd`` is an open descriptor of the directory (one per
    run saves an open per file); without it the directory is opened here. ``exclusive``: never
    replace a file already at ``path`` (a hard link made atomically, then the temp name removed);
    raises FileExistsError, the temp file left in place, when one is there. Raises OSError.
    """
    fd = os.open(temp_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if before_rename is not None:
        before_rename()
    if exclusive:
        os.link(temp_path, path)
        os.unlink(temp_path)
    else:
        os.replace(temp_path, path)
    if directory_fd is not None:
        os.fsync(directory_fd)
    else:
        fsync_directory(os.path.dirname(os.path.abspath(path)))


def write_file(path: StrPath, content: bytes | Iterable[bytes], *, mode: int = 0o644,
               exclusive: bool = False) -> None:
    """Write ``content`` (bytes, or chunks of bytes) to ``path`` durably, replacing any old file,
    or with ``exclusive`` never replacing one (FileExistsError when ``path`` exists).

    The temp file sits beside ``path`` as ``.NAME.*.tmp`` and is removed on any failure.
    Raises OSError (the disk full, a permission) with nothing left behind.
    """
    target = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in [content] if isinstance(content, bytes) else content:
                out.write(chunk)
            out.flush()
            os.fchmod(out.fileno(), mode)
        commit_file(temp, target, exclusive=exclusive)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def open_database(path: Path) -> sqlite3.Connection:
    """A SQLite connection to ``path`` (created if absent) whose commits survive a crash or a
    power cut: WAL, synchronous=FULL (each commit fsync'd), the file's name fsync'd into its
    directory. ``isolation_level=None``: the caller issues BEGIN/COMMIT, or each statement
    commits alone. Usable from any one thread at a time. Raises sqlite3.Error or OSError."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        fsync_directory(path.parent)
    except BaseException:
        db.close()
        raise
    return db
