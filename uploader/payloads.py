"""Inline segment payloads kept in the spool directory until their segment is published.

A payload is written piece by piece as it arrives (never held whole in memory) to a temp name,
fsync'd, renamed to a unique final name and the directory fsync'd; only then is its message
queued and answered OK. A payload cut off mid-way is only ever a temp file, removed at once (and
at the next start, should the daemon die first). Final files no queued message names (the daemon
died between the rename and the queueing) are removed at start too. The bytes are checked to
be MPEG-TS (mpegts.py) as they are written, so a payload is read once.

Each payload is capped by --max-payload-size, and the payloads being received at once, across
all connections, by --max-payload-inflight: a payload is only taken when its size still fits the
budget, and gives its share back once committed or discarded, whichever way it ends.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import threading
from pathlib import Path
from typing import BinaryIO

from common.durable import commit_file, fsync_directory

from .errors import UploaderError
from .mpegts import TransportStreamCheck

PAYLOAD_DIR_NAME = "payloads"
_TEMP_SUFFIX = ".part"


class PayloadError(UploaderError):
    """A payload could not be stored (disk full, permissions): the daemon's state, not the peer's."""

    transient = True


class PayloadsBusy(UploaderError):
    """Payloads being received already hold the budget: refuse this one for now, not for good."""

    transient = True


class PayloadBudget:
    """Bytes of the inline payloads being received at once, across all connections.

    Thread-safe: a payload's commit, which gives its share back, runs off the event loop.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def reserve(self, size: int) -> Reservation:
        """``size`` bytes of the budget, or PayloadsBusy when they would take it past the limit."""
        with self._lock:
            if self._used + size > self.limit:
                raise PayloadsBusy(
                    f"{self._used} bytes of payloads are being received and {size} more would pass"
                    f" the daemon's limit of {self.limit} (--max-payload-inflight)"
                )
            self._used += size
        return Reservation(self, size)

    def _give_back(self, reservation: Reservation) -> None:
        with self._lock:
            if not reservation.released:
                reservation.released = True
                self._used -= reservation.size


class Reservation:
    """One payload's share of a PayloadBudget; ``release`` gives it back once, later calls do nothing."""

    def __init__(self, budget: PayloadBudget, size: int) -> None:
        self.size = size
        self.released = False
        self._budget = budget

    def release(self) -> None:
        self._budget._give_back(self)


class PayloadFile:
    """One payload being received. ``write`` each piece, then ``commit`` or ``discard``.

    Either of them releases the payload's reservation; so does a failure to create the file.
    """

    def __init__(self, directory: Path, expected_size: int, reservation: Reservation) -> None:
        self.name = f"{secrets.token_hex(16)}.ts"
        self._directory = directory
        self._temp = directory / (self.name + _TEMP_SUFFIX)
        self.expected_size = expected_size
        self.received = 0
        self._digest = hashlib.sha256()
        self._check = TransportStreamCheck()
        self._reservation = reservation
        try:
            self._fd: int | None = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as error:
            reservation.release()
            raise PayloadError(f"cannot create a payload file: {error.strerror}") from None

    def write(self, piece: bytes) -> None:
        assert self._fd is not None
        self._digest.update(piece)
        self._check.feed(piece)
        view = memoryview(piece)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as error:
            raise PayloadError(f"cannot write a payload: {error.strerror}") from None
        self.received += len(piece)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def not_mpegts(self) -> str | None:
        """Why the bytes written are not an MPEG-TS segment (mpegts.py), or None when they are."""
        return self._check.refusal()

    def commit(self) -> str:
        """fsync, rename to the final name, fsync the directory: blocking, run it off the loop."""
        assert self._fd is not None
        try:
            os.close(self._fd)
            self._fd = None
            commit_file(self._temp, self._directory / self.name)
        except OSError as error:
            self.discard()
            raise PayloadError(f"cannot store a payload: {error.strerror}") from None
        # Stored: it is a queued payload now, no longer one being received.
        self._reservation.release()
        return self.name

    def discard(self) -> None:
        """Remove what was written (a refused or cut-off payload). Safe to call twice."""
        try:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._temp.unlink(missing_ok=True)
        finally:
            self._reservation.release()


class PayloadStore:
    """The ``payloads/`` directory of the spool, and the budget of the payloads being received."""

    def __init__(self, spool_dir: Path, *, max_inflight_bytes: int) -> None:
        self.directory = spool_dir / PAYLOAD_DIR_NAME
        self.budget = PayloadBudget(max_inflight_bytes)

    def open(self) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)

    def receive(self, size: int) -> PayloadFile:
        """A payload file to write ``size`` bytes to; PayloadsBusy when the budget is spent."""
        return PayloadFile(self.directory, size, self.budget.reserve(size))

    def path(self, name: str) -> Path:
        if os.sep in name or name.startswith("."):
            raise ValueError(f"bad payload name {name!r}")
        return self.directory / name

    def remove(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def adopt(self, source: BinaryIO) -> str:
        """Keep the bytes of the open file ``source`` (a segment file, another spool's payload) as
        a payload of this store: a hard link to it when the file system allows (no bytes copied;
        the link made durable, the bytes as durable as ``source``'s), else a copy (another file
        system; a file the daemon does not own under fs.protected_hardlinks), fsync'd. Blocking:
        run it off the loop. Raises PayloadError when it cannot be kept."""
        name = f"{secrets.token_hex(16)}.ts"
        temp = self.directory / (name + _TEMP_SUFFIX)
        try:  # linkat(2) of an open file, through its /proc/self/fd entry
            os.link(f"/proc/self/fd/{source.fileno()}", self.directory / name, follow_symlinks=True)
            linked = True
        except OSError:
            linked = False
        try:
            if linked:
                fsync_directory(self.directory)
            else:
                source.seek(0)
                with open(temp, "xb") as copy:
                    shutil.copyfileobj(source, copy, 1 << 20)
                commit_file(temp, self.directory / name)  # fsync'd there
        except OSError as error:
            temp.unlink(missing_ok=True)
            (self.directory / name).unlink(missing_ok=True)
            raise PayloadError(f"cannot keep a segment for another destination: {error.strerror or error}") from None
        return name

    def sweep(self, referenced: set[str]) -> list[str]:
        """Remove temp files and payloads no queued message names; returns the names removed."""
        removed = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(_TEMP_SUFFIX) or entry.name not in referenced:
                os.unlink(entry.path)
                removed.append(entry.name)
        return removed

