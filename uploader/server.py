"""The TCP side: bytes in, one reply line per message out; parsing stays in protocol/.

A connection handler only moves bytes between the socket and a ``MessageDecoder``, applies the
daemon's policy (allowed buckets and directories), queues the message durably and replies. An
original client sends one message and closes without reading: the reply is written anyway and a
broken pipe is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from protocol import (
    CLOSED,
    NEED_DATA,
    Ack,
    IndexMessage,
    MessageDecoder,
    PayloadData,
    PayloadEnd,
    ProtocolError,
    Reject,
    Reply,
    encode_reply,
)

from .files import AllowedDirs, DirectoryRefused
from .publisher import Publisher, stream_label
from .spool import Queued, Spool, SpoolError, SpoolThread

log = logging.getLogger("hls_uploadd.server")

# A segmenter sends a message per segment (at most every few tens of seconds) and reconnects
# when cut off; five minutes without a byte means a dead or stuck peer holding a slot.
IDLE_TIMEOUT_S = 300.0

# Connections held at once. Each costs a socket and a small buffer; real deployments have one
# per segmenter. Past this, new peers get one ERR line and are closed.
MAX_CONNECTIONS = 512

# Bad messages tolerated on one connection before it is closed: a confused client gets its
# reasons, a fuzzer or a wrong protocol (an HTTP probe) does not keep a slot busy.
MAX_BAD_MESSAGES = 20

# A reply not taken by the peer within this time: it does not read, so it is dropped.
WRITE_TIMEOUT_S = 30.0

_READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerLimits:
    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_bad_messages: int = MAX_BAD_MESSAGES
    write_timeout_s: float = WRITE_TIMEOUT_S


class UploadServer:
    def __init__(
        self,
        *,
        spool: SpoolThread,
        publisher: Publisher,
        allowed: AllowedDirs,
        buckets: frozenset[str],
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        self._spool = spool
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
            await self._serve(peer, reader, writer)
        except (ConnectionError, TimeoutError) as error:
            log.info("peer %s: connection closed (%s)", peer, type(error).__name__)
        except asyncio.CancelledError:
            pass  # shutting down
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, peer: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MessageDecoder()
        bad = 0
        while True:
            try:
                event = decoder.next_event()
            except ProtocolError as error:
                bad += 1
                log.warning("peer %s: refused message: %s", peer, error.reason)
                await self._reply(writer, Reject.because(error.reason))
                if not error.recoverable:
                    return
                if bad >= self._limits.max_bad_messages:
                    log.warning("peer %s: closed after %d bad messages", peer, bad)
                    return
                continue
            if event is NEED_DATA:
                try:
                    data = await asyncio.wait_for(reader.read(_READ_CHUNK), self._limits.idle_timeout_s)
                except TimeoutError:
                    log.info("peer %s: closed after %.0f s idle", peer, self._limits.idle_timeout_s)
                    return
                if data:
                    decoder.receive_data(data)
                else:
                    decoder.receive_eof()
                continue
            if event is CLOSED:
                return
            if isinstance(event, (PayloadData, PayloadEnd)):
                continue  # bytes of a payload whose message was refused: the framing stays intact
            reply = await self._accept(peer, event)
            if isinstance(reply, Reject):
                bad += 1
            await self._reply(writer, reply)
            if bad >= self._limits.max_bad_messages:
                log.warning("peer %s: closed after %d refused messages", peer, bad)
                return

    async def _accept(self, peer: str, message: IndexMessage) -> Reply:
        """Policy, then the durable queue. Returns the reply for ``message``."""
        label = stream_label(message.stream_id)
        segment = message.segment_name
        if message.size is not None:
            return self._refuse(peer, label, segment, "inline payloads are not enabled")
        if self._buckets and message.bucket not in self._buckets:
            return self._refuse(peer, label, segment, f"bucket {message.bucket} is not allowed")
        if message.last_segment == 0:
            log.info("peer %s stream %s: start-up message (segment 0) acknowledged", peer, label)
            return Ack(0)
        try:
            self._allowed.check(message.output_directory)
        except DirectoryRefused as error:
            return self._refuse(peer, label, segment, str(error))
        try:
            queued = await self._spool.call(Spool.enqueue, self._spool.spool, message)
        except SpoolError as error:
            log.error("peer %s stream %s segment %s: not queued: %s", peer, label, segment, error)
            return Reject.try_again(f"daemon cannot queue the message: {error}")
        if queued is Queued.NEW:
            log.info("peer %s stream %s segment %s queued%s", peer, label, segment, " (end)" if message.end else "")
            self._publisher.notify(message.stream_id)
        else:
            log.info("peer %s stream %s segment %s already queued (re-sent)", peer, label, segment)
        return Ack(message.last_segment)

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


def _peer_name(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)
