"""The TCP side: bytes in, one reply line per message out; parsing stays in protocol/.

With a TLS context (--tls-cert), every connection starts with a TLS handshake; a peer that does
not complete it, a plaintext client above all, is closed with one log line and no reply.

A connection handler only moves bytes between the socket and a ``MessageDecoder``, hands each
message to the ``Intake`` (intake.py: the daemon's policy and queue) and writes the reply it
gets back. It holds the connection's ``ChallengeSession`` (protocol/auth.py): a ``HELLO`` gets a
fresh random nonce and the daemon's clock, and signed messages are checked against them. An original client sends one message and closes without reading: the reply is
written anyway and a broken pipe is ignored.

A message with ``size=N`` is followed by N bytes of segment: when the intake admits it, they are
written piece by piece to the payload file it gives, and the reply waits until the intake has
committed that file and queued the message. A payload cut off mid-way leaves nothing behind. A
refused message's payload bytes are read and dropped, so the connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
from dataclasses import dataclass

from common.tls import TlsFailure, detail, tls_failure
from protocol import (
    CLOSED,
    DEFAULT_MAX_PAYLOAD_BYTES,
    IDLE_TIMEOUT_S,
    NEED_DATA,
    NONCE_BYTES,
    AuthRefused,
    Hello,
    IndexMessage,
    MessageDecoder,
    PayloadData,
    PayloadEnd,
    ProtocolError,
    Reject,
    Reply,
    encode_reply,
)

from .intake import Intake
from .metrics import DaemonMetrics, Refusal
from .payloads import PayloadError, PayloadFile

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

# A TLS handshake is a few round trips; a peer that has not finished it by then is not trying.
TLS_HANDSHAKE_TIMEOUT_S = 10.0

_READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one connection may cost: seconds idle or writing, connections, bad messages, payload bytes."""

    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_bad_messages: int = MAX_BAD_MESSAGES
    write_timeout_s: float = WRITE_TIMEOUT_S
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES


class UploadServer:
    """The listener: one ``_Connection`` per peer, each message handed to ``intake``.

    ``insecure``: a non-loopback listener without authentication, chosen on purpose (each
    connection is logged with a warning). ``tls``: each connection starts with a TLS handshake
    with this context; a peer that fails it (one without TLS, a wrong client certificate) is
    closed with one log line.
    """

    def __init__(self, intake: Intake, *, insecure: bool = False, tls: ssl.SSLContext | None = None,
                 limits: ServerLimits = ServerLimits(), metrics: DaemonMetrics | None = None) -> None:
        self._intake = intake
        self._metrics = metrics or DaemonMetrics()
        self._insecure = insecure
        self._tls = tls
        self._limits = limits
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def connection_count(self) -> int:
        """Peers connected now."""
        return len(self._connections)

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
        # Counted from the first byte, TLS handshake included, so half-open peers hold slots too.
        open_before = len(self._connections)
        self._connections.add(task)
        try:
            # First, before anything awaits: start_tls stops the plain reading before a byte of the
            # peer's ClientHello can land in the reader's buffer.
            if self._tls is not None and not await self._start_tls(writer):
                return
            await self._serve(reader, writer, open_before)
        finally:
            self._connections.discard(task)

    async def _start_tls(self, writer: asyncio.StreamWriter) -> bool:
        """The TLS handshake; False (logged, connection closed) when the peer fails it."""
        try:
            await writer.start_tls(
                self._tls, ssl_handshake_timeout=min(TLS_HANDSHAKE_TIMEOUT_S, self._limits.idle_timeout_s))
            return True
        except (OSError, TimeoutError) as error:  # ssl.SSLError is an OSError
            log.warning("peer %s: closed: TLS handshake failed: %s", _peer_name(writer), handshake_failure(error))
            self._metrics.refused(Refusal.AUTHENTICATION)
        except asyncio.CancelledError:
            pass  # shutting down
        writer.close()  # not waited for: wait_closed would raise the handshake's error again
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, open_before: int) -> None:
        connection = _Connection(self._intake, self._limits, _peer_name(writer), reader, writer, self._metrics)
        peer = connection.peer
        try:
            if open_before >= self._limits.max_connections:
                log.warning("peer %s refused: %d connections open", peer, open_before)
                self._metrics.refused(Refusal.DAEMON)
                await connection.reply(Reject.try_again("too many connections"))
                return
            if self._insecure:
                log.warning("peer %s connected to an unauthenticated non-loopback listener (--insecure-no-auth)", peer)
            await connection.serve()
        except (ConnectionError, TimeoutError) as error:
            log.info("peer %s: connection closed (%s)", peer, type(error).__name__)
        except asyncio.CancelledError:
            pass  # shutting down
        finally:
            writer.close()
            # The stop cancels every connection still counted, this one too while it closes.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()


