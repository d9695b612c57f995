"""The TCP side: bytes in, one reply line per message out; parsing stays in protocol/.

A connection handler only moves bytes between the socket and a ``MessageDecoder``, applies the
daemon's policy (authentication, allowed buckets and directories), queues the message durably and
replies. An original client sends one message and closes without reading: the reply is written
anyway and a broken pipe is ignored.

A message with ``size=N`` is followed by N bytes of segment: they are written piece by piece to
a payload file in the spool (payloads.py) and the reply waits until that file is fsync'd and the
message queued. A payload cut off mid-way leaves nothing behind. When the payloads being received
on all connections would pass --max-payload-inflight, the message gets "ERR try again" at once and
its bytes are read and dropped, so the connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from protocol import (
    CLOSED,
    DEFAULT_MAX_PAYLOAD_BYTES,
    IDLE_TIMEOUT_S,
    NEED_DATA,
    Ack,
    IndexMessage,
    MessageDecoder,
    PayloadData,
    PayloadEnd,
    ProtocolError,
    Reject,
    Reply,
    ReplayGuard,
    encode_reply,
)

from .alignment import AlignmentTracker
from .files import AllowedDirs, DirectoryRefused
from .payloads import PayloadError, PayloadFile, PayloadsBusy, PayloadStore
from .publisher import Publisher
from .spool import Queued, Spool, SpoolError, SpoolThread
from .stream import stream_label

log = logging.getLogger(__name__)

# Connections held at once. Each costs a socket and a small buffer; real deployments have one
# per segmenter. Past this, new peers get one ERR line and are closed.
MAX_CONNECTIONS = 512

# Bad messages tolerated on one connection before it is closed: a confused client gets its
# reasons, a fuzzer or a wrong protocol (an HTTP probe) does not keep a slot busy.
MAX_BAD_MESSAGES = 20

# A reply not taken by the peer within this time: it does not read, so it is dropped.
WRITE_TIMEOUT_S = 30.0

# A payload must come in at least this fast, after a grace period, or its connection is closed:
# a peer trickling a large payload would otherwise hold its share of --max-payload-inflight (and
# a connection) for as long as it liked. A live segment has to travel faster than real time
# anyway: 64 KiB/s is 0.5 Mbit/s, a 6-s 2 Mbit/s segment gets 30 + 23 s.
PAYLOAD_GRACE_S = 30.0
PAYLOAD_MIN_BYTES_PER_S = 64 * 1024

_READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerLimits:
    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_bad_messages: int = MAX_BAD_MESSAGES
    write_timeout_s: float = WRITE_TIMEOUT_S
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES


class UploadServer:
    def __init__(
        self,
        *,
        spool: SpoolThread,
        publisher: Publisher,
        allowed: AllowedDirs,
        buckets: frozenset[str],
        payloads: PayloadStore,
        guard: ReplayGuard | None = None,
        insecure: bool = False,
        master_name: str = "",
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        self._master_name = master_name  # no stream may take the master playlist's name
        # Per program (bucket, key_prefix): do its renditions' segments line up? Checked as
        # messages arrive, so the warning comes in real time.
        self._alignment: dict[tuple[str, str], AlignmentTracker] = {}
        self._spool = spool
        self._payloads = payloads
        self._guard = guard  # None: messages are not authenticated
        self._insecure = insecure  # a non-loopback listener without authentication, on purpose
        self._publisher = publisher
        self._allowed = allowed
        self._buckets = buckets
        self._limits = limits
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the address actually bound (the real port when 0 was asked)."""
        self._server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def stop(self) -> None:
        """Stop accepting and drop open connections: anything unanswered is re-sent by its client."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = _peer_name(writer)
        try:
            if len(self._connections) >= self._limits.max_connections:
                log.warning("peer %s refused: %d connections open", peer, len(self._connections))
                await self._reply(writer, Reject.try_again("too many connections"))
                return
            self._connections.add(task)
            if self._insecure:
                log.warning("peer %s connected to an unauthenticated non-loopback listener (--insecure-no-auth)", peer)
            await _Connection(self, peer, reader, writer).serve()
        except (ConnectionError, TimeoutError) as error:
            log.info("peer %s: connection closed (%s)", peer, type(error).__name__)
        except asyncio.CancelledError:
            pass  # shutting down
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _check(self, peer: str, message: IndexMessage) -> Reject | None:
        """Authentication and policy: a refusal, or None when the message may be queued."""
        label = stream_label(message.stream_id)
        segment = message.segment_name
        if self._guard is not None:
            refused = self._guard.refusal(message, time.time_ns() // 1_000_000)
            if refused is not None:
                log.warning("peer %s stream %s segment %s: not authenticated: %s", peer, label, segment, refused.reason)
                return Reject.try_again(refused.reason) if refused.transient else Reject.because(refused.reason)
        if self._buckets and message.bucket not in self._buckets:
            return self._refuse(peer, label, segment, f"bucket {message.bucket} is not allowed")
        if self._master_name and message.index == self._master_name:
            return self._refuse(peer, label, segment,
                                f"index {message.index} is the name of the master playlist (--master-name)")
        if message.size is not None:
            if message.last_segment == 0 or message.size == 0:
                return self._refuse(peer, label, segment, "an inline payload needs a segment (LAST_SEGMENT > 0, size > 0)")
            return None  # the bytes come with the message: no directory is read
        if message.last_segment == 0:
            return None
        try:
            self._allowed.resolve(message.output_directory)
        except DirectoryRefused as error:
            return self._refuse(peer, label, segment, str(error))
        return None

    async def _accept_payload(self, peer: str, message: IndexMessage, payload: PayloadFile) -> Reply:
        label = stream_label(message.stream_id)
        if message.payload_sha256 is not None and payload.sha256 != message.payload_sha256:
            payload.discard()
            return self._refuse(peer, label, message.segment_name, "payload does not match its sha256")
        try:
            name = await asyncio.get_running_loop().run_in_executor(None, payload.commit)
        except PayloadError as error:
            log.error("peer %s stream %s segment %s: payload not stored: %s", peer, label, message.segment_name, error)
            return Reject.try_again(str(error))
        reply, new = await self._queue(peer, message, name)
        if not new:
            self._payloads.remove(name)  # refused, or a re-send of a message already queued
        return reply

    async def _queue(self, peer: str, message: IndexMessage, payload: str | None = None) -> tuple[Reply, bool]:
        """The durable queue: the reply for ``message``, and whether it was newly queued."""
        label = stream_label(message.stream_id)
        segment = message.segment_name
        if message.last_segment == 0:
            log.info("peer %s stream %s: start-up message (segment 0) acknowledged", peer, label)
            return Ack(0), False
        try:
            queued = await self._spool.call(Spool.enqueue, self._spool.spool, message, payload)
        except SpoolError as error:
            log.error("peer %s stream %s segment %s: not queued: %s", peer, label, segment, error)
            return Reject.try_again(f"daemon cannot queue the message: {error}"), False
        if queued is Queued.NEW:
            self._check_alignment(message)
            log.info("peer %s stream %s segment %s queued%s%s", peer, label, segment,
                     f" with its {message.size}-byte payload" if payload else "", " (end)" if message.end else "")
            self._publisher.notify(message.stream_id)
        else:
            log.info("peer %s stream %s segment %s already queued (re-sent)", peer, label, segment)
        return Ack(message.last_segment), queued is Queued.NEW

    def _check_alignment(self, message: IndexMessage) -> None:
        tracker = self._alignment.setdefault((message.bucket, message.key_prefix), AlignmentTracker())
        for warning in tracker.observe(message.index, message.last_segment, message.start, message.frame_rate):
            program = f"{message.bucket}/{message.key_prefix}" if message.key_prefix else message.bucket
            log.warning("program %s segment %d: %s", program, message.last_segment, warning)

    @staticmethod
    def _refuse(peer: str, label: str, segment: str, reason: str) -> Reject:
        log.warning("peer %s stream %s segment %s refused: %s", peer, label, segment, reason)
        return Reject.because(reason)

    async def _reply(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        """Write one reply line. A peer that already left (the original client) is not an error."""
        if writer.is_closing():
            return
        try:
            writer.write(encode_reply(reply))
            await asyncio.wait_for(writer.drain(), self._limits.write_timeout_s)
        except (ConnectionResetError, BrokenPipeError):
            pass


class _Connection:
    """One peer: bytes from the socket into its decoder, each event handled, one reply per message."""

    def __init__(self, server: UploadServer, peer: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.limits = server._limits
        self.decoder = MessageDecoder(max_payload_bytes=self.limits.max_payload_bytes)
        self.bad = 0  # refused messages so far
        self.receiving: IndexMessage | None = None  # the message whose payload is arriving
        self.payload: PayloadFile | None = None  # where its bytes go
        self.payload_deadline = 0.0  # loop time by which the whole payload must be in

    async def serve(self) -> None:
        try:
            while await self._step():
                pass
        except PayloadError as error:  # a write failed (disk full): the rest of the payload is not read
            message = self.receiving
            assert message is not None
            self._drop_payload()
            log.error("peer %s stream %s segment %s: payload not stored: %s", self.peer,
                      stream_label(message.stream_id), message.segment_name, error)
            await self.server._reply(self.writer, Reject.try_again(str(error)))
        finally:
            if self.receiving is not None:
                self._cut_off("connection ended")

    async def _step(self) -> bool:
        """Handle the decoder's next event; False when the connection is to be closed."""
        try:
            event = self.decoder.next_event()
        except ProtocolError as error:
            return await self._protocol_error(error)
        if event is NEED_DATA:
            return await self._read()
        if event is CLOSED:
            return False
        if isinstance(event, PayloadData):
            if self.payload is not None:
                self.payload.write(event.data)  # pieces of at most one read: never the whole payload
            return True  # else: bytes of a refused message's payload; the framing stays intact
        if isinstance(event, PayloadEnd):
            message, payload = self.receiving, self.payload
            if message is None or payload is None:
                return True
            self.receiving = self.payload = None
            return await self._answer(await self.server._accept_payload(self.peer, message, payload))
        return await self._message(event)

    async def _read(self) -> bool:
        timeout_s = self.limits.idle_timeout_s
        if self.receiving is not None:
            timeout_s = min(timeout_s, self.payload_deadline - asyncio.get_running_loop().time())
        try:
            data = await asyncio.wait_for(self.reader.read(_READ_CHUNK), max(timeout_s, 0.0))
        except TimeoutError:
            if self.receiving is not None and self.payload is not None:
                self._cut_off(f"too slow: {self.payload.received} of {self.payload.expected_size} bytes "
                              f"in {self._payload_time_s(self.payload.expected_size):.0f} s")
            else:
                log.info("peer %s: closed after %.0f s idle", self.peer, self.limits.idle_timeout_s)
            return False
        if data:
            self.decoder.receive_data(data)
        else:
            self.decoder.receive_eof()
        return True

    async def _protocol_error(self, error: ProtocolError) -> bool:
        self.bad += 1
        if self.receiving is not None:
            self._cut_off(error.reason)
        else:
            log.warning("peer %s: refused message: %s", self.peer, error.reason)
        await self.server._reply(self.writer, Reject.because(error.reason))
        if not error.recoverable:
            return False
        if self.bad >= self.limits.max_bad_messages:
            log.warning("peer %s: closed after %d bad messages", self.peer, self.bad)
            return False
        return True

    async def _message(self, message: IndexMessage) -> bool:
        server = self.server
        reply = server._check(self.peer, message)
        if reply is None and message.size is not None:
            label = stream_label(message.stream_id)
            try:
                self.payload = server._payloads.receive(message.size)
            except PayloadsBusy as error:
                # The daemon's state, not the peer's fault: not counted as a bad message.
                log.warning("peer %s stream %s segment %s: payload put off: %s", self.peer, label,
                            message.segment_name, error)
                await server._reply(self.writer, Reject.try_again(str(error)))
                return True  # its bytes are dropped as a refused message's: the framing stays intact
            except PayloadError as error:
                log.error("peer %s stream %s segment %s: payload not stored: %s", self.peer, label,
                          message.segment_name, error)
                await server._reply(self.writer, Reject.try_again(str(error)))
                return False  # its bytes would follow; the connection cannot go on
            self.receiving = message
            self.payload_deadline = asyncio.get_running_loop().time() + self._payload_time_s(message.size)
            return True  # the reply waits for the payload
        if reply is None:
            reply, _ = await server._queue(self.peer, message)
        return await self._answer(reply)

    async def _answer(self, reply: Reply) -> bool:
        if isinstance(reply, Reject) and not reply.is_transient:  # "try again" is the daemon's state
            self.bad += 1
        await self.server._reply(self.writer, reply)
        if self.bad >= self.limits.max_bad_messages:
            log.warning("peer %s: closed after %d refused messages", self.peer, self.bad)
            return False
        return True

    def _payload_time_s(self, size: int) -> float:
        """How long a payload of ``size`` bytes may take (an --idle-timeout below the grace shortens it)."""
        return min(PAYLOAD_GRACE_S, self.limits.idle_timeout_s) + size / PAYLOAD_MIN_BYTES_PER_S

    def _cut_off(self, reason: str) -> None:
        message = self.receiving
        assert message is not None
        self._drop_payload()
        log.warning("peer %s stream %s segment %s: payload cut off, nothing kept: %s",
                    self.peer, stream_label(message.stream_id), message.segment_name, reason)

    def _drop_payload(self) -> None:
        if self.payload is not None:
            self.payload.discard()
        self.receiving = self.payload = None


def _peer_name(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)
