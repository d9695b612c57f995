"""What the segmenter owes the daemon: one SQLite table of index messages, oldest first.

The file is OUTPUT_DIR/.OUTPUT_PREFIX.outbox (with its -wal and -shm while open), so a run finds
what an earlier run with the same OUTPUT_DIR and OUTPUT_PREFIX left owed. Guarantees:

- ``add`` returns only once its transaction is committed and fsync'd (WAL, synchronous=FULL):
  a message added before its segment file is renamed survives kill -9 or a power cut at any
  instant after.
- Messages come back in the order they were added: a new row's id is above every id in the table
  (an id of a row removed may be given again once the table is empty: name rows by their
  position, as the notifier does, rather than keeping ids across removals).
- ``remove`` is not fsync'd. A removal lost to a crash only makes the next run send the message
  again, and the daemon takes a re-send as a duplicate; the next ``add`` makes it durable anyway
  (one WAL, written in order).

The outbox also holds the writer id (``writer``): 32 random hex digits made at its first use and
kept, so every run on the same OUTPUT_DIR and OUTPUT_PREFIX is the same writer to the daemon
(``writer=``, docs/protocol.md, "Stream ownership").

Nothing is held in memory: a backlog of any length costs disk only, and reading the oldest row is
one indexed lookup. Not thread-safe: the caller serialises calls (``notifier.Notifier`` holds a
lock around each).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.durable import open_database
from protocol import IndexMessage, ProtocolError, encode_message, parse_message

from .errors import SegmenterError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS owed (id INTEGER PRIMARY KEY, line BLOB NOT NULL);
-- The highest segment number of a message no longer owed: its file may be gone (removed once
-- stored), and a later run must still number after it.
CREATE TABLE IF NOT EXISTS settled (one INTEGER PRIMARY KEY CHECK (one = 1), last_segment INTEGER NOT NULL);
-- This OUTPUT_DIR's writer id, sent as writer= with every message.
CREATE TABLE IF NOT EXISTS writer (one INTEGER PRIMARY KEY CHECK (one = 1), id TEXT NOT NULL);
"""

# Bytes of randomness in a writer id: 32 hex digits, the most writer= carries.
_WRITER_ID_BYTES = 16


class OutboxError(SegmenterError, OSError):
    """The outbox cannot be opened, read or written (disk full, permissions, a corrupt file).

    Also an OSError, as every other disk failure of the segmenter: ``filename`` is the outbox file.
    """


@dataclass(frozen=True, slots=True)
class Owed:
    """One message in the outbox; ``id`` names its row for ``remove``."""

    id: int
    message: IndexMessage


