"""The segmenter's side of the TCP line protocol: send one index message, read the daemon's reply.

``DaemonClient.send`` makes one attempt. With ``--wire ext`` it keeps one connection, sends the
message, then the segment's bytes as an inline payload when asked (``sendfile``), and reads the
reply. With a secret, each connection starts with ``HELLO``: every message on it is signed over
the daemon's nonce with the next ``n`` (protocol/auth.py), so a re-send gets a new tag; a daemon
clock far from ours is logged once, and never stops a message. With
``--wire v1`` it sends the ten original fields on a connection of their own and reads nothing.
With ``--tls`` the connection is TLS (ext only) and the daemon's certificate is verified.
With ``--wire ext`` every message names its writer (``writer=``, this OUTPUT_DIR's id); a refusal
of that writer (another one owns the stream, or took it over) is ``SendResult.NOT_WRITER``.
The caller retries a failed attempt after the delays of ``retry_delays``; the daemon is
idempotent, so a message re-sent after a lost reply does no harm.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from common.tls import TlsFailure, detail, tls_failure
from protocol import (
    V1_FIELD_NAMES,
    CLOCK_WARNING_MS,
    HELLO_REQUEST,
    Ack,
    Challenge,
    IndexMessage,
    ProtocolError,
    Reply,
    ReplyDecoder,
    encode_message,
    sign,
)

log = logging.getLogger(__name__)

# Connecting to a daemon on the same host or LAN takes milliseconds; longer means it is not there.
CONNECT_TIMEOUT_S = 3.0

# The daemon replies once the message is on its disk (an fsync); a reply this late means trouble.
REPLY_TIMEOUT_S = 15.0

# With another daemon to move to, a daemon whose host hangs is left sooner: within the 10 s a
# stream may wait for its next segment to be published (docs/segmenter.md, "Several daemons").
FAILOVER_REPLY_TIMEOUT_S = 5.0

# How often a wait for a reply wakes up to check whether the drain time is over.
WAKE_UP_S = 0.25

# Retry delays while the daemon is down: start fast (a daemon restart takes about a second),
# double, and never wait so long that a recovered daemon learns about a segment late.
FIRST_RETRY_S = 0.2
MAX_RETRY_S = 5.0

# An inline payload is sent with this timeout per socket operation: a few MB over a slow link.
PAYLOAD_SEND_TIMEOUT_S = 60.0

# A socket operation gets at least this long, however close the deadline.
MIN_SOCKET_TIMEOUT_S = 0.05

_HASH_CHUNK = 1024 * 1024


class SendResult(enum.Enum):
    """What became of one attempt to send a message."""

    DELIVERED = "delivered"  # acknowledged (ext), or its bytes written (v1)
    REFUSED = "refused"  # a final ERR, or its segment file unreadable: never sent again
    RETRY = "retry"  # no connection, no reply in time, or ERR try again: send it again later
    NOT_WRITER = "not writer"  # ERR not the writer: another writer owns the stream; stop sending


def retry_delays() -> Iterator[float]:
    """Seconds to wait before each retry while the daemon is down: 0.2, 0.4, 0.8, ... up to 5."""
    delay = FIRST_RETRY_S
    while True:
        yield delay
        delay = min(delay * 2, MAX_RETRY_S)


def daemon_order(addresses: Sequence[tuple[str, int]], bucket: str, key_prefix: str) -> list[tuple[str, int]]:
    """The order in which a segmenter of program ``bucket``/``key_prefix`` tries ``addresses``
    (host, port): highest first by SHA-256 of the address and the program (rendezvous hashing,
    Thaler and Ravishankar 1998). Every rendition of a program, on any host, agrees on it, so a
    program's playlists and master are written by one daemon; programs spread evenly, and a
    daemon added or removed moves only the programs it comes first for."""
    def weight(address: tuple[str, int]) -> bytes:
        return hashlib.sha256(f"{address[0]}:{address[1]}\n{bucket}/{key_prefix}".encode()).digest()

    return sorted(addresses, key=weight, reverse=True)


def v1_only(message: IndexMessage) -> IndexMessage:
    """The message with the ten original fields only."""
    return IndexMessage(**{name: getattr(message, name) for name in V1_FIELD_NAMES})


class Deadline:
    """When sending must stop: never while the run goes on; at the end of the drain time once the
    run closes (``set``); at once on ``abort``. Set by the closing thread, read by the sending one."""

    def __init__(self) -> None:
        self._at: float | None = None  # time.monotonic() seconds
        self._aborted = False

    def set(self, timeout_s: float) -> None:
        self._at = time.monotonic() + timeout_s

    def abort(self) -> None:
        self._aborted = True

    def expired(self) -> bool:
        return self._aborted or (self._at is not None and time.monotonic() >= self._at)

    def bound(self, limit_s: float) -> float:
        """Seconds to wait for something: ``limit_s``, or what is left before the deadline (>= 0)."""
        if self._aborted:
            return 0.0
        if self._at is None:
            return limit_s
        return max(0.0, min(limit_s, self._at - time.monotonic()))


class DaemonClient:
    """The connection to hls-uploadd at ``address`` (host, port), used by one thread.

    ``backlog`` counts the messages waiting, for the log line when the daemon goes away.
    ``secret`` signs as the peer ``key_id`` (None: the daemon's ``default``). ``tls``:
    the connection is TLS with this context, the daemon's certificate checked for
    ``server_name`` (default: the address's host). ``writer``: sent as ``writer=`` with every
    message (``--wire ext``). ``reply_timeout_s``: how long a reply may take (seconds).
    """

    def __init__(
        self,
        address: tuple[str, int],
        *,
        v1: bool,
        secret: bytes | None,
        send_segments: bool,
        key_id: str | None = None,
        deadline: Deadline,
        backlog: Callable[[], int],
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        writer: str | None = None,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> None:
        self.address = address
        self._reply_timeout_s = reply_timeout_s
        self.v1 = v1
        self._writer = writer
        # The daemon's acknowledgement of the last message delivered (``Ack.stream_last`` for a start-up).
        self.last_ack: Ack | None = None
        self._secret = secret
        self._key_id = key_id
        self._nonce = ""  # the connection's challenge, with a secret
        self._counter = 0  # n of the last message signed on the connection
        self._clock_warned = False
        self._tls = tls
        self._server_name = server_name or address[0]
        self._send_segments = send_segments
        self._deadline = deadline
        self._backlog = backlog
        self._sock: socket.socket | None = None
        self._replies = ReplyDecoder()
        self._down_since: float | None = None

    @property
    def peer(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def send(self, message: IndexMessage) -> tuple[SendResult, str]:
        """Send ``message`` once: the result, and for REFUSED the reason (else "").

        The first failure and the recovery are logged; every refusal is. Raises nothing: a lost
        connection or a bad reply is a RETRY.
        """
        fresh = self._sock is None
        try:
            result, reason = self._send_v1(message) if self.v1 else self._send_ext(message)
        except (OSError, ProtocolError) as error:
            self.close()
            if self._down_since is None:
                self._down_since = time.monotonic()
                described = _describe(error)
                if (fresh and isinstance(error, ConnectionError)
                        and not isinstance(error, ConnectionRefusedError)):
                    if self._tls is None:
                        # A daemon with --tls-cert drops a plaintext peer at its first bytes.
                        described += " (a daemon with --tls-cert closes plaintext peers: give --tls)"
                    else:
                        # With TLS 1.3 a client certificate is checked after the client's handshake:
                        # the daemon refusing it closes the connection at the first read.
                        described += (" (a daemon with --tls-client-ca closes a peer whose --tls-cert it refuses"
                                      " or misses: its log says why)")
                log.warning(
                    "daemon at %s: %s; keeping %d message(s) and retrying (segment %d of %s waits)",
                    self.peer, described, self._backlog(), message.last_segment, message.index,
                )
            return SendResult.RETRY, ""
        if self._down_since is not None and result is not SendResult.RETRY:
            log.info("daemon at %s answers again after %.1f s", self.peer, time.monotonic() - self._down_since)
            self._down_since = None
        return result, reason

    def close(self) -> None:
        """Drop the connection, if any; the next ``send`` opens a new one."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _timeout(self, limit_s: float) -> float:
        return max(MIN_SOCKET_TIMEOUT_S, self._deadline.bound(limit_s))

    def _send_v1(self, message: IndexMessage) -> tuple[SendResult, str]:
        data = encode_message(v1_only(message))
        with socket.create_connection(self.address, timeout=self._timeout(CONNECT_TIMEOUT_S)) as sock:
            sock.sendall(data)
        log.debug("sent segment %d of %s to %s (v1)", message.last_segment, message.index, self.peer)
        return SendResult.DELIVERED, ""

    def _send_ext(self, message: IndexMessage) -> tuple[SendResult, str]:
        payload = None
        if self._send_segments and message.last_segment > 0:
            try:
                payload = open(Path(message.output_directory) / message.segment_name, "rb")
            except OSError as error:
                reason = f"segment file cannot be read for sending: {error.strerror}"
                log.error("segment %d of %s not sent: %s", message.last_segment, message.index, reason)
                return SendResult.REFUSED, reason
        try:
            return self._exchange(message, payload)
        finally:
            if payload is not None:
                payload.close()

    def _exchange(self, message: IndexMessage, payload: BinaryIO | None) -> tuple[SendResult, str]:
        # A writer keeps each message until the daemon says it is published (confirm=1).
        wire = message if self._writer is None else dataclasses.replace(message, writer=self._writer, confirm=True)
        if payload is not None:
            size, digest = _measure(payload)
            wire = dataclasses.replace(wire, size=size, payload_sha256=digest)
        if self._sock is None:
            self._sock = self._connect()
            self._replies = ReplyDecoder()
            if self._secret is not None:
                self._hello(self._sock)
        sock = self._sock
        if self._secret is not None:
            self._counter += 1
            wire = sign(wire, self._secret, self._nonce, self._counter, self._key_id)
        sock.settimeout(self._timeout(self._reply_timeout_s))
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
                self.close()
                return self._handle_reply(message, reply)
            if sent != wire.size:
                raise ConnectionError(f"sent {sent} of {wire.size} payload bytes (the segment file changed?)")
        return self._handle_reply(message, self._next_reply(sock))

    def _next_reply(self, sock: socket.socket) -> Reply:
        """The daemon's next reply line, waited for in short slices so that the end of the drain
        time is noticed. Raises TimeoutError, ConnectionResetError, ProtocolError."""
        sock.settimeout(WAKE_UP_S)
        waited_s = 0.0
        while (reply := self._replies.next_reply()) is None:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                waited_s += WAKE_UP_S
                if self._deadline.expired() or waited_s >= self._reply_timeout_s:
                    raise TimeoutError("no reply in time") from None
                continue
            if not data:
                raise ConnectionResetError("daemon closed the connection")
            self._replies.receive_data(data)
        return reply

    def _hello(self, sock: socket.socket) -> None:
        """Ask the new connection's challenge; warn once when the daemon's clock is far from ours.
        Raises ProtocolError when the daemon answers otherwise (the messages wait and are retried)."""
        sock.settimeout(self._timeout(self._reply_timeout_s))
        sock.sendall(HELLO_REQUEST + b"\n")
        reply = self._next_reply(sock)
        if not isinstance(reply, Challenge):
            detail = reply.reason if not isinstance(reply, Ack) else f"OK {reply.last_segment}"
            raise ProtocolError(f"daemon did not answer HELLO with a challenge ({detail}); signed messages need"
                                " an hls-uploadd that speaks the HELLO exchange")
        self._nonce, self._counter = reply.nonce, 0
        skew_ms = reply.time_ms - time.time_ns() // 1_000_000
        if abs(skew_ms) > CLOCK_WARNING_MS and not self._clock_warned:
            self._clock_warned = True
            log.warning("daemon at %s: its clock is %+.1f s from this host's; nothing is refused for it (messages"
                        " are signed over its challenge), but check NTP on both hosts", self.peer, skew_ms / 1000)

    def _connect(self) -> socket.socket:
        """A new connection to the daemon; with TLS, handshake done and certificate checked."""
        sock = socket.create_connection(self.address, timeout=self._timeout(CONNECT_TIMEOUT_S))
        if self._tls is None:
            return sock
        try:
            return self._tls.wrap_socket(sock, server_hostname=self._server_name)
        except BaseException:
            sock.close()
            raise

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

    def _handle_reply(self, message: IndexMessage, reply: Reply) -> tuple[SendResult, str]:
        if isinstance(reply, Challenge):
            raise ProtocolError("daemon answered a message with a HELLO challenge")
        if isinstance(reply, Ack):
            if reply.last_segment != message.last_segment:
                raise ProtocolError(f"daemon acknowledged segment {reply.last_segment}, not {message.last_segment}")
            log.debug("daemon at %s has segment %d of %s", self.peer, message.last_segment, message.index)
            self.last_ack = reply
            return SendResult.DELIVERED, ""
        # An ERR is final (a bad field, a path the daemon does not allow) unless the daemon says
        # "try again: ..." (spool full, too many connections): then it is retried like a lost connection.
        if reply.is_transient:
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning("daemon at %s cannot take segment %d just now: %s; retrying",
                            self.peer, message.last_segment, reply.reason)
            return SendResult.RETRY, ""
        log.error("daemon at %s refused segment %d of %s: %s", self.peer, message.last_segment, message.index, reply.reason)
        return (SendResult.NOT_WRITER if reply.is_not_writer else SendResult.REFUSED), reply.reason


def _measure(file: BinaryIO) -> tuple[int, str]:
    """Size and SHA-256 of a segment file, read once before it is sent."""
    digest = hashlib.sha256()
    size = 0
    file.seek(0)
    while chunk := file.read(_HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


# The segmenter's fix for each kind of TLS failure with a daemon (common.tls.tls_failure).
_TLS_FIXES = {
    TlsFailure.OTHER_NAME: "check --tls-server-name against the names the certificate carries",
    TlsFailure.OUT_OF_DATES: "it, or a CA certificate of its chain, is out of its dates: renew it, or check the clocks",
    TlsFailure.WRONG_PURPOSE: "the daemon's --tls-cert is no server certificate: its extendedKeyUsage needs serverAuth",
    TlsFailure.UNTRUSTED: "check --tls-ca, and that the daemon's --tls-cert holds its intermediate certificates",
    TlsFailure.REFUSED: "check --tls-ca and the daemon's --tls-cert",
    TlsFailure.OURS_REFUSED: "the daemon refused --tls-cert: signed by a CA of its --tls-client-ca, in its dates?",
    TlsFailure.CERTIFICATE_REQUIRED: "the daemon asks for a client certificate: --tls-cert, --tls-key",
    TlsFailure.PROTOCOL_VERSION: "the daemon and this segmenter share no TLS version",
}


def _describe(error: Exception) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLError):
        fix = _TLS_FIXES.get(tls_failure(error), "does the daemon speak TLS, hls-uploadd --tls-cert?")
        if isinstance(error, ssl.SSLCertVerificationError):
            return f"its TLS certificate is refused: {error.verify_message} ({fix})"
        return f"TLS failed: {detail(error)} ({fix})"
    if isinstance(error, TimeoutError | socket.timeout):
        return "no answer in time"
    return str(error) or type(error).__name__
