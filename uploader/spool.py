"""The durable queue and per-stream state: one SQLite database, WAL, synchronous=FULL.

A message is answered OK only after ``enqueue`` returned, i.e. after its transaction committed
and was fsync'd, so an acknowledged message survives kill -9 and power loss. The publisher marks
it done or failed in the same transaction that stores the stream's new published state, so the
spool never says a segment is listed when it is not (and a crash in between just redoes PUTs).

Not thread-safe: the daemon writes it from one dedicated thread (``SpoolThread``), and reads the
few things each message asks for through a second, read-only connection (``SpoolThread.read``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from common.durable import open_database
from protocol import V1_FIELD_NAMES, IndexMessage, encode_message, parse_message

from .errors import UploaderError
from .ownership import Claim, Owner, OwnershipRule, Refused
from .cost import StreamUsage, Usage
from .retention import Deletion
from .stream import PublishedSegment, RenditionInfo, StreamKey, StreamState, StreamSummary

SPOOL_FILE_NAME = "spool.sqlite3"

# Held locked (flock) by the daemon using the spool, for its whole life; it holds that daemon's PID.
LOCK_FILE_NAME = "spool.lock"

# SQLite's primary result codes for a damaged database file (https://sqlite.org/rescode.html):
# no retry helps, the operator must restore or move the spool.
_DAMAGED_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)

# Bumped when the schema changes; an older spool is upgraded (columns added), a newer one refused.
SCHEMA_VERSION = 2

# Columns added by version 2 (inline payloads; rendition info and measurements for the master).
_ADDED_COLUMNS = (
    ("messages", "payload", "TEXT"),
    ("streams", "peak_bps", "INTEGER NOT NULL DEFAULT 0"),
    ("streams", "total_bits", "INTEGER NOT NULL DEFAULT 0"),
    ("streams", "total_seconds", "REAL NOT NULL DEFAULT 0"),
    ("streams", "independent", "INTEGER NOT NULL DEFAULT 1"),
    ("streams", "codecs", "TEXT"),
    ("streams", "resolution", "TEXT"),
    ("streams", "frame_rate", "REAL"),
    ("streams", "declared_bandwidth", "INTEGER"),
    # Retention (uploader/retention.py): the object of each kept segment, the longest playlist,
    # the last queued message (an end for a silent stream is made from it) and the wall clock of
    # the stream's last message or publish.
    ("segments", "object_key", "TEXT"),
    ("streams", "longest_playlist", "REAL NOT NULL DEFAULT 0"),
    ("streams", "last_line", "BLOB"),
    ("streams", "active_at", "REAL"),
    # Ownership (uploader/ownership.py): the writer, its peer, the wall clock of its last message
    # taken, and the writer it took the stream over from.
    ("streams", "writer", "TEXT"),
    ("streams", "writer_peer", "TEXT"),
    ("streams", "writer_seen_at", "REAL"),
    ("streams", "former_writer", "TEXT"),
    # The wall clock of the stream's last publish (a playlist state recorded: a segment listed or
    # the end), for the operator (uploader/metrics.py, hls-uploadd status).
    ("streams", "published_at", "REAL"),
    # Held by a refusal the operator must correct (uploader/publisher.py): since when (wall
    # clock) and why; NULL when not held. Cleared at every start: a refusal that lasts is seen again.
    ("streams", "held_since", "REAL"),
    ("streams", "held_reason", "TEXT"),
    # What the stream cost the store (uploader/cost.py, hls-uploadd cost): requests, bytes in, and
    # storage as the integral of its stored segment bytes over time (stored_bytes since
    # storage_at, added to storage_byte_seconds at each change). Segments and deletions carry
    # their objects' sizes for it.
    ("streams", "put_requests", "INTEGER NOT NULL DEFAULT 0"),
    ("streams", "delete_requests", "INTEGER NOT NULL DEFAULT 0"),
    ("streams", "bytes_in", "INTEGER NOT NULL DEFAULT 0"),
    ("streams", "stored_bytes", "INTEGER NOT NULL DEFAULT 0"),
    ("streams", "storage_byte_seconds", "REAL NOT NULL DEFAULT 0"),
    ("streams", "storage_at", "REAL"),
    ("segments", "size", "INTEGER"),
    ("deletions", "key_prefix", "TEXT"),
    ("deletions", "idx", "TEXT"),
    ("deletions", "size", "INTEGER"),
    # The entity tag of the stream's playlist as last written or read (StreamState.version).
    ("streams", "playlist_version", "TEXT"),
    # The LAST_SEGMENT of the newest message whose segment a playlist in the store lists.
    ("streams", "listed_through", "INTEGER NOT NULL DEFAULT 0"),
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    bucket TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    idx TEXT NOT NULL,
    -- queue side: decided when a message arrives
    epoch INTEGER NOT NULL DEFAULT 0,
    last_queued INTEGER NOT NULL DEFAULT 0,
    end_queued INTEGER NOT NULL DEFAULT 0,
    -- publish side: what the playlist is built from
    next_media_sequence INTEGER NOT NULL DEFAULT 1,
    discontinuity_sequence INTEGER NOT NULL DEFAULT 0,
    target_duration INTEGER,
    ended INTEGER NOT NULL DEFAULT 0,
    pending_discontinuity INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, key_prefix, idx)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    idx TEXT NOT NULL,
    line BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    starts_epoch INTEGER NOT NULL,
    end_only INTEGER NOT NULL,
    state TEXT NOT NULL,
    received_at REAL NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS messages_queued ON messages (bucket, key_prefix, idx, id) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS segments (
    bucket TEXT NOT NULL,
    key_prefix TEXT NOT NULL,
    idx TEXT NOT NULL,
    media_sequence INTEGER NOT NULL,
    uri TEXT NOT NULL,
    duration REAL NOT NULL,
    discontinuity INTEGER NOT NULL,
    PRIMARY KEY (bucket, key_prefix, idx, media_sequence)
);
-- Objects this daemon wrote that are to be deleted once due (uploader/retention.py).
CREATE TABLE IF NOT EXISTS deletions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    due_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS deletions_due ON deletions (due_at);
CREATE INDEX IF NOT EXISTS deletions_key ON deletions (bucket, object_key);
"""