class Outbox:
    """The owed messages in one SQLite file (see the module's guarantees); made by ``open``."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Outbox:
        """Open the outbox at ``path``, creating it if absent, readable by its owner only: it holds
        the writer id, which a daemon takes as this writer's claim to its stream. Raises OutboxError."""
        with _failing_as(path, "cannot be opened"):
            # Each statement is its own transaction, committed at once; the file's name is durable
            # before any segment is renamed on its word.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # before SQLite makes its -wal and -shm like it
            os.chmod(path, 0o600)
            db = open_database(path)
            db.executescript(_SCHEMA)
        return cls(db, path)

    def close(self) -> None:
        self._db.close()

    def add(self, message: IndexMessage) -> int:
        """Record ``message`` as owed, durably (fsync'd) before returning its id. Raises OutboxError."""
        with _failing_as(self.path, "write failed"):
            self._db.execute("PRAGMA synchronous=FULL")
            cursor = self._db.execute("INSERT INTO owed (line) VALUES (?)", (encode_message(message),))
        return int(cursor.lastrowid)  # type: ignore[arg-type]  # always set after an INSERT

    def remove(self, owed_id: int, *, settle: bool = True, durable: bool = False) -> None:
        """The message is no longer owed (acknowledged, or refused for good). ``settle``: its
        segment number counts for ``highest_number`` (False for a segment never named).
        ``durable``: fsync'd before returning, for a caller that then removes the segment's file
        (a lost removal must not leave a message owed whose file is gone). Raises OutboxError."""
        with _failing_as(self.path, "write failed"):
            # NORMAL unless asked: committed without an fsync (see the module's guarantees).
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            row = self._db.execute("SELECT line FROM owed WHERE id=?", (owed_id,)).fetchone()
            if row is None:
                return
            if not settle:
                self._db.execute("DELETE FROM owed WHERE id=?", (owed_id,))
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO settled (one, last_segment) VALUES (1, ?)"
                    " ON CONFLICT (one) DO UPDATE SET last_segment=max(last_segment, excluded.last_segment)",
                    (parse_message(row[0]).last_segment,),
                )
                self._db.execute("DELETE FROM owed WHERE id=?", (owed_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def writer(self) -> str:
        """This outbox's writer id, made (fsync'd) at the first call. Raises OutboxError."""
        with _failing_as(self.path, "write failed"):
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("INSERT OR IGNORE INTO writer (one, id) VALUES (1, ?)",
                             (secrets.token_hex(_WRITER_ID_BYTES),))
            return str(self._db.execute("SELECT id FROM writer").fetchone()[0])

    def highest_number(self) -> int:
        """The highest segment number of a message owed or ever settled here (0 when none):
        a new run numbers after it even when the files are gone (removed once stored).
        Raises OutboxError."""
        with _failing_as(self.path, "read failed"):
            row = self._db.execute("SELECT last_segment FROM settled").fetchone()
            owed = [parse_message(line).last_segment for (line,) in self._db.execute("SELECT line FROM owed")]
        return max([0 if row is None else int(row[0]), *owed])

    def oldest(self) -> Owed | None:
        """The message owed longest, or None when nothing is. Raises OutboxError."""
        return self._one("SELECT id, line FROM owed ORDER BY id LIMIT 1")

    def at(self, position: int) -> Owed | None:
        """The message at ``position`` in the outbox's order (0: the oldest), or None when fewer
        are owed. Raises OutboxError."""
        with _failing_as(self.path, "read failed"):
            row = self._db.execute("SELECT id, line FROM owed ORDER BY id LIMIT 1 OFFSET ?", (position,)).fetchone()
        return None if row is None else Owed(row[0], parse_message(row[1]))

    def newest(self) -> Owed | None:
        """The message added last, or None when nothing is owed. Raises OutboxError."""
        return self._one("SELECT id, line FROM owed ORDER BY id DESC LIMIT 1")

    def messages(self) -> list[IndexMessage]:
        """Every owed message, oldest first. Raises OutboxError."""
        with _failing_as(self.path, "read failed"):
            return [parse_message(line) for (line,) in self._db.execute("SELECT line FROM owed ORDER BY id")]

    def __len__(self) -> int:
        with _failing_as(self.path, "read failed"):
            return int(self._db.execute("SELECT count(*) FROM owed").fetchone()[0])

    def _one(self, query: str) -> Owed | None:
        with _failing_as(self.path, "read failed"):
            row = self._db.execute(query).fetchone()
        return None if row is None else Owed(row[0], parse_message(row[1]))


def legacy_owed(journal: Path, unacknowledged: Path) -> list[IndexMessage]:
    """What the previous version's two files still owed, in its order: the journal's messages
    (one encoded message a line: what a clean exit could not deliver), then those of the
    write-ahead record (``M <message>`` lines, each ``A`` line taking the oldest off: what a
    killed run had not had acknowledged). Unreadable lines are skipped. Raises OSError."""
    owed = [message for line in _lines(journal) if (message := _parsed(line)) is not None]
    recorded: list[IndexMessage] = []
    for line in _lines(unacknowledged):
        if line == b"A":
            recorded = recorded[1:]
        elif line.startswith(b"M ") and (message := _parsed(line[2:])) is not None:
            recorded.append(message)
    return owed + recorded


def _lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines()
    except FileNotFoundError:
        return []


def _parsed(line: bytes) -> IndexMessage | None:
    try:
        return parse_message(line) if line.strip() else None
    except ProtocolError:
        return None


@contextlib.contextmanager
def _failing_as(path: Path, what: str) -> Iterator[None]:
    """Turn SQLite's and the file system's errors into OutboxError naming ``path`` (with errno
    ENOSPC for SQLite's "database or disk is full")."""
    try:
        yield
    except (sqlite3.Error, OSError) as error:
        full = getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        number = errno.ENOSPC if full else getattr(error, "errno", None)
        raise OutboxError(number, f"outbox {what}: {error}", str(path)) from None
