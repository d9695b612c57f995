"""Delivery of index messages to the daemon on a background thread that never stalls the input.

Messages wait in order: the oldest ``memory_limit`` in memory, the rest appended to a journal
file in OUTPUT_DIR. One thread sends them, oldest first, and takes a message off the queue only
when the daemon acknowledged it (``--wire ext``) or took its bytes (``--wire v1``, which has no
reply). While the daemon is down it retries with exponential backoff; the daemon is idempotent,
so a message re-sent after a lost reply does no harm.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from protocol import (
    V1_FIELD_NAMES,
    Ack,
    IndexMessage,
    ProtocolError,
    Reply,
    ReplyDecoder,
    encode_message,
    parse_message,
    sign_at,
)

log = logging.getLogger(__name__)

# Messages kept in memory before later ones go to the journal: a few hundred bytes each, so this
# is ~100 KiB, and at 2-s segments it covers a daemon outage of over 8 minutes without disk.
MAX_MESSAGES_IN_MEMORY = 256

# Connecting to a daemon on the same host or LAN takes milliseconds; longer means it is not there.
CONNECT_TIMEOUT_S = 3.0

# The daemon replies once the message is on its disk (an fsync); a reply this late means trouble.
REPLY_TIMEOUT_S = 15.0

# How often a wait for a reply wakes up to check whether the drain time is over.
WAKE_UP_S = 0.25

# Retry delays while the daemon is down: start fast (a daemon restart takes about a second),
# double, and never wait so long that a recovered daemon learns about a segment late.
FIRST_RETRY_S = 0.2
MAX_RETRY_S = 5.0

# An inline payload is sent with this timeout per socket operation: a few MB over a slow link.
PAYLOAD_SEND_TIMEOUT_S = 60.0

_HASH_CHUNK = 1024 * 1024

class Outcome(enum.Enum):
    DELIVERED = "delivered"
    REFUSED = "refused"  # final ERR: dropped from the queue, reported at exit
    RETRY = "retry"


def v1_only(message: IndexMessage) -> IndexMessage:
    """The message with the ten original fields only."""
    return IndexMessage(**{name: getattr(message, name) for name in V1_FIELD_NAMES})


@dataclass(slots=True)
class DeliveryReport:
    """What happened to the messages of this run, for the exit status."""

    delivered: int = 0
    refused: list[tuple[IndexMessage, str]] = field(default_factory=list)
    undelivered: list[IndexMessage] = field(default_factory=list)
    journal: Path | None = None  # where undelivered messages were kept for the next run


class _Journal:
    """Append-only spill file of encoded messages, read back in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = None
        self._reader = None
        self.unread = 0

    def load_existing(self) -> int:
        """Count the lines an earlier run left; they are sent before anything new."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as file:
            self.unread = sum(1 for line in file if line.strip())
        return self.unread

    def append(self, message: IndexMessage) -> None:
        if self._writer is None:
            self._writer = open(self.path, "ab")
        self._writer.write(encode_message(message, newline=True))
        self._writer.flush()
        self.unread += 1

    def read(self) -> IndexMessage | None:
        while self.unread:
            if self._reader is None:
                self._reader = open(self.path, "rb")
            line = self._reader.readline()
            if not line:
                self.unread = 0
                break
            if not line.strip():
                continue
            self.unread -= 1
            try:
                return parse_message(line)
            except ProtocolError as error:
                log.error("journal %s: dropping an unreadable line: %s", self.path, error)
        self.clear()
        return None

    def read_all(self) -> list[IndexMessage]:
        messages = []
        while (message := self.read()) is not None:
            messages.append(message)
        return messages

    def clear(self) -> None:
        for handle in (self._writer, self._reader):
            if handle is not None:
                handle.close()
        self._writer = self._reader = None
        self.unread = 0
        self.path.unlink(missing_ok=True)

    def rewrite(self, messages: list[IndexMessage]) -> None:
        """Replace the journal with exactly ``messages`` (temp name, fsync, rename)."""
        self.clear()
        temp = self.path.with_name(self.path.name + ".tmp")
        with open(temp, "wb") as file:
            for message in messages:
                file.write(encode_message(message, newline=True))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, self.path)


class _Unacknowledged:
    """Write-ahead record of the messages not yet acknowledged, so that kill -9 loses none.

    Every queued message is appended as ``M <message>`` (and fsync'd) before anything else
    happens to it; every message taken off the queue (acknowledged, or refused for good) appends
    ``A``. Delivery is strictly in order, so the messages still owed are the ``M`` lines after as
    many as there are ``A`` lines. The file is emptied whenever the queue is, so it stays small.
    A message whose ``A`` was lost to a crash is sent again: the daemon takes re-sends as
    duplicates.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def recover(self) -> list[IndexMessage]:
        """What an earlier run that did not exit cleanly still owed the daemon."""
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        messages = []
        for line in lines:
            if line.startswith(b"M "):
                try:
                    messages.append(parse_message(line[2:]))
                except ProtocolError as error:
                    log.error("%s: dropping an unreadable line: %s", self.path, error)
            elif line == b"A" and messages:
                messages.pop(0)
        return messages

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        return self._fd

    def added(self, message: IndexMessage) -> None:
        fd = self._open()
        os.write(fd, b"M " + encode_message(message) + b"\n")
        os.fsync(fd)

    def taken(self) -> None:
        os.write(self._open(), b"A\n")

    def empty(self) -> None:
        """Nothing is owed: start the record afresh."""
        os.ftruncate(self._open(), 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size == 0:
                self.path.unlink()


class Notifier:
    """Queue of messages for the daemon, sent in order by a background thread."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        v1: bool,
        journal_path: Path,
        memory_limit: int = MAX_MESSAGES_IN_MEMORY,
        secret: bytes | None = None,
        send_segments: bool = False,
    ) -> None:
        self.address = address
        self.v1 = v1
        self._secret = secret  # sign each message as it is sent: a re-send gets a new ts and tag
        self._send_segments = send_segments
        self._memory_limit = memory_limit
        self._pending: collections.deque[IndexMessage] = collections.deque()
        self._journal = _Journal(journal_path)
        self._unacknowledged = _Unacknowledged(journal_path.with_suffix(".unacked"))
        self._lock = threading.Condition()
        self._closing = False
        self._deadline: float | None = None
        self._abort = False
        self._report = DeliveryReport()
        self._sock: socket.socket | None = None
        self._replies = ReplyDecoder()
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)

    @property
    def peer(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def start(self) -> None:
        left = self._journal.load_existing()
        if left:
            log.warning("re-sending %d undelivered message(s) kept by an earlier run in %s", left, self._journal.path)
        # A clean exit leaves what it could not deliver in the journal; a killed run leaves what the
        # daemon had not acknowledged in the write-ahead record. Both go first, in that order.
        owed = self._journal.read_all() if left else []
        recovered = []
        for message in self._unacknowledged.recover():
            # Recorded just before its file's rename: a run killed in between left only a .part
            # (removed at start), and the number goes to this run's next segment.
            if message.last_segment and not (Path(message.output_directory) / message.segment_name).exists():
                log.info("segment %s was never finished (the run stopped before its rename): not announced",
                         message.segment_name)
                continue
            recovered.append(message)
        if recovered:
            log.warning("re-sending %d message(s) an earlier run queued but never had acknowledged "
                        "(segments %d to %d)", len(recovered), recovered[0].last_segment, recovered[-1].last_segment)
        self._unacknowledged.empty()
        for message in owed + recovered:
            self.put(message)
        self._thread.start()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending) + self._journal.unread

    def wait_empty(self, timeout_s: float) -> bool:
        """Wait until every queued message is delivered (or refused); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._pending or self._journal.unread:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def record(self, message: IndexMessage) -> None:
        """Write ``message`` into the write-ahead record of what is owed (fsync'd), before ``put``."""
        with self._lock:
            self._unacknowledged.added(message)

    def put(self, message: IndexMessage, *, recorded: bool = False) -> None:
        """Queue a message (recording it first unless ``record`` did); never blocks on the network."""
        with self._lock:
            if not recorded:
                self._unacknowledged.added(message)
            if self._journal.unread or len(self._pending) >= self._memory_limit:
                self._journal.append(message)
            else:
                self._pending.append(message)
            self._lock.notify_all()

    def close(self, timeout_s: float, *, abort: threading.Event | None = None) -> DeliveryReport:
        """Wait up to ``timeout_s`` for everything queued to be delivered, then stop.

        Whatever is still undelivered is written to the journal (re-sent by the next run with the
        same OUTPUT_DIR and OUTPUT_PREFIX) and listed in the report.
        """
        with self._lock:
            self._closing = True
            self._deadline = time.monotonic() + timeout_s
            self._lock.notify_all()
        while self._thread.is_alive():
            self._thread.join(0.1)
            if abort is not None and abort.is_set():
                with self._lock:
                    self._abort = True
                    self._lock.notify_all()
        with self._lock:
            undelivered = list(self._pending) + self._journal.read_all()
            self._pending.clear()
            if undelivered:
                self._journal.rewrite(undelivered)
                self._report.journal = self._journal.path
            else:
                self._journal.clear()
            # Whatever is still owed is in the journal now.
            self._unacknowledged.empty()
            self._unacknowledged.close()
            self._report.undelivered = undelivered
        return self._report

    # -- the thread ---------------------------------------------------------------------------

    def _refill(self) -> None:
        while len(self._pending) < self._memory_limit and self._journal.unread:
            message = self._journal.read()
            if message is None:
                break
            self._pending.append(message)

    def _expired(self) -> bool:
        return self._abort or (self._deadline is not None and time.monotonic() >= self._deadline)

    def _run(self) -> None:
        delay = FIRST_RETRY_S
        try:
            while True:
                with self._lock:
                    while not self._pending and not self._closing:
                        self._lock.wait()
                    if not self._pending or self._expired():
                        return
                    message = self._pending[0]
                outcome = self._deliver(message)
                with self._lock:
                    if outcome is Outcome.RETRY:
                        wait_s = delay
                        if self._deadline is not None:
                            wait_s = min(wait_s, max(self._deadline - time.monotonic(), 0))
                        self._lock.wait(wait_s)
                        delay = min(delay * 2, MAX_RETRY_S)
                        continue
                    delay = FIRST_RETRY_S
                    self._pending.popleft()
                    self._unacknowledged.taken()
                    self._refill()
                    if not self._pending and not self._journal.unread:
                        self._unacknowledged.empty()
                    self._lock.notify_all()
                    if outcome is Outcome.DELIVERED:
                        self._report.delivered += 1
        finally:
            self._disconnect()

    def _timeout(self, limit_s: float) -> float:
        if self._deadline is None:
            return limit_s
        return max(0.05, min(limit_s, self._deadline - time.monotonic()))

    def _deliver(self, message: IndexMessage) -> Outcome:
        try:
            outcome = self._send_v1(message) if self.v1 else self._send_ext(message)
        except (OSError, ProtocolError) as error:
            self._disconnect()
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "daemon at %s: %s; keeping %d message(s) and retrying (segment %d of %s waits)",
                    self.peer, _describe(error), len(self), message.last_segment, message.index,
                )
            return Outcome.RETRY
        if self._down_since is not None and outcome is not Outcome.RETRY:
            log.info("daemon at %s answers again after %.1f s", self.peer, time.monotonic() - self._down_since)
            self._down_since = None
        return outcome

    def _send_v1(self, message: IndexMessage) -> Outcome:
        data = encode_message(v1_only(message))
        with socket.create_connection(self.address, timeout=self._timeout(CONNECT_TIMEOUT_S)) as sock:
            sock.sendall(data)
        log.debug("sent segment %d of %s to %s (v1)", message.last_segment, message.index, self.peer)
        return Outcome.DELIVERED

    def _send_ext(self, message: IndexMessage) -> Outcome:
        payload = None
        if self._send_segments and message.last_segment > 0:
            try:
                payload = open(Path(message.output_directory) / message.segment_name, "rb")
            except OSError as error:
                reason = f"segment file cannot be read for sending: {error.strerror}"
                log.error("segment %d of %s not sent: %s", message.last_segment, message.index, reason)
                self._report.refused.append((message, reason))
                return Outcome.REFUSED
        try:
            return self._exchange(message, payload)
        finally:
            if payload is not None:
                payload.close()

    def _exchange(self, message: IndexMessage, payload: BinaryIO | None) -> Outcome:
        wire = message
        if payload is not None:
            size, digest = _measure(payload)
            wire = dataclasses.replace(wire, size=size, payload_sha256=digest)
        if self._secret is not None:
            wire = sign_at(wire, self._secret, time.time_ns() // 1_000_000)
        if self._sock is None:
            self._sock = socket.create_connection(self.address, timeout=self._timeout(CONNECT_TIMEOUT_S))
            self._replies = ReplyDecoder()
        sock = self._sock
        sock.settimeout(self._timeout(REPLY_TIMEOUT_S))
        sock.sendall(encode_message(wire, newline=True))
        if payload is not None:
            sock.settimeout(PAYLOAD_SEND_TIMEOUT_S)
            payload.seek(0)
            try:
                sent = sock.sendfile(payload)
            except OSError:
                # The daemon may have refused the message (a payload over its limit) and closed:
                # its ERR line, if it arrived, says why; otherwise this is a lost connection.
                reply = self._pending_reply(sock)
                if reply is None:
                    raise
                self._disconnect()
                return self._handle_reply(message, reply)
            if sent != wire.size:
                raise ConnectionError(f"sent {sent} of {wire.size} payload bytes (the segment file changed?)")
        # Wait for the reply in short slices so that the end of the drain time is noticed.
        sock.settimeout(WAKE_UP_S)
        waited_s = 0.0
        while (reply := self._replies.next_reply()) is None:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                waited_s += WAKE_UP_S
                with self._lock:
                    expired = self._expired()
                if expired or waited_s >= REPLY_TIMEOUT_S:
                    raise TimeoutError("no reply in time") from None
                continue
            if not data:
                raise ConnectionResetError("daemon closed the connection")
            self._replies.receive_data(data)
        return self._handle_reply(message, reply)

    def _pending_reply(self, sock: socket.socket) -> Reply | None:
        """A reply already received, if any, without waiting."""
        try:
            sock.settimeout(0.5)
            while (reply := self._replies.next_reply()) is None:
                data = sock.recv(4096)
                if not data:
                    return None
                self._replies.receive_data(data)
            return reply
        except (OSError, ProtocolError):
            return None

    def _handle_reply(self, message: IndexMessage, reply: Reply) -> Outcome:
        if isinstance(reply, Ack):
            if reply.last_segment != message.last_segment:
                raise ProtocolError(f"daemon acknowledged segment {reply.last_segment}, not {message.last_segment}")
            log.debug("daemon at %s has segment %d of %s", self.peer, message.last_segment, message.index)
            return Outcome.DELIVERED
        # An ERR is final (a bad field, a path the daemon does not allow) unless the daemon says
        # "try again: ..." (spool full, too many connections): then it is retried like a lost connection.
        if reply.is_transient:
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning("daemon at %s cannot take segment %d just now: %s; retrying",
                            self.peer, message.last_segment, reply.reason)
            return Outcome.RETRY
        log.error("daemon at %s refused segment %d of %s: %s", self.peer, message.last_segment, message.index, reply.reason)
        self._report.refused.append((message, reply.reason))
        return Outcome.REFUSED

    def _disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def _measure(file: BinaryIO) -> tuple[int, str]:
    """Size and SHA-256 of a segment file, read once before it is sent."""
    digest = hashlib.sha256()
    size = 0
    file.seek(0)
    while chunk := file.read(_HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _describe(error: Exception) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError | socket.timeout):
        return "no answer in time"
    return str(error) or type(error).__name__