T = TypeVar("T")

# Below this much free space the spool's file system counts as full (``Spool.check_writable``):
# a message's insert may need a new page of the database and of its WAL, and a payload more.
MIN_FREE_BYTES = 1 << 20

# Messages queued lately, kept by their stored line so that reading one back costs no parse.
REMEMBERED_MESSAGES = 1024
# How long a read beside the writing thread waits for a lock, ms (``Spool.reader``).
READER_BUSY_TIMEOUT_MS = 1000


class SpoolError(UploaderError):
    """The spool cannot be opened or written (disk full, permissions, corrupt file)."""

    transient = True


class SpoolBusy(SpoolError):
    """Another process holds the spool's lock: another daemon is using this spool directory."""

    transient = False


class NotTheWriter(UploaderError):
    """A message refused because another writer owns its stream (``ownership.Refused``'s reason)."""

    transient = False


class SpoolBroken(SpoolError):
    """The spool cannot be used any more (a damaged page, its file removed or replaced): the
    daemon stops accepting; only the operator can fix it."""

    transient = False


def _failed(error: sqlite3.Error, path: Path, doing: str = "write") -> SpoolError:
    """The SpoolError for ``error`` raised by a ``doing`` (write, read) of the spool at ``path``:
    SpoolBroken when SQLite says the file is damaged, else a transient SpoolError (disk full, I/O)."""
    if _is_damage(error):
        return SpoolBroken(f"spool {path} is damaged ({error}): stopped")
    return SpoolError(f"spool {doing} failed: {error}")


def _damaged(path: Path, complaint: str) -> str:
    """The start-up line for a damaged spool at ``path``: SQLite's ``complaint`` and the way out."""
    return (f"spool {path} is damaged ({complaint}); move it aside (the daemon starts a new one)"
            " or restore it from a backup")


def _is_damage(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.DatabaseError) and code is not None and code & 0xFF in _DAMAGED_CODES


class Queued(enum.Enum):
    NEW = "new"  # stored: the publisher has work
    DUPLICATE = "duplicate"  # a re-sent message already queued: nothing to do
    IGNORED = "ignored"  # last_segment 0, the original's start-up message
    ENDED = "ended"  # a new segment for a stream whose end is queued: its playlist is final


@dataclass(frozen=True, slots=True)
class Admitted:
    """What ``Spool.admit`` did: ``queued`` as ``enqueue`` says it, the stream's highest queued
    segment number after it (``stream_last``), and the owner it took the stream over from, if
    the message did (``took_over``)."""

    queued: Queued
    stream_last: int
    took_over: Owner | None = None


@dataclass(frozen=True, slots=True)
class QueuedItem:
    id: int
    message: IndexMessage
    starts_epoch: bool  # numbering restarted here: the segment is preceded by a discontinuity
    end_only: bool  # an end for segments already queued: no segment to upload
    payload: str | None = None  # name of the inline payload in the spool's payloads/ directory
    received_at: float = 0.0  # wall clock (Unix s) it was first queued at


@dataclass(frozen=True, slots=True)
class QueuedDeletion:
    id: int
    bucket: str
    key: str
    attempts: int  # failed attempts so far


@dataclass(frozen=True, slots=True)
class StreamActivity:
    key: StreamKey
    end_queued: bool
    ended: bool
    active_at: float | None  # wall clock of its last message or publish; None from an older daemon
    last_message: IndexMessage | None  # the last one queued, unsigned
    queued: bool  # messages of it wait


def read_summaries(db: sqlite3.Connection) -> list[StreamSummary]:
    """Every stream of the spool database ``db`` as ``StreamSummary``, in key order. Raises
    sqlite3.Error."""
    rows = db.execute(
        "WITH m AS (SELECT bucket, key_prefix, idx, sum(state='queued') AS queued,"
        "  min(CASE WHEN state='queued' THEN received_at END) AS oldest, sum(state='failed') AS failed"
        "  FROM messages GROUP BY bucket, key_prefix, idx),"
        " g AS (SELECT bucket, key_prefix, idx, count(*) AS listed, max(media_sequence) AS newest"
        "  FROM segments GROUP BY bucket, key_prefix, idx)"
        " SELECT s.bucket, s.key_prefix, s.idx, s.ended, s.end_queued, s.next_media_sequence, s.target_duration,"
        " s.published_at, s.held_since, s.held_reason, coalesce(m.queued, 0), m.oldest, coalesce(m.failed, 0),"
        " coalesce(g.listed, 0), (SELECT uri FROM segments WHERE bucket=s.bucket AND key_prefix=s.key_prefix"
        "  AND idx=s.idx AND media_sequence=g.newest)"
        " FROM streams s LEFT JOIN m USING (bucket, key_prefix, idx) LEFT JOIN g USING (bucket, key_prefix, idx)"
        " ORDER BY s.bucket, s.key_prefix, s.idx"
    ).fetchall()
    return [
        StreamSummary(key=(row[0], row[1], row[2]), ended=bool(row[3]), end_queued=bool(row[4]),
                      last_media_sequence=row[5] - 1, target_duration_s=row[6], published_at=row[7],
                      held_since=row[8], held_reason=row[9], queued=row[10], oldest_queued_at=row[11],
                      failed=row[12], listed=row[13], last_uri=row[14])
        for row in rows
    ]


