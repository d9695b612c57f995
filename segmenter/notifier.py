"""Delivery of index messages to the daemon on a background thread that never stalls the input.

Every message is first recorded in the outbox (``outbox.Outbox``, fsync'd), then one thread
sends the owed messages in order, oldest first, through ``client.DaemonClient``. With ``--wire
ext`` each message asks the daemon to confirm its publication (``confirm=1``): it stays in the
outbox, and with ``--send-segments`` its segment file stays too, until a reply says the stream is
published past it (``published=N``, on the next message's OK or on a probe sent while nothing else
is). A daemon that does not confirm (an older hls-uploadd) has a message done once acknowledged;
``--wire v1``, which has no reply, once its bytes are written. A message refused for good is done.

Several daemons (``--uploader A,B``): the thread sends to one at a time, in ``client.daemon_order``.
When it stops answering, or answers "try again", the thread moves to the next and sends it every
message not confirmed published, so a daemon's host lost with its disk loses nothing: the next
daemon reads the stream's state back from the store and skips what it lists already. While every
daemon is down it retries with exponential backoff. Whatever is still owed when the run ends or
dies stays in the outbox and is sent first by the next run with the same OUTPUT_DIR and
OUTPUT_PREFIX.

A run starts with a start-up message (LAST_SEGMENT 0, ``start``): it claims the stream for this
writer (with ``takeover=1`` for --take-over) and its reply says where the stream is. Once the
daemon refuses this writer (another one owns the stream, or took it over: ``NOT_WRITER``),
nothing more is sent: the owed messages are dropped at ``close`` (their segment files stay), since
a later run must not slip stale segments into a stream another writer feeds.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from protocol import IndexMessage

from .client import FAILOVER_REPLY_TIMEOUT_S, REPLY_TIMEOUT_S, DaemonClient, Deadline, SendResult, retry_delays
from .outbox import Outbox, OutboxError, Owed

log = logging.getLogger(__name__)

# The ``Owed.id`` of a message ``send_unrecorded`` queued: no outbox row has it (theirs start at 1).
_UNRECORDED = 0
# The ``Owed.id`` of the start-up message while it waits to be sent.
_STARTUP = -1
# The ``Owed.id`` of a probe: the start-up message with probe=1, which asks how far the stream is published.
_PROBE = -2

# How long a message the daemon queued waits for a newer message's reply to say it is published
# before a probe asks; publishing a segment takes the daemon tens of milliseconds.
PROBE_INTERVAL_S = 0.5


@dataclass(slots=True)
class DeliveryReport:
    """What happened to the messages of this run, for the exit status."""

    delivered: int = 0
    refused: list[tuple[IndexMessage, str]] = field(default_factory=list)  # with the daemon's reason
    undelivered: list[IndexMessage] = field(default_factory=list)
    # Acknowledged (queued by a daemon) but not confirmed published when the run closed.
    unconfirmed: list[IndexMessage] = field(default_factory=list)
    outbox: Path | None = None  # where the undelivered and unconfirmed messages wait for the next run
    not_writer: str | None = None  # the daemon's refusal of this writer, which stopped the sending


class Notifier:
    """The owed messages of one OUTPUT_DIR and OUTPUT_PREFIX, sent in order by a background thread.

    ``addresses`` are the daemons' (host, port), in the order they are tried; ``outbox_path``
    the outbox file, opened (or created) here; ``secret`` signs every message, as the peer
    ``key_id`` (None: ``default``); ``send_segments`` sends each segment's bytes after its
    message; ``tls`` and ``server_name``: a TLS connection (``DaemonClient``); ``remove_sent``
    (with ``send_segments``) removes each segment file once its message is done (published, or
    acknowledged by a daemon that does not confirm). ``on_not_writer`` is called
    (from the sending thread) when the daemon refuses this writer. Raises OutboxError (an
    OSError) when the outbox cannot be opened.
    """

    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        *,
        v1: bool,
        outbox_path: Path,
        secret: bytes | None = None,
        key_id: str | None = None,
        send_segments: bool = False,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        remove_sent: bool = False,
        on_not_writer: Callable[[], object] = lambda: None,
    ) -> None:
        self._outbox = Outbox.open(outbox_path)
        self._remove_sent = send_segments and remove_sent
        self._deadline = Deadline()
        self._on_not_writer = on_not_writer
        # This OUTPUT_DIR's writer id, sent with every message (None on the v1 wire, which has no field for it).
        self.writer = None if v1 else self._outbox.writer()
        reply_timeout_s = FAILOVER_REPLY_TIMEOUT_S if len(addresses) > 1 else REPLY_TIMEOUT_S
        self._clients = [DaemonClient(address, v1=v1, secret=secret, key_id=key_id, send_segments=send_segments,
                                      deadline=self._deadline, backlog=self.__len__, tls=tls, server_name=server_name,
                                      writer=self.writer, reply_timeout_s=reply_timeout_s) for address in addresses]
        self._current = 0  # the daemon in ``_clients`` being sent to
        self._failures = 0  # attempts failed in a row, over every daemon
        # How many of the oldest owed messages the current daemon acknowledged: they wait for its published=.
        self._acked = 0
        self._probe: IndexMessage | None = None
        self._probed_at = 0.0  # time.monotonic() of the last reply that said how far the stream is published
        # The start-up message, until the daemon answered it.
        self._startup: IndexMessage | None = None
        self._lock = threading.Condition()
        self._closing = False
        # The message ``record`` added last, not sent until ``put`` says its segment has its name.
        self._held: int | None = None
        # The highest segment number ``put`` queued: what an end message can name.
        self.last_announced: int | None = None
        # Messages the outbox could not record (its disk is full), sent after the owed ones.
        self._unrecorded: list[IndexMessage] = []
        self._report = DeliveryReport()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)

    def start(self, startup: IndexMessage | None = None, *, unfinished: Collection[str] = ()) -> int | None:
        """Send ``startup`` (a start-up message) once, then start sending it (until answered), what an
        earlier run left owed, then this run's messages. ``unfinished``: the segment names whose
        ``.part`` files this start removed (an earlier run stopped before their rename); the
        newest owed message, if it names one, is dropped. Returns the daemon's ``stream_last``
        for ``startup`` (None when it did not answer with one). When it refused this writer,
        ``not_writer`` says why and nothing is sent. Raises OutboxError (an OSError)."""
        if startup is not None:
            self._probe = replace(startup, takeover=False, probe=True)
        stream_last = None if startup is None else self._start_up(startup)
        if self._report.not_writer is not None:
            return None
        outbox = self._outbox
        newest = outbox.newest()
        if newest is not None and newest.message.last_segment and newest.message.segment_name in unfinished:
            # Recorded just before its file's rename: a run killed in between left only a .part
            # (removed at start), and the number goes to this run's next segment. A file missing
            # without a .part was renamed, sent, and removed once stored: it stays owed.
            log.info("segment %s was never finished (the run stopped before its rename): not announced",
                     newest.message.segment_name)
            outbox.remove(newest.id, settle=False)
        oldest, newest = outbox.oldest(), outbox.newest()
        if oldest is not None and newest is not None:
            log.warning("re-sending %d message(s) an earlier run left owed in %s (segments %d to %d)",
                        len(outbox), outbox.path, oldest.message.last_segment, newest.message.last_segment)
        self._thread.start()
        return stream_last

    def _start_up(self, startup: IndexMessage) -> int | None:
        """One attempt at ``startup`` on each daemon in turn, until one answers (then it is the one
        sent to); kept to be sent first by the thread when none did."""
        for index, client in enumerate(self._clients):
            result, reason = client.send(startup)
            if result is SendResult.RETRY:
                continue
            self._current = index
            if result is SendResult.DELIVERED:
                return client.last_ack.stream_last if client.last_ack is not None else None
            if result is SendResult.NOT_WRITER:
                self._report.not_writer = reason
            return None
        log.warning("no daemon answered the start-up message: segments are numbered from %s alone",
                    self._outbox.path.parent)
        self._startup = startup
        return None

    @property
    def not_writer(self) -> str | None:
        """The daemon's refusal of this writer, once it came (then nothing more is sent)."""
        return self._report.not_writer

    def highest_number(self) -> int:
        """The highest segment number owed or ever delivered through this outbox (``start``
        first: it drops an unfinished one). Raises OutboxError (an OSError)."""
        with self._lock:
            return self._outbox.highest_number()

    def __len__(self) -> int:
        """Messages owed: recorded and neither confirmed published (acknowledged, by a daemon that
        does not confirm) nor refused for good."""
        with self._lock:
            return self._owed_count()

    def _owed_count(self) -> int:
        return len(self._outbox) + len(self._unrecorded)

    def wait_empty(self, timeout_s: float) -> bool:
        """Wait until every owed message is done (published, or refused); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._owed_count():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def record(self, message: IndexMessage) -> None:
        """Record ``message`` as owed (fsync'd) but hold it back until ``put(message, recorded=True)``:
        the committer calls this before its segment's rename. Raises OutboxError (an OSError)."""
        with self._lock:
            self._held = self._outbox.add(message)

    def put(self, message: IndexMessage, *, recorded: bool = False) -> None:
        """Queue ``message`` for sending: the one ``record`` held back, or (``recorded`` False) a
        new one, recorded first. Never waits for the network. Raises OutboxError (an OSError)."""
        with self._lock:
            if recorded:
                self._held = None
            else:
                self._outbox.add(message)
            if message.last_segment:
                self.last_announced = max(self.last_announced or 0, message.last_segment)
            self._lock.notify_all()

    def send_unrecorded(self, message: IndexMessage) -> None:
        """Queue ``message`` after the owed ones without recording it, for when the outbox cannot
        be written (a full disk): this run sends it, but it is lost if the run dies first."""
        with self._lock:
            self._unrecorded.append(message)
            self._lock.notify_all()

    def settle_recorded(self, *, named: bool) -> None:
        """The commit of the segment ``record`` held back failed: send its message if the file got
        its name after all (``named``), else drop it. Nothing to do when nothing is held.
        Raises OutboxError (an OSError)."""
        with self._lock:
            if self._held is not None and not named:
                self._outbox.remove(self._held)
            self._held = None
            self._lock.notify_all()

    def close(self, timeout_s: float, *, abort: threading.Event | None = None) -> DeliveryReport:
        """Wait up to ``timeout_s`` for every owed message to be delivered, then stop; stop at
        once when ``abort`` is set.

        Whatever is still owed stays in the outbox (re-sent by the next run with the same
        OUTPUT_DIR and OUTPUT_PREFIX) and is listed in the report.
        """
        self._deadline.set(timeout_s)
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        while self._thread.is_alive():
            self._thread.join(0.1)
            if abort is not None and abort.is_set():
                self._deadline.abort()
                with self._lock:
                    self._lock.notify_all()
        with self._lock:
            if self._report.not_writer is not None:
                self._drop_owed()
            owed = self._outbox.messages()
            self._report.unconfirmed = owed[:self._acked]
            self._report.undelivered = owed[self._acked:] + self._unrecorded
            if owed or self._unrecorded:
                self._report.outbox = self._outbox.path
            self._outbox.close()
        return self._report

    def _drop_owed(self) -> None:
        """This writer was refused: what it still owes is dropped (settled, so a later run on this
        OUTPUT_DIR numbers after it), logged once."""
        owed = self._outbox.messages() + self._unrecorded
        while (oldest := self._outbox.oldest()) is not None:
            self._outbox.remove(oldest.id)
        self._unrecorded.clear()
        if owed:
            numbers = [message.last_segment for message in owed]
            log.warning("dropped %d owed message(s) (segments %d to %d): the daemon refused this writer;"
                        " their segment files stay in %s", len(owed), min(numbers), max(numbers),
                        self._outbox.path.parent)

    # -- the thread ---------------------------------------------------------------------------

    def _next(self) -> Owed | None:
        """The oldest message that may be sent, or a probe when only messages the daemon has not
        published yet are owed; None once the run closed and nothing more is owed, the drain
        time is over, or the daemon refused this writer."""
        with self._lock:
            while True:
                if self._report.not_writer is not None:
                    return None
                # The start-up message goes first; it is not owed: nothing waits for it at the close.
                owed = Owed(_STARTUP, self._startup) if self._startup is not None else self._outbox.at(self._acked)
                if owed is None and self._unrecorded:
                    owed = Owed(_UNRECORDED, self._unrecorded[0])
                if owed is not None and owed.id == self._held:
                    owed = None
                wait_s: float | None = None
                unpublished = owed is None and self._unpublished()
                if unpublished:
                    wait_s = self._probed_at + PROBE_INTERVAL_S - time.monotonic()
                    if wait_s <= 0:
                        owed = Owed(_PROBE, self._probe)  # type: ignore[arg-type]  # set when confirming
                if self._closing and (self._deadline.expired() or (owed is None and not unpublished)):
                    return None
                if owed is not None:
                    return owed
                self._lock.wait(None if wait_s is None else self._deadline.bound(wait_s))

    def _unpublished(self) -> bool:
        """Whether the current daemon acknowledged messages it has not said are published."""
        return self._probe is not None and self._acked > 0

    def _run(self) -> None:
        delays = retry_delays()
        try:
            while (owed := self._next()) is not None:
                client = self._clients[self._current]
                result, reason = client.send(owed.message)
                with self._lock:
                    if result is SendResult.RETRY:
                        if self._fail_over(client):
                            continue
                        # A new segment or the close cuts the wait short (they notify).
                        self._lock.wait(self._deadline.bound(next(delays)))
                        continue
                    self._failures = 0
                    if result is SendResult.NOT_WRITER:
                        self._report.not_writer = reason
                        self._lock.notify_all()
                        self._on_not_writer()
                        return
                    delivered = result is SendResult.DELIVERED
                    ack = client.last_ack if delivered else None
                    if owed.id == _STARTUP:
                        self._startup = None
                        delays = retry_delays()
                        continue
                    if owed.id == _PROBE:
                        if ack is None or ack.published is None:  # refused: the daemon cannot say
                            log.warning("daemon at %s does not say how far the stream is published (%s): the"
                                        " messages it acknowledged are taken as done", client.peer, reason)
                            self._probe = None
                            self._settle(None)
                        else:
                            self._settle(ack.published)
                        continue
                    if ack is not None and ack.published is not None and owed.id != _UNRECORDED:
                        self._acked += 1  # kept until published
                        self._settle(ack.published)
                        delays = retry_delays()
                        continue
                    try:
                        if owed.id == _UNRECORDED:
                            self._unrecorded.pop(0)
                        else:
                            self._outbox.remove(owed.id, durable=delivered and self._remove_sent)
                    except OutboxError as error:
                        # A full disk: the message stays owed and is sent again (a duplicate to
                        # the daemon) once the removal can be written.
                        log.warning("%s", error.strerror)
                        self._lock.wait(self._deadline.bound(next(delays)))
                        continue
                    delays = retry_delays()
                    if delivered:
                        self._report.delivered += 1
                        if self._remove_sent:
                            _remove_segment(owed.message)
                    else:
                        self._report.refused.append((owed.message, reason))
                    self._lock.notify_all()
        finally:
            for client in self._clients:
                client.close()

    def _fail_over(self, client: DaemonClient) -> bool:
        """``client``'s daemon did not take a message: every message it did not confirm published
        is to be sent again, and with several daemons the next one is tried. Returns whether to
        try it at once (False after a whole round of failures: then the caller backs off)."""
        self._acked = 0
        self._failures += 1
        if len(self._clients) == 1:
            return False
        client.close()
        self._current = (self._current + 1) % len(self._clients)
        if self._failures <= len(self._clients):  # once per daemon while all are down
            log.warning("moving from the daemon at %s to the one at %s; %d message(s) not confirmed published are"
                        " sent there", client.peer, self._clients[self._current].peer, self._owed_count())
        return self._failures % len(self._clients) != 0

    def _settle(self, published: int | None) -> None:
        """The current daemon's reply says its stream is published up to segment ``published``
        (None: it cannot say): the messages it acknowledged up to there are done, and their
        segment files removed with --send-segments. A removal the outbox cannot write (a full
        disk) waits for the next reply."""
        self._probed_at = time.monotonic()
        try:
            while (self._acked and (oldest := self._outbox.oldest()) is not None
                   and (published is None or oldest.message.last_segment <= published)):
                self._outbox.remove(oldest.id, durable=self._remove_sent)
                self._acked -= 1
                self._report.delivered += 1
                if self._remove_sent:
                    _remove_segment(oldest.message)
        except OutboxError as error:
            log.warning("%s", error.strerror)
        self._lock.notify_all()


def _remove_segment(message: IndexMessage) -> None:
    """The file of a segment the daemon acknowledged with its bytes: it holds them now."""
    path = Path(message.output_directory) / message.segment_name
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        log.warning("segment %s delivered, but its file stays: %s", path, error.strerror or error)
