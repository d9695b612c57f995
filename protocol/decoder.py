"""Incremental, sans-IO decoding of what a segmenter sends on one connection.

Feed bytes as they arrive with ``receive_data`` (and ``receive_eof`` at the end), then call
``next_event`` until it returns ``NEED_DATA`` or ``CLOSED``. Events are ``IndexMessage`` and, for a
message with ``size=N``, the N bytes that follow it as ``PayloadData`` pieces and a ``PayloadEnd``;
the request line ``HELLO`` (a signing sender's first, auth.py) is a ``Hello``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import ProtocolError
from .limits import DEFAULT_MAX_PAYLOAD_BYTES, MAX_LINE_BYTES
from .message import IndexMessage, parse_message


class Signal(enum.Enum):
    NEED_DATA = "need data"  # no complete event yet: feed more bytes
    CLOSED = "closed"  # the peer finished cleanly; nothing more will come


NEED_DATA = Signal.NEED_DATA
CLOSED = Signal.CLOSED


@dataclass(frozen=True, slots=True)
class PayloadData:
    """A piece of the segment bytes that follow a message with ``size``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PayloadEnd:
    """All ``size`` bytes of the payload have arrived."""

    size: int


@dataclass(frozen=True, slots=True)
class Hello:
    """The request line ``HELLO``: the sender asks for the connection's challenge."""


HELLO_REQUEST = b"HELLO"

Event = IndexMessage | PayloadData | PayloadEnd | Hello


class MessageDecoder:
    """Turns a connection's bytes into events. Raises ProtocolError for a bad message.

    After a recoverable error the bad line is gone and ``next_event`` goes on with the next one.
    A line longer than ``max_line_bytes`` is refused as soon as that many bytes are buffered; the
    rest of it is dropped as it arrives, never buffered whole.
    """

    def __init__(
        self,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_payload_bytes = max_payload_bytes
        self._buffer = bytearray()
        self._eof = False
        self._discarding = False  # inside an over-long line: drop bytes up to its newline
        self._payload_size = 0
        self._payload_left: int | None = None  # None: reading lines, not a payload

    def receive_data(self, data: bytes) -> None:
        if self._eof:
            raise RuntimeError("receive_data after receive_eof")
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                return
            self._discarding = False
            data = data[newline + 1 :]
        self._buffer += data

    def receive_eof(self) -> None:
        self._eof = True

    def next_event(self) -> Event | Signal:
        if self._payload_left is not None:
            return self._next_payload_event()
        while True:
            line = self._next_line()
            if isinstance(line, Signal):
                return line
            if line.strip(b" \t\r"):
                break  # blank lines are keep-alives
        if line.strip(b" \t\r") == HELLO_REQUEST:
            return Hello()
        message = parse_message(line)
        if message.size is not None:
            if message.size > self.max_payload_bytes:
                raise ProtocolError(
                    f"payload of {message.size} bytes is over the limit of {self.max_payload_bytes}",
                    recoverable=False,
                )
            self._payload_size = self._payload_left = message.size
        return message

    def _next_line(self) -> bytes | Signal:
        newline = self._buffer.find(b"\n", 0, self.max_line_bytes + 1)
        if newline < 0:
            if len(self._buffer) > self.max_line_bytes:
                # Drop the long line only: what follows its newline is the next message.
                end = self._buffer.find(b"\n")
                if end < 0:
                    self._buffer.clear()
                    self._discarding = not self._eof
                else:
                    del self._buffer[: end + 1]
                raise ProtocolError(f"line longer than {self.max_line_bytes} bytes")
            if not self._eof:
                return NEED_DATA
            if not self._buffer:
                return CLOSED
            # The original client: one message, no newline, then EOF.
            line = bytes(self._buffer)
            self._buffer.clear()
            return line
        line = bytes(self._buffer[:newline])
        del self._buffer[: newline + 1]
        return line

    def _next_payload_event(self) -> PayloadData | PayloadEnd | Signal:
        assert self._payload_left is not None
        if self._payload_left == 0:
            self._payload_left = None
            return PayloadEnd(self._payload_size)
        if not self._buffer:
            if self._eof:
                received = self._payload_size - self._payload_left
                raise ProtocolError(
                    f"connection closed after {received} of {self._payload_size} payload bytes",
                    recoverable=False,
                )
            return NEED_DATA
        piece = bytes(self._buffer[: self._payload_left])
        del self._buffer[: len(piece)]
        self._payload_left -= len(piece)
        return PayloadData(piece)