def read_usage(db: sqlite3.Connection, now: float) -> list[StreamUsage]:
    """Every stream's counts for the cost sheet, in key order, storage integrated up to ``now``
    (wall clock). Raises sqlite3.Error."""
    rows = db.execute(
        "SELECT bucket, key_prefix, idx, next_media_sequence - 1, total_seconds, total_bits / 8, put_requests,"
        " delete_requests, bytes_in, storage_byte_seconds + stored_bytes * max(0, ? - coalesce(storage_at, ?))"
        " FROM streams ORDER BY bucket, key_prefix, idx", (now, now),
    ).fetchall()
    return [StreamUsage((row[0], row[1], row[2]), *row[3:]) for row in rows]


def open_read_only(directory: Path) -> sqlite3.Connection:
    """The spool database in ``directory``, read-only, without its lock: a running daemon's
    spool can be read beside it (``hls-uploadd status``). Raises SpoolError when there is none,
    or it is of another schema version."""
    path = directory / SPOOL_FILE_NAME
    if not path.is_file():
        raise SpoolError(f"no spool in {directory} (give the daemon's --spool-dir)")
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        missing = {column for table, column, _ in _ADDED_COLUMNS if table == "streams"} - {
            row[1] for row in db.execute("PRAGMA table_info(streams)")}
    except sqlite3.Error as error:
        raise SpoolError(f"cannot read spool {path}: {error}") from None
    if version != SCHEMA_VERSION or missing:
        db.close()
        raise SpoolError(f"spool {path} is of another version of hls-uploadd: start the daemon once to upgrade it")
    return db


def is_v1(message: IndexMessage) -> bool:
    """A message with none of the extensions, as the original client sends."""
    return all(
        getattr(message, field.name) == field.default
        for field in fields(IndexMessage)
        if field.name not in V1_FIELD_NAMES
    )


