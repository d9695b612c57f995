"""The daemon's policy for each message a peer sends, between the connection and the spool.

A message is checked (authentication over its connection's challenge, its peer's scope: buckets,
key prefixes, inline payloads (peers.py), allowed directories, the master playlist's name, its
segment being MPEG-TS: mpegts.py), then queued durably in the spool and handed to the
publisher; its reply says which. A message with an inline payload is admitted first: its bytes
go to a payload file, and its reply waits until that file is committed and the message queued;
when the payloads being received on all connections would pass --max-payload-inflight, it is
answered "try again" at once. Each outcome is logged with the peer, stream and segment it is
about. A segment file named by a path is read once for the MPEG-TS check before its message is
queued; one that cannot be opened then is queued all the same, and its upload says why it fails.

An error becomes an ERR reply in one place, ``_rejection``: "try again" when it is transient (the
daemon's state is at fault), final otherwise. A new segment for a stream whose end is queued is
refused for good (``ended_reason``): after EXT-X-ENDLIST a playlist never changes (RFC 8216
6.2.1); a re-send of a message already queued is still answered OK.

Each message claims its stream for its writer (``ownership.py``: one writer at a time), decided in
the spool's transaction: a second writer is refused for good with ``Reject.not_writer``, a
takeover is logged, and the start-up message of a writer is answered ``OK 0 last=N`` with the
stream's highest queued segment number, so that it numbers after it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from common.logs import SEGMENT, STREAM
from protocol import Ack, ChallengeSession, IndexMessage, Reject, Reply, writer_label

from .alignment import AlignmentTracker
from .files import AllowedDirs, DirectoryRefused, SegmentFileError, WouldBlock
from .metrics import DaemonMetrics, Refusal
from .ownership import Claim, OwnershipRule
from .payloads import PayloadError, PayloadFile, PayloadsBusy, PayloadStore
from .peers import Peers, Scope
from .publisher import Publisher
from .spool import NotTheWriter, Queued, Spool, SpoolError, SpoolThread
from .stream import stream_label

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Replica:
    """A destination after the first: its own spool, payloads and publisher (``name``: its
    --store, for the log)."""

    name: str
    spool: SpoolThread
    payloads: PayloadStore
    publisher: Publisher


# A segment file that cannot be opened for these reasons is gone, or refused for good.
_GONE_ERRNOS = frozenset({None, errno.ENOENT, errno.ELOOP, errno.ENOTDIR})


def ended_reason(label: str) -> str:
    """Why a new segment for the ended stream ``label`` is refused, and what to do instead."""
    return (f"stream {label} has ended and its playlist is final (RFC 8216 6.2.1): start the new run under"
            " another INDEX_NAME or KEY_PREFIX")


def _rejection(reason: str, *, transient: bool) -> Reject:
    """The ERR reply for ``reason``: "try again" when ``transient`` (an error's), else a final refusal."""
    return Reject.try_again(reason) if transient else Reject.because(reason)


class Intake:
    """Checks, queues and answers the messages of every connection. Runs on the event loop.

    ``admit`` takes each message. A message admitted with an inline payload ends in exactly one
    of ``accept_payload`` (all its bytes written), ``cut_off`` (they stopped coming) or
    ``payload_lost`` (the disk failed them); each of them disposes of its payload file.
    """

    def __init__(
        self,
        *,
        spool: SpoolThread,
        publisher: Publisher,
        allowed: AllowedDirs,
        peers: Peers,
        payloads: PayloadStore,
        master_name: str = "",
        ownership: OwnershipRule,
        metrics: DaemonMetrics | None = None,
        replicas: Sequence[Replica] = (),
        keep_segment_files: bool = False,
    ) -> None:
        """``peers``: who may write what, and whether messages must be signed. ``master_name``:
        the master playlist's name, which no stream may take. ``ownership``: who may write a
        stream (--takeover-after). ``replicas``: the destinations after the first (``spool`` and
        ``publisher`` are the first's), each queued every message the first takes; with them, a
        segment file is removed once all have their own link to it, unless ``keep_segment_files``."""
        self._spool = spool
        self._publisher = publisher
        self._allowed = allowed
        self._peers = peers
        self._payloads = payloads
        self._master_name = master_name
        self._ownership = ownership
        self._metrics = metrics or DaemonMetrics()
        self._replicas = tuple(replicas)
        self._keep_segment_files = keep_segment_files
        # Per program (bucket, key_prefix): do its renditions' segments line up? Checked as
        # messages arrive, so the warning comes in real time.
        self._alignment: dict[tuple[str, str], AlignmentTracker] = {}

    def new_session(self) -> ChallengeSession:
        """The challenge state of a new connection."""
        return ChallengeSession(self._peers.secrets)

    async def admit(self, peer: str, message: IndexMessage, session: ChallengeSession) -> Reply | PayloadFile:
        """The reply to ``message`` from ``peer`` (an address, for the log) on the connection of
        ``session``, once it is queued or refused. For a message admitted with an inline payload:
        the PayloadFile its ``message.size`` bytes are to be written to, then handed to
        ``accept_payload``.

        A refused message's payload bytes are the caller's to skip. Raises PayloadError when no
        payload file can be created: answer with ``payload_lost``.
        """
        STREAM.set(stream_label(message.stream_id))  # this connection's log lines, until its next message
        SEGMENT.set(message.segment_name if message.last_segment else None)  # segment 0: a writer's start-up
        refused = self._refusal(peer, message, session)
        if refused is not None:
            return refused
        if message.size is None:
            if message.last_segment > 0:
                try:  # here when the page cache has the file (a hand-off to a thread costs more)
                    reason = self._allowed.not_mpegts(message.output_directory, message.segment_name, cached_only=True)
                except WouldBlock:
                    reason = await asyncio.get_running_loop().run_in_executor(
                        None, self._allowed.not_mpegts, message.output_directory, message.segment_name)
                if reason is not None:
                    return self._refuse(peer, message, reason, Refusal.PAYLOAD)
            reply, _ = await self._queue(peer, message)
            return reply
        try:
            return self._payloads.receive(message.size)
        except PayloadsBusy as error:
            # The daemon's state, not the peer's fault: the peer sends it again later.
            log.warning("peer %s stream %s segment %s: payload put off: %s", peer,
                        stream_label(message.stream_id), message.segment_name, error)
            self._metrics.refused(Refusal.DAEMON)
            return _rejection(str(error), transient=error.transient)

    async def accept_payload(self, peer: str, message: IndexMessage, payload: PayloadFile) -> Reply:
        """The reply to ``message`` once all of its payload is in ``payload``: checked against
        its sha256 and found to be MPEG-TS, committed (off the event loop) and the message queued;
        else refused."""
        if message.payload_sha256 is not None and payload.sha256 != message.payload_sha256:
            payload.discard()
            return self._refuse(peer, message, "payload does not match its sha256", Refusal.PAYLOAD)
        if (reason := payload.not_mpegts()) is not None:
            payload.discard()
            return self._refuse(peer, message, f"inline payload is not MPEG-TS: {reason}", Refusal.PAYLOAD)
        try:
            name = await asyncio.get_running_loop().run_in_executor(None, payload.commit)
        except PayloadError as error:
            return self.payload_lost(peer, message, error)
        reply, new = await self._queue(peer, message, name)
        if not new:
            self._payloads.remove(name)  # refused, or a re-send of a message already queued
        return reply

    def cut_off(self, peer: str, message: IndexMessage, payload: PayloadFile, reason: str) -> None:
        """``message``'s payload stopped coming in (``reason``): drop what was written of it."""
        payload.discard()
        log.warning("peer %s stream %s segment %s: payload cut off, nothing kept: %s",
                    peer, stream_label(message.stream_id), message.segment_name, reason)

    def payload_lost(self, peer: str, message: IndexMessage, error: PayloadError,
                     payload: PayloadFile | None = None) -> Reject:
        """The reply to ``message`` when the disk failed its payload: "try again". ``payload``,
        if one was made, is dropped. When its bytes were still to come (``admit`` or a write
        raised), they are not read: the caller ends the connection after this reply."""
        if payload is not None:
            payload.discard()
        log.error("peer %s stream %s segment %s: payload not stored: %s", peer,
                  stream_label(message.stream_id), message.segment_name, error)
        self._metrics.refused(Refusal.DAEMON)
        return _rejection(str(error), transient=error.transient)

    def _refusal(self, peer: str, message: IndexMessage, session: ChallengeSession) -> Reject | None:
        """Authentication and policy: a refusal, or None when the message may be queued."""
        if self._peers.require_signature:
            refused = session.refusal(message)
            if refused is not None:
                log.warning("peer %s stream %s segment %s: not authenticated: %s", peer,
                            stream_label(message.stream_id), message.segment_name, refused.reason)
                self._metrics.refused(Refusal.AUTHENTICATION)
                return Reject.because(refused.reason)
        if (outside := self._peers.scope_of(message).refusal(message)) is not None:
            return self._refuse(peer, message, outside, Refusal.SCOPE)
        if self._master_name and message.index == self._master_name:
            return self._refuse(peer, message,
                                f"index {message.index} is the name of the master playlist (--master-name)",
                                Refusal.BAD_MESSAGE)
        if message.size is not None:
            if message.last_segment == 0 or message.size == 0:
                return self._refuse(peer, message, "an inline payload needs a segment (LAST_SEGMENT > 0, size > 0)",
                                    Refusal.BAD_MESSAGE)
            return None  # the bytes come with the message: no directory is read
        if message.last_segment == 0:
            return None
        try:
            self._allowed.check(message.output_directory)
        except DirectoryRefused as error:
            return self._refuse(peer, message, str(error), Refusal.SCOPE)
        return None

    async def _queue(self, peer: str, message: IndexMessage, payload: str | None = None) -> tuple[Reply, bool]:
        """The durable queue: the reply for ``message``, and whether it was newly queued.

        ``payload`` names its committed inline payload in the spool's payloads/ directory.
        """
        label = stream_label(message.stream_id)
        segment = message.segment_name
        for publisher in self._publishers:
            if (elsewhere := await publisher.elsewhere(message)) is not None:
                # Its queue here would not be published: a probe too is told to look elsewhere.
                self._metrics.refused(Refusal.DAEMON)
                return Reject.try_again(f"{elsewhere}: send to another daemon"), False
        if message.probe:
            return await self._ack(message), False
        if message.last_segment == 0 and message.writer is None:
            log.info("peer %s stream %s: start-up message (segment 0) acknowledged", peer, label)
            return await self._ack(message), False
        scope = self._peers.scope_of(message)
        claim = Claim(message.writer, message.takeover, _peer_identity(peer, scope), time.time(),
                      may_take_over=scope.takeover)
        try:
            links = await self._links(message, payload)
        except PayloadError as error:
            log.error("peer %s stream %s segment %s: not queued: %s", peer, label, segment, error)
            self._metrics.refused(Refusal.DAEMON)
            return _rejection(f"daemon cannot keep the segment for every destination: {error}", transient=True), False
        own = links[0] if links else None
        try:
            admitted = await self._spool.call(Spool.admit, self._spool.spool, message, payload or own, claim,
                                              self._ownership)
        except NotTheWriter as error:
            self._drop(links)
            return self._refuse(peer, message, str(error), Refusal.NOT_WRITER), False
        except SpoolError as error:
            self._drop(links)
            log.error("peer %s stream %s segment %s: not queued: %s", peer, label, segment, error)
            self._metrics.refused(Refusal.DAEMON)
            return _rejection(f"daemon cannot queue the message: {error}", transient=error.transient), False
        queued = admitted.queued
        if queued is not Queued.NEW and own is not None:
            self._payloads.remove(own)
        if (former := admitted.took_over) is not None:
            log.warning("peer %s stream %s: taken over by %s%s from %s of peer %s (last message"
                        " %.0f s before)", peer, label, writer_label(message.writer),
                        " (takeover=1)" if message.takeover else "", writer_label(former.writer), former.peer,
                        claim.at - former.seen_at)
        if queued is Queued.IGNORED:
            log.info("peer %s stream %s: start-up message of %s acknowledged: the stream is at segment %d",
                     peer, label, writer_label(message.writer), admitted.stream_last)
            return await self._ack(message, admitted.stream_last), False
        if queued is Queued.ENDED:
            self._drop([None, *links[1:]])
            return self._refuse(peer, message, ended_reason(label), Refusal.ENDED), False
        if queued is Queued.NEW:
            self._publisher.notify(message.stream_id)
        if self._replicas:
            if (refused := await self._replicate(message, links[1:])) is not None:
                # Queued for the first destination, not for every one: the peer sends it again,
                # and the destinations that have it take the re-send as one.
                self._metrics.refused(Refusal.DAEMON)
                return _rejection(refused, transient=True), queued is Queued.NEW
            if payload is None and not self._keep_segment_files:
                await asyncio.get_running_loop().run_in_executor(None, self._remove_segment_file, message)
        if queued is Queued.NEW:
            self._observe_alignment(message)
            log.info("peer %s stream %s segment %s queued%s%s", peer, label, segment,
                     f" with its {message.size}-byte payload" if payload else "", " (end)" if message.end else "")
        else:
            log.info("peer %s stream %s segment %s already queued (re-sent)", peer, label, segment)
        return await self._ack(message), queued is Queued.NEW

    async def _ack(self, message: IndexMessage, stream_last: int | None = None) -> Reply:
        """The OK for ``message``; with ``confirm=1``, saying how far its stream is published on
        every destination (``Spool.published_through``: the lowest of theirs), or "try again"
        when a spool cannot say (the message, if queued, stays queued: the re-send is a duplicate)."""
        if not message.confirm:
            return Ack(message.last_segment, stream_last)
        published = []
        for spool in [self._spool, *(replica.spool for replica in self._replicas)]:
            try:
                published.append(spool.read(Spool.published_through, message.stream_id))
            except SpoolError as error:
                log.error("stream %s: how far it is published cannot be read: %s", stream_label(message.stream_id),
                          error)
                return _rejection(f"daemon cannot read how far the stream is published: {error}", transient=True)
        return Ack(message.last_segment, stream_last, min(published))

    @property
    def _publishers(self) -> list[Publisher]:
        return [self._publisher, *(replica.publisher for replica in self._replicas)]

    async def _links(self, message: IndexMessage, payload: str | None) -> list[str | None]:
        """With several destinations, each one's own link to the segment's bytes, made before
        anything is queued (``PayloadStore.adopt``), so that none depends on another having
        published or on the segmenter's file: the first's (None for an inline ``payload``, which
        it has), then the others'. A None for a message without a segment or whose file is gone
        (each destination then fails it). Empty with one destination. Raises PayloadError, the
        links made removed."""
        if not self._replicas or message.last_segment == 0:
            return [None] * (len(self._replicas) + 1) if self._replicas else []
        stores = [None if payload is not None else self._payloads, *(r.payloads for r in self._replicas)]
        return await asyncio.get_running_loop().run_in_executor(None, self._adopt, stores, message, payload)

    def _drop(self, links: list[str | None]) -> None:
        """Remove links ``_links`` made (in its order) that no spool queued."""
        for store, name in zip([self._payloads, *(r.payloads for r in self._replicas)], links):
            if name is not None:
                store.remove(name)

    async def _replicate(self, message: IndexMessage, links: list[str | None]) -> str | None:
        """Queue ``message``, taken by the first destination, for every other one with its link
        (``_links``). Returns None, or why a destination could not queue it (the peer is to send
        it again: the segment file stays until every destination has it)."""
        for index, (replica, name) in enumerate(zip(self._replicas, links, strict=True)):
            try:
                queued = await replica.spool.call(Spool.enqueue, replica.spool.spool, message, name)
            except SpoolError as error:
                log.error("stream %s segment %s: not queued for destination %s: %s", stream_label(message.stream_id),
                          message.segment_name, replica.name, error)
                self._drop([None, *(None,) * index, *links[index:]])  # this one's and the next ones' links
                return f"daemon cannot queue the message for destination {replica.name}: {error}"
            if queued is Queued.NEW:
                replica.publisher.notify(message.stream_id)
            elif name is not None:
                replica.payloads.remove(name)
            if queued is Queued.ENDED:
                log.warning("stream %s segment %s: destination %s has the stream ended already; it does not get"
                            " this segment", stream_label(message.stream_id), message.segment_name, replica.name)
        return None

    def _remove_segment_file(self, message: IndexMessage) -> None:
        """The segment file under --allow-dir, once every destination has its own link to it."""
        try:
            self._allowed.remove_segment(message.output_directory, message.segment_name)
        except (DirectoryRefused, SegmentFileError) as error:
            log.warning("stream %s: segment %s queued, but its file stays: %s", stream_label(message.stream_id),
                        message.segment_name, error)

    def _adopt(self, stores: list[PayloadStore | None], message: IndexMessage,
               payload: str | None) -> list[str | None]:
        """Each of ``stores``' own link to the segment of ``message`` (None for a None store), the
        segment opened once: its inline ``payload``, else its file (all None when it is gone:
        every destination fails it as one would). Blocking. Raises PayloadError, the links made
        removed."""
        try:
            if payload is not None:
                source: BinaryIO = open(self._payloads.path(payload), "rb")
            else:
                source = self._allowed.open_segment(message.output_directory, message.segment_name)
        except (DirectoryRefused, SegmentFileError, OSError) as error:
            # Gone, or refused for good (a symlink, not a file): every destination fails it as one
            # would. An error that may pass (out of descriptors, I/O): the peer tries again.
            if isinstance(error, DirectoryRefused) or getattr(error, "errno", None) in _GONE_ERRNOS:
                return [None] * len(stores)
            raise PayloadError(f"cannot read the segment to keep it for every destination: {error}") from None
        links: list[str | None] = []
        with source:
            try:
                for store in stores:
                    links.append(None if store is None else store.adopt(source))
            except PayloadError:
                for store, name in zip(stores, links):
                    if store is not None and name is not None:
                        store.remove(name)
                raise
        return links

    def _observe_alignment(self, message: IndexMessage) -> None:
        tracker = self._alignment.setdefault((message.bucket, message.key_prefix), AlignmentTracker())
        for warning in tracker.observe(message.index, message.last_segment, message.start, message.frame_rate):
            program = f"{message.bucket}/{message.key_prefix}" if message.key_prefix else message.bucket
            log.warning("program %s segment %d: %s", program, message.last_segment, warning)

    def _refuse(self, peer: str, message: IndexMessage, reason: str, kind: Refusal) -> Reject:
        """A final refusal of ``message`` for ``reason`` of ``kind``, logged and counted;
        Refusal.NOT_WRITER refuses its sender as the stream's writer."""
        self._metrics.refused(kind)
        not_writer = kind is Refusal.NOT_WRITER
        log.warning("peer %s%s stream %s segment %s refused: %s", peer,
                    f" {writer_label(message.writer)}" if message.writer else "", stream_label(message.stream_id),
                    message.segment_name, reason, extra={"error_kind": kind.value})
        return Reject.not_writer(reason) if not_writer else Reject.because(reason)


def _peer_identity(peer: str, scope: Scope) -> str:
    """The peer a stream's owner is recorded with: the key id of the signed peer whose ``scope``
    judged the message (``default`` for --secret-file), else the host of ``peer``'s address
    (HOST:PORT)."""
    if scope.secret is not None:
        return scope.name
    return peer.rpartition(":")[0] or peer