class _Connection:
    """One peer: bytes from the socket into its decoder, each message to the intake, its reply out."""

    def __init__(self, intake: Intake, limits: ServerLimits, peer: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, metrics: DaemonMetrics) -> None:
        self.intake = intake
        self.metrics = metrics
        self.limits = limits
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.decoder = MessageDecoder(max_payload_bytes=limits.max_payload_bytes)
        self.session = intake.new_session()
        self.bad = 0  # refused messages so far
        self.receiving: IndexMessage | None = None  # the message whose payload is arriving
        self.payload: PayloadFile | None = None  # where its bytes go
        self.payload_deadline = 0.0  # loop time by which the whole payload must be in

    async def serve(self) -> None:
        """Handle the peer's events until it leaves, idles out or must be closed."""
        try:
            while await self._step():
                pass
        finally:
            if self.receiving is not None:
                self._cut_off("connection ended")

    async def reply(self, reply: Reply) -> None:
        """Write one reply line. A peer that already left (the original client) is not an error."""
        if self.writer.is_closing():
            return
        try:
            self.writer.write(encode_reply(reply))
            await asyncio.wait_for(self.writer.drain(), self.limits.write_timeout_s)
        except (ConnectionResetError, BrokenPipeError):
            pass

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
        if isinstance(event, Hello):
            return await self._hello()
        if isinstance(event, PayloadData):
            if self.payload is not None:
                try:
                    self.payload.write(event.data)  # pieces of at most one read: never the whole payload
                except PayloadError as error:  # a write failed (disk full)
                    message, payload = self._stop_receiving()
                    return await self._payload_lost(message, error, payload)
            return True  # else: bytes of a refused message's payload; the framing stays intact
        if isinstance(event, PayloadEnd):
            if self.payload is None:
                return True  # the end of a refused message's payload
            message, payload = self._stop_receiving()
            return await self._answer(await self.intake.accept_payload(self.peer, message, payload))
        return await self._message(event)

    async def _read(self) -> bool:
        timeout_s = self.limits.idle_timeout_s
        if self.receiving is not None:
            timeout_s = min(timeout_s, self.payload_deadline - asyncio.get_running_loop().time())
        try:
            data = await asyncio.wait_for(self.reader.read(_READ_CHUNK), max(timeout_s, 0.0))
        except TimeoutError:
            if self.payload is not None:
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
        self.metrics.refused(Refusal.BAD_MESSAGE)
        if self.receiving is not None:
            self._cut_off(error.reason)
        else:
            log.warning("peer %s: refused message: %s", self.peer, error.reason)
        await self.reply(Reject.because(error.reason))
        if not error.recoverable:
            return False
        if self.bad >= self.limits.max_bad_messages:
            log.warning("peer %s: closed after %d bad messages", self.peer, self.bad)
            return False
        return True

    async def _hello(self) -> bool:
        """Answer HELLO with the connection's challenge: a nonce never drawn before, and the clock."""
        challenge = self.session.hello(secrets.token_hex(NONCE_BYTES), time.time_ns() // 1_000_000)
        if isinstance(challenge, AuthRefused):
            log.warning("peer %s: refused HELLO: %s", self.peer, challenge.reason)
            self.metrics.refused(Refusal.AUTHENTICATION)
            return await self._answer(Reject.because(challenge.reason))
        log.debug("peer %s: HELLO answered", self.peer)
        await self.reply(challenge)
        return True

    async def _message(self, message: IndexMessage) -> bool:
        try:
            admitted = await self.intake.admit(self.peer, message, self.session)
        except PayloadError as error:  # no file to take the payload
            return await self._payload_lost(message, error)
        if isinstance(admitted, PayloadFile):
            self.receiving, self.payload = message, admitted
            self.payload_deadline = asyncio.get_running_loop().time() + self._payload_time_s(admitted.expected_size)
            return True  # the reply waits for the payload
        return await self._answer(admitted)

    async def _answer(self, reply: Reply) -> bool:
        if isinstance(reply, Reject) and not reply.is_transient:  # "try again" is the daemon's state
            self.bad += 1
        await self.reply(reply)
        if self.bad >= self.limits.max_bad_messages:
            log.warning("peer %s: closed after %d refused messages", self.peer, self.bad)
            return False
        return True

    async def _payload_lost(self, message: IndexMessage, error: PayloadError,
                            payload: PayloadFile | None = None) -> bool:
        """The disk failed ``message``'s payload: answer, then close; the rest of it is not read."""
        await self.reply(self.intake.payload_lost(self.peer, message, error, payload))
        return False

    def _payload_time_s(self, size: int) -> float:
        """How long a payload of ``size`` bytes may take (an --idle-timeout below the grace shortens it)."""
        return min(PAYLOAD_GRACE_S, self.limits.idle_timeout_s) + size / PAYLOAD_MIN_BYTES_PER_S

    def _cut_off(self, reason: str) -> None:
        message, payload = self._stop_receiving()
        self.intake.cut_off(self.peer, message, payload, reason)

    def _stop_receiving(self) -> tuple[IndexMessage, PayloadFile]:
        """The message whose payload was arriving and its file, no longer this connection's."""
        message, payload = self.receiving, self.payload
        assert message is not None and payload is not None
        self.receiving = self.payload = None
        return message, payload


def handshake_failure(error: BaseException) -> str:
    """Why a peer failed the daemon's TLS handshake, and what to do, for the one WARNING line
    (common.tls.tls_failure): its client certificate refused (mutual TLS, --tls-client-ca) or not
    sent, the daemon's own certificate refused by the peer, no TLS version in common, or no TLS
    spoken at all."""
    said = detail(error) or type(error).__name__
    client = "its client certificate"
    fixes = {
        TlsFailure.OUT_OF_DATES: f"{client}, or a CA certificate of its chain, is out of its dates ({said}): renew it"
                                 " (hls-segment --tls-cert), or check the clocks",
        TlsFailure.WRONG_PURPOSE: f"{client} is not one for a client (its extendedKeyUsage has no clientAuth)",
        TlsFailure.UNTRUSTED: f"{client} is refused: {said}; sign it with a CA of --tls-client-ca (hls-segment"
                              " --tls-cert, with its intermediate certificates)",
        TlsFailure.REFUSED: f"{client} is refused: {said}",
        TlsFailure.OURS_REFUSED: f"it refused this daemon's certificate ({said}): check its --tls-ca and"
                                 " --tls-server-name against --tls-cert (chain, names, dates)",
        TlsFailure.PROTOCOL_VERSION: f"it shares no TLS version with this daemon, which speaks 1.2 or later ({said})",
    }
    failure = tls_failure(error)
    if failure in fixes:
        return fixes[failure]
    if said == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "it sent no client certificate, which --tls-client-ca asks for (hls-segment --tls-cert, --tls-key)"
    return f"{said}; this listener speaks TLS only (hls-segment --tls)"


def _peer_name(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)