class Spool:
    """The spool directory's database, opened by the one daemon that holds its lock."""

    def __init__(self, connection: sqlite3.Connection, path: Path, lock_fd: int = -1) -> None:
        self._db = connection
        self.path = path
        self._lock_fd = lock_fd
        # The messages ``admit`` stored lately, by line: written by one thread, read by any.
        self._queued_lines: dict[bytes, IndexMessage] = {}
        opened = os.stat(path)
        self._identity = (opened.st_dev, opened.st_ino)

    @classmethod
    def open(cls, directory: Path) -> Spool:
        """Lock ``directory``, open its database (created if absent) and check it.

        Raises SpoolBusy when another process holds the lock (the message names its PID),
        SpoolBroken when ``PRAGMA quick_check`` finds damage, SpoolError for anything else.
        """
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock_fd = _lock(directory / LOCK_FILE_NAME)
        except OSError as error:
            raise SpoolError(f"cannot open spool in {directory}: {error.strerror or error}") from None
        path = directory / SPOOL_FILE_NAME
        db: sqlite3.Connection | None = None
        try:
            db = open_database(path)  # WAL, synchronous=FULL; we issue BEGIN/COMMIT ourselves
            damage = _quick_check(db)
            if damage:
                raise SpoolBroken(_damaged(path, damage))
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise SpoolError(f"spool {path} has schema version {version}, this daemon reads {SCHEMA_VERSION}")
            db.executescript(_SCHEMA)
            for table, column, declaration in _ADDED_COLUMNS:
                present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return cls(db, path, lock_fd)
        except BaseException as error:
            if db is not None:
                db.close()
            os.close(lock_fd)
            if isinstance(error, sqlite3.Error) and _is_damage(error):
                raise SpoolBroken(_damaged(path, str(error))) from None
            if isinstance(error, (OSError, sqlite3.Error)):
                raise SpoolError(f"cannot open spool in {directory}: {error}") from None
            raise

    def reader(self) -> Spool:
        """A view of this spool through a connection of its own that cannot write (``PRAGMA
        query_only``), for reads beside the writing thread. WAL: each read sees every transaction
        committed before it began, never one in progress. Never creates the file. Raises
        sqlite3.Error, OSError, and SpoolBroken when the file at the path is not the one this
        spool writes (replaced since)."""
        db = sqlite3.connect(f"{self.path.as_uri()}?mode=rw", uri=True, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA query_only=1")
            # Short: a read waits on the event loop (a WAL reader is kept waiting only while a
            # crashed writer's log is recovered); past it the caller tries again later.
            db.execute(f"PRAGMA busy_timeout={READER_BUSY_TIMEOUT_MS}")
            view = Spool(db, self.path)
            if view._identity != self._identity:
                raise SpoolBroken(f"spool {self.path} was replaced by another file: stopped accepting messages")
        except BaseException:
            db.close()
            raise
        view._queued_lines = self._queued_lines
        return view

    def close(self) -> None:
        self._db.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One transaction (``_transaction``); SQLite's errors leave it as SpoolError
        (``_failed``: SpoolBroken for a damaged file)."""
        try:
            with _transaction(self._db):
                yield
        except sqlite3.Error as error:
            raise _failed(error, self.path) from None

    def check_identity(self) -> None:
        """Raise SpoolBroken when the spool's file is no longer the one opened (removed, replaced,
        its directory deleted): commits would go to a file no later start reads. One stat."""
        try:
            now = os.stat(self.path)
        except OSError as error:
            raise SpoolBroken(f"spool {self.path} is gone ({error.strerror}): stopped accepting messages") from None
        if (now.st_dev, now.st_ino) != self._identity:
            raise SpoolBroken(f"spool {self.path} was replaced by another file: stopped accepting messages")

    def check_writable(self) -> None:
        """Raise SpoolError unless the spool is the file opened, its file system has
        ``MIN_FREE_BYTES`` free, and it takes a committed write now (its header's schema version
        written again: one page, nothing changed). The daemon's health (``/healthz``, the systemd
        watchdog) rests on it."""
        self.check_identity()
        try:
            disk = os.statvfs(self.path.parent)
        except OSError as error:
            raise SpoolError(f"spool {self.path}: {error.strerror}") from None
        if (free := disk.f_bavail * disk.f_frsize) < MIN_FREE_BYTES:
            raise SpoolError(f"the file system of spool {self.path} is full ({free} bytes free)")
        with self._writing():
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # Queue side.

    def enqueue(self, message: IndexMessage, payload: str | None = None) -> Queued:
        """Store ``message`` durably, or decide it needs nothing: ``admit`` without an ownership
        claim (the daemon's own messages). Raises SpoolError."""
        return self.admit(message, payload).queued

    def admit(self, message: IndexMessage, payload: str | None = None, claim: Claim | None = None,
              rule: OwnershipRule | None = None) -> Admitted:
        """Store ``message`` durably, or decide it needs nothing. Raises SpoolError, and
        NotTheWriter when ``claim`` is refused by ``rule`` (uploader/ownership.py).

        ``payload`` names the segment's bytes in the payloads/ directory (inline payloads).
        ``claim`` (with its ``rule``): who sends it; the stream's owner is decided and recorded in
        the same transaction. A start-up message (LAST_SEGMENT 0) is refused as a segment would be,
        but takes a stream for its writer only with ``takeover=1``.
        Once a stream's end is queued its playlist is final (RFC 8216 6.2.1): a message that would
        add a segment (a higher number, or a new epoch) or a start-up message is ENDED and stored
        nowhere, whoever sends it, and the stream's writer stays; a re-send of one already queued is
        still a DUPLICATE.
        """
        if message.last_segment == 0 and claim is None:
            return Admitted(Queued.IGNORED, 0)
        key = message.stream_id
        with self._writing():
            row = self._db.execute(
                "SELECT epoch, last_queued, end_queued, writer, writer_peer, writer_seen_at, former_writer"
                " FROM streams WHERE bucket=? AND key_prefix=? AND idx=?",
                key,
            ).fetchone()
            if row is None:
                self._db.execute("INSERT INTO streams (bucket, key_prefix, idx) VALUES (?, ?, ?)", key)
                epoch, last_queued, end_queued = 0, 0, False
            else:
                epoch, last_queued, end_queued = row[0], row[1], bool(row[2])
            number = message.last_segment
            took_over = None
            if claim is not None and end_queued:
                # Nothing can be added to an ended stream, so its writer no longer matters and does
                # not change: a start-up is ENDED, a re-send still a DUPLICATE (below).
                if number == 0:
                    return Admitted(Queued.ENDED, last_queued)
            elif claim is not None:
                assert rule is not None
                owner = Owner() if row is None else Owner(row[3], row[4] or "", row[5] or 0.0, row[6])
                verdict = rule.decide(key, owner, claim, message.segment_duration)
                if isinstance(verdict, Refused):
                    raise NotTheWriter(verdict.reason)
                new = verdict.owner
                took_over = verdict.took_over
                if number == 0 and not claim.takeover and new.writer != owner.writer:
                    # A start-up message claims nothing: a stream is taken by a writer's first
                    # segment (or takeover=1), so start-up messages alone cannot squat a name.
                    return Admitted(Queued.IGNORED, last_queued)
                self._db.execute(
                    "UPDATE streams SET writer=?, writer_peer=?, writer_seen_at=?, former_writer=?"
                    " WHERE bucket=? AND key_prefix=? AND idx=?",
                    (new.writer, new.peer, new.seen_at, new.former, *key),
                )
                if number == 0:
                    return Admitted(Queued.IGNORED, last_queued, took_over)
            starts_epoch = end_only = False
            known = last_queued > 0  # a segment of it was queued (a start-up message queues none)
            # A writer numbers its segments upwards for good (its outbox keeps the highest), so its
            # own discontinuity at or below the stream's number is a re-send, not a new run: the
            # message that opened this epoch, or one of a backlog sent again to be confirmed.
            own = row is not None and message.writer is not None and message.writer == row[3]
            if known and message.discontinuity and (number == last_queued or (own and number < last_queued)):
                return Admitted(Queued.DUPLICATE, last_queued, took_over)
            if known and message.discontinuity:
                starts_epoch = True
            elif known and number < last_queued and is_v1(message):
                starts_epoch = True  # an original segmenter restarted: its numbers start over
            elif number <= last_queued:
                if not message.end or end_queued:
                    return Admitted(Queued.DUPLICATE, last_queued, took_over)  # re-sent after a reconnect
                end_only = True
            if end_queued:
                return Admitted(Queued.ENDED, last_queued)
            if starts_epoch:
                epoch += 1
            line = encode_message(message)
            self._db.execute(
                "UPDATE streams SET epoch=?, last_queued=?, end_queued=?, last_line=?, active_at=?"
                " WHERE bucket=? AND key_prefix=? AND idx=?",
                (epoch, number if not end_only else last_queued, end_queued or message.end,
                 line if message.tag is None else encode_message(message.unsigned()), time.time(), *key),
            )
            self._db.execute(
                "INSERT INTO messages (bucket, key_prefix, idx, line, epoch, starts_epoch, end_only, state,"
                " received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                (*key, line, epoch, starts_epoch, end_only, time.time(), payload),
            )
        self._remember(line, message)
        return Admitted(Queued.NEW, last_queued if end_only else number, took_over)

    def _remember(self, line: bytes, message: IndexMessage) -> None:
        """Keep ``message``, stored as ``line`` (the newest ``REMEMBERED_MESSAGES``), for
        ``_message_of``: a message parses back to itself (protocol.encode_message)."""
        lines = self._queued_lines
        lines[line] = message
        if len(lines) > REMEMBERED_MESSAGES:
            del lines[next(iter(lines))]

    def _message_of(self, line: bytes) -> IndexMessage:
        """The message a stored ``line`` holds: remembered, or parsed."""
        message = self._queued_lines.get(line)
        return message if message is not None else parse_message(line)

    # Publish side.

    def streams_with_work(self) -> list[StreamKey]:
        rows = self._db.execute(
            "SELECT DISTINCT bucket, key_prefix, idx FROM messages WHERE state='queued' ORDER BY id"
        ).fetchall()
        return [tuple(row) for row in rows]

    def next_queued(self, key: StreamKey) -> QueuedItem | None:
        row = self._db.execute(
            "SELECT id, line, starts_epoch, end_only, payload, received_at FROM messages"
            " WHERE bucket=? AND key_prefix=? AND idx=? AND state='queued' ORDER BY id LIMIT 1",
            key,
        ).fetchone()
        if row is None:
            return None
        return QueuedItem(row[0], self._message_of(row[1]), bool(row[2]), bool(row[3]), row[4], row[5])

    def published_through(self, key: StreamKey) -> int:
        """The highest segment number N such that every message of stream ``key`` numbered up to
        N is through: its segment listed by a playlist version the store took, or failed for good
        before a listed one (``confirm=1``'s ``published=``, docs/protocol.md "Confirmed
        publication"). Messages are published in the order queued and a writer's numbers grow, so
        N is the LAST_SEGMENT of the newest message ``complete`` was told is listed (0 for a stream
        never listed here). A message taken off the queue without a playlist PUT (a newer one was
        queued; a VOD playlist before its end) does not count until a later PUT lists it."""
        row = self._db.execute("SELECT listed_through FROM streams WHERE bucket=? AND key_prefix=? AND idx=?",
                               key).fetchone()
        return 0 if row is None else int(row[0])

    def has_newer_queued(self, item: QueuedItem) -> bool:
        """Whether a message of ``item``'s stream was queued after it (its playlist supersedes)."""
        row = self._db.execute(
            "SELECT 1 FROM messages WHERE bucket=? AND key_prefix=? AND idx=? AND state='queued' AND id>? LIMIT 1",
            (*item.message.stream_id, item.id),
        ).fetchone()
        return row is not None

    def queued_payloads(self) -> set[str]:
        rows = self._db.execute("SELECT payload FROM messages WHERE state='queued' AND payload IS NOT NULL")
        return {row[0] for row in rows}

    def group_streams(self, bucket: str, key_prefix: str) -> list[StreamKey]:
        """Every stream under one key prefix: the renditions of one program."""
        rows = self._db.execute(
            "SELECT bucket, key_prefix, idx FROM streams WHERE bucket=? AND key_prefix=? ORDER BY idx",
            (bucket, key_prefix),
        ).fetchall()
        return [tuple(row) for row in rows]

    def queued_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM messages WHERE state='queued'").fetchone()[0])

    def load_state(self, key: StreamKey) -> StreamState:
        row = self._db.execute(
            "SELECT next_media_sequence, discontinuity_sequence, target_duration, ended, pending_discontinuity,"
            " peak_bps, total_bits, total_seconds, independent, codecs, resolution, frame_rate, declared_bandwidth,"
            " longest_playlist, playlist_version FROM streams WHERE bucket=? AND key_prefix=? AND idx=?",
            key,
        ).fetchone()
        if row is None:
            return StreamState()
        segments = self._db.execute(
            "SELECT media_sequence, uri, duration, discontinuity, object_key, size FROM segments"
            " WHERE bucket=? AND key_prefix=? AND idx=? ORDER BY media_sequence",
            key,
        ).fetchall()
        return StreamState(
            segments=tuple(PublishedSegment(s[0], s[1], s[2], bool(s[3]), s[4], s[5]) for s in segments),
            next_media_sequence=row[0],
            discontinuity_sequence=row[1],
            target_duration_s=row[2],
            ended=bool(row[3]),
            pending_discontinuity=bool(row[4]),
            peak_bps=row[5],
            total_bits=row[6],
            total_seconds=row[7],
            independent=bool(row[8]),
            info=RenditionInfo(codecs=row[9], resolution=row[10], frame_rate=row[11], declared_bandwidth=row[12]),
            longest_playlist_s=row[13],
            version=row[14],
        )

    def complete(
        self, item: QueuedItem, state: StreamState, *, failure: str | None = None, deletions: Sequence[Deletion] = (),
        usage: Usage = Usage(), window: bool = False, listed: bool = False,
    ) -> None:
        """Mark ``item`` done (or failed, with the reason) and store the stream's new state: of its
        segments, the newest (the rest are recorded already), or with ``window`` every one (a
        state read from the store, whose segments this spool never had). ``listed``: a playlist
        the store took lists ``item``'s segment (``published_through``).

        ``deletions``: objects of segments the new state removed from its live window, queued in
        the same transaction (uploader/retention.py). A queued deletion of the object just
        published (a segment name written again, by a restarted numbering) is cancelled.
        ``usage``: what publishing it cost the store, added to the stream's counts.
        """
        key = item.message.stream_id
        with self._writing():
            self._db.execute(
                "UPDATE streams SET next_media_sequence=?, discontinuity_sequence=?, target_duration=?,"
                " ended=?, pending_discontinuity=?, peak_bps=?, total_bits=?, total_seconds=?, independent=?,"
                " codecs=?, resolution=?, frame_rate=?, declared_bandwidth=?, longest_playlist=?, playlist_version=?,"
                " active_at=? WHERE bucket=? AND key_prefix=? AND idx=?",
                (
                    state.next_media_sequence,
                    state.discontinuity_sequence,
                    state.target_duration_s,
                    state.ended,
                    state.pending_discontinuity,
                    state.peak_bps,
                    state.total_bits,
                    state.total_seconds,
                    state.independent,
                    state.info.codecs,
                    state.info.resolution,
                    state.info.frame_rate,
                    state.info.declared_bandwidth,
                    state.longest_playlist_s,
                    state.version,
                    time.time(),
                    *key,
                ),
            )
            first_kept = state.segments[0].media_sequence if state.segments else state.next_media_sequence
            self._db.execute(
                "DELETE FROM segments WHERE bucket=? AND key_prefix=? AND idx=? AND media_sequence<?",
                (*key, first_kept),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO segments (bucket, key_prefix, idx, media_sequence, uri, duration,"
                " discontinuity, object_key, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*key, s.media_sequence, s.uri, s.duration_s, s.discontinuity, s.key, s.size_bytes)
                 for s in (state.segments if window else state.segments[-1:])],
            )
            if listed:
                self._db.execute("UPDATE streams SET listed_through=? WHERE bucket=? AND key_prefix=? AND idx=?",
                                 (item.message.last_segment, *key))
            bucket = item.message.bucket
            if failure is None and not item.end_only:
                self._db.execute("DELETE FROM deletions WHERE bucket=? AND object_key=?",
                                 (bucket, item.message.segment_key))
            self._db.executemany(
                "INSERT INTO deletions (bucket, object_key, due_at, key_prefix, idx, size) VALUES (?, ?, ?, ?, ?, ?)",
                [(bucket, deletion.key, deletion.due_at, key[1], key[2], deletion.size_bytes) for deletion in deletions],
            )
            self._account(key, usage)
            if failure is None:
                # Done messages carry nothing the state does not: drop them, the spool stays small.
                self._db.execute("DELETE FROM messages WHERE id=?", (item.id,))
                self._db.execute("UPDATE streams SET published_at=? WHERE bucket=? AND key_prefix=? AND idx=?",
                                 (time.time(), *key))
            else:
                self._db.execute(
                    "UPDATE messages SET state='failed', reason=? WHERE id=?", (failure, item.id)
                )

    def failures(self) -> list[tuple[IndexMessage, str]]:
        rows = self._db.execute("SELECT line, reason FROM messages WHERE state='failed' ORDER BY id").fetchall()
        return [(parse_message(row[0]), row[1]) for row in rows]

    def requeue_failed(self, stream: StreamKey | None = None) -> list[Requeued]:
        """Queue the failed messages of ``stream`` (of every stream when None) again, for the
        operator who corrected what failed them (hls-uploadd requeue). Raises SpoolError.

        They go after whatever is queued, in their old order, the first of each stream opening a
        new epoch: its media comes after what was published since, so it is marked
        EXT-X-DISCONTINUITY. A stream that ended stays final (RFC 8216 6.2.1) once its playlist
        lists a segment; one that ended with nothing listed (every segment failed, its end too) is
        opened again. A failed inline message has no payload left and stays failed.
        """
        where, args = ("", ()) if stream is None else (" AND bucket=? AND key_prefix=? AND idx=?", stream)
        outcomes: list[Requeued] = []
        with self._writing():
            rows = self._db.execute(
                "SELECT id, bucket, key_prefix, idx, payload IS NOT NULL FROM messages WHERE state='failed'"
                + where + " ORDER BY id",
                args,
            ).fetchall()
            by_stream: dict[StreamKey, list[tuple[int, bool]]] = {}
            for row in rows:
                by_stream.setdefault((row[1], row[2], row[3]), []).append((row[0], bool(row[4])))
            for key, failed in by_stream.items():
                inline = sum(1 for _, has_payload in failed if has_payload)
                ended, next_sequence = self._db.execute(
                    "SELECT ended, next_media_sequence FROM streams WHERE bucket=? AND key_prefix=? AND idx=?", key
                ).fetchone()
                if ended and next_sequence > 1:
                    outcomes.append(Requeued(key, 0, inline, "the stream has ended and its playlist lists"
                                             " segments: it is final (RFC 8216 6.2.1)"))
                    continue
                ids = [message_id for message_id, has_payload in failed if not has_payload]
                for position, message_id in enumerate(ids):
                    self._db.execute(
                        "INSERT INTO messages (bucket, key_prefix, idx, line, epoch, starts_epoch, end_only,"
                        " state, received_at, payload) SELECT bucket, key_prefix, idx, line, epoch, ?, end_only,"
                        " 'queued', received_at, NULL FROM messages WHERE id=?",
                        (position == 0, message_id),
                    )
                    self._db.execute("DELETE FROM messages WHERE id=?", (message_id,))
                if ids and ended:
                    self._db.execute(
                        "UPDATE streams SET ended=0 WHERE bucket=? AND key_prefix=? AND idx=?", key
                    )
                outcomes.append(Requeued(key, len(ids), inline, None))
        return outcomes


    # Retention (uploader/retention.py, uploader/housekeeping.py).

    def due_deletions(self, now: float, limit: int) -> list[QueuedDeletion]:
        """At most ``limit`` queued deletions due at ``now`` (wall clock, s), the oldest due first."""
        rows = self._db.execute(
            "SELECT id, bucket, object_key, attempts FROM deletions WHERE due_at<=? ORDER BY due_at LIMIT ?",
            (now, limit),
        ).fetchall()
        return [QueuedDeletion(*row) for row in rows]

    def pending_deletions(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM deletions").fetchone()[0])

    def deletion_done(self, deletion_id: int) -> None:
        """The object of deletion ``deletion_id`` is gone: its row goes, and its stream is charged
        one DELETE and stores its bytes no more."""
        with self._writing():
            row = self._db.execute("SELECT bucket, key_prefix, idx, size FROM deletions WHERE id=?",
                                   (deletion_id,)).fetchone()
            self._db.execute("DELETE FROM deletions WHERE id=?", (deletion_id,))
            if row is not None and row[1] is not None:
                self._account((row[0], row[1], row[2]), Usage(deletes=1, stored_bytes=-(row[3] or 0)))

    def add_usage(self, key: StreamKey, usage: Usage) -> None:
        """Add ``usage`` to the stream's counts (what ``complete`` did not carry)."""
        with self._writing():
            self._account(key, usage)

    def _account(self, key: StreamKey, usage: Usage) -> None:
        """Add ``usage`` to the stream's totals; storage is integrated up to now first."""
        if usage == Usage():
            return
        now = time.time()
        self._db.execute(
            "UPDATE streams SET put_requests=put_requests+?, delete_requests=delete_requests+?, bytes_in=bytes_in+?,"
            " storage_byte_seconds=storage_byte_seconds + stored_bytes * max(0, ? - coalesce(storage_at, ?)),"
            " stored_bytes=max(0, stored_bytes+?), storage_at=? WHERE bucket=? AND key_prefix=? AND idx=?",
            (usage.puts, usage.deletes, usage.bytes_in, now, now, usage.stored_bytes, now, *key),
        )

    def deletion_failed(self, deletion_id: int, retry_at: float) -> None:
        """Deletion ``deletion_id`` failed: tried again at ``retry_at``; its stream is charged the
        DELETE request."""
        with self._writing():
            self._db.execute(
                "UPDATE deletions SET attempts=attempts+1, due_at=? WHERE id=?", (retry_at, deletion_id)
            )
            row = self._db.execute("SELECT bucket, key_prefix, idx FROM deletions WHERE id=?",
                                   (deletion_id,)).fetchone()
            if row is not None and row[1] is not None:
                self._account((row[0], row[1], row[2]), Usage(deletes=1))

    def stream_activity(self) -> list[StreamActivity]:
        """Every stream with what its silence is judged on (``retention.silence_verdict``)."""
        rows = self._db.execute(
            "SELECT s.bucket, s.key_prefix, s.idx, s.end_queued, s.ended, s.active_at, s.last_line,"
            " EXISTS (SELECT 1 FROM messages m WHERE m.bucket=s.bucket AND m.key_prefix=s.key_prefix"
            " AND m.idx=s.idx AND m.state='queued') FROM streams s"
        ).fetchall()
        return [
            StreamActivity((row[0], row[1], row[2]), bool(row[3]), bool(row[4]), row[5],
                           parse_message(row[6]) if row[6] is not None else None, bool(row[7]))
            for row in rows
        ]

    def summaries(self) -> list[StreamSummary]:
        """Every stream as the operator sees it, in key order (metrics, ``hls-uploadd status``)."""
        return read_summaries(self._db)

    def set_held(self, key: StreamKey, since: float | None, reason: str | None) -> None:
        """Record that the stream is held since ``since`` (wall clock) for ``reason``, or (None)
        that it goes on."""
        with self._writing():
            self._db.execute("UPDATE streams SET held_since=?, held_reason=? WHERE bucket=? AND key_prefix=? AND idx=?",
                             (since, reason, *key))

    def set_version(self, key: StreamKey, version: str | None) -> None:
        """Record the entity tag of the stream's playlist as last written (``StreamState.version``)
        when no message's completion records it: a playlist uploaded again, its URLs signed afresh."""
        with self._writing():
            self._db.execute("UPDATE streams SET playlist_version=? WHERE bucket=? AND key_prefix=? AND idx=?",
                             (version, *key))

    def clear_held(self) -> None:
        """Forget every stream's hold (at start: a refusal that lasts is found again)."""
        with self._writing():
            self._db.execute("UPDATE streams SET held_since=NULL, held_reason=NULL WHERE held_since IS NOT NULL")

    def end_silent(self, key: StreamKey, quiet_since: float) -> bool:
        """Queue the end of a stream that had no message or publish since ``quiet_since`` (wall
        clock, s): an end message for its last queued segment, made from its last message. False
        (nothing queued) when it was active meanwhile, its end is already queued, or no message
        of it was recorded."""
        row = self._db.execute(
            "SELECT end_queued, active_at, last_line FROM streams WHERE bucket=? AND key_prefix=? AND idx=?", key
        ).fetchone()
        if row is None or row[0] or row[2] is None or (row[1] is not None and row[1] > quiet_since):
            return False
        last = parse_message(row[2])
        return self.enqueue(replace(last, end=True, discontinuity=False)) is Queued.NEW

    def forget(self, key: StreamKey) -> bool:
        """Remove a stream's state, kept segments and failed messages; False (nothing removed) when
        a message of it was queued meanwhile. Its queued deletions stay: they still fall due."""
        with self._writing():
            if self._db.execute(
                "SELECT 1 FROM messages WHERE bucket=? AND key_prefix=? AND idx=? AND state='queued' LIMIT 1", key
            ).fetchone():
                return False
            for table in ("streams", "segments", "messages"):
                self._db.execute(f"DELETE FROM {table} WHERE bucket=? AND key_prefix=? AND idx=?", key)
        return True


@dataclass(frozen=True, slots=True)
class Requeued:
    """What ``Spool.requeue_failed`` did for one stream: ``count`` messages queued again,
    ``inline`` left failed for want of their payload, ``refused`` the reason none was (or None)."""

    stream: StreamKey
    count: int
    inline: int
    refused: str | None


def _lock(path: Path) -> int:
    """Take the exclusive lock on ``path`` (created if absent) and write this process's PID in it;
    the lock lasts as long as the returned descriptor stays open (the process's life).
    Raises SpoolBusy naming the holder's PID, OSError when the file cannot be opened."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SpoolBusy(f"spool {path.parent} is in use by another hls-uploadd (PID {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _quick_check(db: sqlite3.Connection) -> str:
    """SQLite's ``PRAGMA quick_check``: '' when the database is sound, else its first complaint."""
    rows = db.execute("PRAGMA quick_check(1)").fetchall()
    result = " ".join(str(rows[0][0]).split()) if rows else "no answer"
    return "" if result == "ok" else result


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (a ``return`` inside commits).

    Inside a group commit (``SpoolThread`` runs several calls in one transaction) it is a
    SAVEPOINT instead: a failing call undoes only its own writes, and the group's COMMIT makes
    them durable together.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._nested = False

    def __enter__(self) -> None:
        self._nested = self._db.in_transaction
        self._db.execute("SAVEPOINT call" if self._nested else "BEGIN IMMEDIATE")

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if self._nested:
            if kind is not None:
                self._db.execute("ROLLBACK TO call")
            self._db.execute("RELEASE call")
        elif kind is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


# Calls run in one group commit at most: bounds the time a caller waits behind others' work.
MAX_GROUP_CALLS = 256


class SpoolThread:
    """The spool driven from asyncio: every call runs on one dedicated thread, in order.

    SQLite commits fsync; doing them here keeps the event loop serving other connections.
    Reads that take no lock and touch a few rows (``read``) run on the caller's thread instead:
    a hand-off to the thread and back costs some 0.2 ms of CPU here, twenty times the read.
    Group commit: the calls that queued up while the previous commit was being fsync'd run
    together in one transaction with one fsync, and their results are handed back only after it
    committed, so an ``enqueue`` still returns only once its message is durable. Under load this
    turns one fsync per call into one per batch; alone, a call costs what it did.
    """

    def __init__(self, spool: Spool, *, on_broken: Callable[[SpoolBroken], object] = lambda error: None) -> None:
        self.spool = spool
        # Set once the spool failed for good (SpoolBroken): every later call raises it.
        self.broken: SpoolBroken | None = None
        self._on_broken = on_broken  # told once, from the thread that met it
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._breaking = threading.Lock()
        self._reader: Spool | None = None
        with contextlib.suppress(sqlite3.Error, OSError, SpoolError):
            self._reader = spool.reader()  # now, beside the writer; else at the first read, which says why not
        self._thread = threading.Thread(target=self._run, name="spool", daemon=True)
        self._thread.start()

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on the spool thread; its result once committed. Raises what it
        raises; SpoolBroken once the spool failed for good (then nothing is run)."""
        if self._closed:
            raise RuntimeError("the spool is closed")
        if self.broken is not None:
            raise self.broken
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(function, args, loop, future))
        return await future

    def read(self, function: Callable[..., T], *args: Any) -> T:
        """``function(spool, *args)`` run here, on the caller's thread, with ``spool`` a read-only
        view of the spool (``Spool.reader``): for a read of a few rows, which sees every call
        whose ``call`` returned. Raises what ``function`` raises, SQLite's and the file system's
        errors as SpoolError; SpoolBroken once the spool failed for good, or when the read finds
        the file removed or replaced (``Spool.check_identity``) or meets a damaged page."""
        if self._closed:
            raise RuntimeError("the spool is closed")
        if self.broken is not None:
            raise self.broken
        try:
            self.spool.check_identity()  # one stat: the file is still the one written
            if self._reader is None:
                self._reader = self.spool.reader()
            return function(self._reader, *args)
        except SpoolBroken as error:
            raise self._break(error) from None
        except sqlite3.Error as error:
            failed = _failed(error, self.spool.path, "read")
            if isinstance(failed, SpoolBroken):
                failed = self._break(failed)
            raise failed from None
        except OSError as error:  # the file gone before the first read (Spool.reader's stat)
            raise SpoolError(f"spool read failed: {error.strerror or error}") from None

    def close(self) -> None:
        self._closed = True
        self._jobs.put(None)
        self._thread.join()
        if self._reader is not None:
            self._reader.close()
        self.spool.close()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            group = [job]
            stop = False
            while len(group) < MAX_GROUP_CALLS:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            self._run_group(group)
            if stop:
                return

    def _run_group(self, group: list[_Job]) -> None:
        if self.broken is not None:
            for job in group:
                job.deliver(False, self.broken)
            return
        db = self.spool._db
        outcomes: list[tuple[bool, Any]] = []
        began = False
        try:
            if len(group) > 1:
                db.execute("BEGIN IMMEDIATE")
                began = True
        except sqlite3.Error as error:
            outcomes = [(False, _failed(error, self.spool.path))] * len(group)
        else:
            for job in group:
                try:
                    outcomes.append((True, job.function(*job.args)))
                except BaseException as error:  # handed to the caller, as run_in_executor would
                    outcomes.append((False, error))
            if began:
                try:
                    db.execute("COMMIT")
                except sqlite3.Error as error:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    outcomes = [(False, _failed(error, self.spool.path))] * len(group)
        broken = self._broken_by(outcomes)
        if broken is not None:
            # Nothing of this group is answered as done: an OK now could be lost with the file.
            broken = self._break(broken)
            outcomes = [(False, broken)] * len(group)
        for job, (ok, value) in zip(group, outcomes):
            job.deliver(ok, value)

    def _break(self, error: SpoolBroken) -> SpoolBroken:
        """The spool failed for good: the first such error is kept (and told), and returned."""
        with self._breaking:
            first = self.broken is None
            if first:
                self.broken = error
        if first:
            self._on_broken(error)
        assert self.broken is not None
        return self.broken

    def _broken_by(self, outcomes: list[tuple[bool, Any]]) -> SpoolBroken | None:
        """The SpoolBroken a group's ``outcomes`` show (a damaged page met by any call), or the
        file's identity check's (removed, replaced) before anything is acknowledged; else None."""
        for ok, value in outcomes:
            if not ok and isinstance(value, SpoolBroken):
                return value
            if not ok and _is_damage(value):
                return SpoolBroken(f"spool {self.spool.path} is damaged ({value}): stopped")
        try:
            self.spool.check_identity()
        except SpoolBroken as error:
            return error
        return None


@dataclass(slots=True)
class _Job:
    function: Callable[..., Any]
    args: tuple[Any, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]

    def deliver(self, ok: bool, value: Any) -> None:
        def settle() -> None:
            if self.future.done():
                return  # the caller was cancelled
            if ok:
                self.future.set_result(value)
            else:
                self.future.set_exception(value)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(settle)
