"""Reply lines: ``OK <last_segment>`` once a message is durably queued, ``ERR <reason>`` otherwise,
and ``HELLO nonce=<32 hex> time=<Unix ms>``, the challenge that answers a HELLO request (auth.py).

The reply to a start-up message (LAST_SEGMENT 0) that names its writer also says where the
stream is: ``OK 0 last=<the stream's highest queued segment number>``. The reply to a message with
``confirm=1`` says how far the stream is published: ``OK 7 published=5`` (docs/protocol.md,
"Confirmed publication"). Further ``key=value`` fields after the number are ignored, so that a
newer daemon's reply reads in an older client that asked for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ProtocolError
from .limits import MAX_LINE_BYTES, MAX_REASON_CHARS

_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_NONCE = re.compile(r"[0-9a-f]{32}")
_DIGITS = re.compile(r"[0-9]{1,19}")
_CHALLENGE = re.compile(r"HELLO nonce=([0-9a-f]{32}) time=([0-9]{1,15})")

# An ERR whose reason starts so is about the daemon's state, not the message (spool full, too
# many connections): the client keeps the message and sends it again later. Any other ERR is final.
TRY_AGAIN_PREFIX = "try again: "

# An ERR whose reason starts so refuses the sender as the stream's writer (another writer owns it,
# or took it over): final, and the sender stops (docs/protocol.md, "Stream ownership").
NOT_WRITER_PREFIX = "not the writer: "

_OK = re.compile(r"([0-9]{1,19})((?: [a-z][a-z0-9_-]{0,31}=[\x21-\x7e]{1,64})*)")
_OK_NUMBERS = ("last", "published")  # the fields an OK may carry, each a segment number


def one_line(text: str) -> str:
    """``text`` made fit for a reply: printable ASCII, one line, cut to the longest reason."""
    text = _NOT_PRINTABLE.sub("?", " ".join(text.split()))
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


@dataclass(frozen=True, slots=True)
class Ack:
    """The message naming ``last_segment`` is on the daemon's disk. ``stream_last``: in the reply
    to a start-up message with a writer, the stream's highest queued segment number (0: none).
    ``published``: in the reply to a message with ``confirm=1``, the highest segment number N such
    that every message of the stream up to N is listed by a playlist version the store took (or
    failed for good, with an ERROR in the daemon's log, before a listed one); None from a daemon
    that does not confirm."""

    last_segment: int
    stream_last: int | None = None
    published: int | None = None

    def __post_init__(self) -> None:
        for value in (self.last_segment, self.stream_last or 0, self.published or 0):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ProtocolError(f"OK needs a non-negative segment number, not {value!r}")


@dataclass(frozen=True, slots=True)
class Reject:
    """The message was refused; ``reason`` says why, in one printable line."""

    reason: str

    def __post_init__(self) -> None:
        if not self.reason or self.reason != one_line(self.reason):
            raise ProtocolError("ERR needs a short printable one-line reason")

    @classmethod
    def because(cls, text: str) -> Reject:
        """A final refusal: the message itself is at fault."""
        return cls(one_line(text) or "refused")

    @classmethod
    def try_again(cls, text: str) -> Reject:
        """The daemon cannot take the message just now; the client should send it again later."""
        return cls(one_line(TRY_AGAIN_PREFIX + text))

    @classmethod
    def not_writer(cls, text: str) -> Reject:
        """A final refusal of the sender as the stream's writer: it must stop."""
        return cls(one_line(NOT_WRITER_PREFIX + text))

    @property
    def is_transient(self) -> bool:
        return self.reason.startswith(TRY_AGAIN_PREFIX)

    @property
    def is_not_writer(self) -> bool:
        return self.reason.startswith(NOT_WRITER_PREFIX)


@dataclass(frozen=True, slots=True)
class Challenge:
    """The daemon's answer to HELLO: the connection's ``nonce`` (32 lowercase hex digits), which
    every signed message on it is tagged over, and the daemon's clock ``time_ms`` (Unix ms)."""

    nonce: str
    time_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.nonce, str) or not _NONCE.fullmatch(self.nonce):
            raise ProtocolError("a HELLO nonce is 32 lowercase hex digits")
        if isinstance(self.time_ms, bool) or not isinstance(self.time_ms, int) or not 0 <= self.time_ms < 10**15:
            raise ProtocolError(f"a HELLO time is Unix milliseconds, not {self.time_ms!r}")


Reply = Ack | Reject | Challenge


def encode_reply(reply: Reply) -> bytes:
    if isinstance(reply, Ack):
        last = "" if reply.stream_last is None else f" last={reply.stream_last}"
        published = "" if reply.published is None else f" published={reply.published}"
        return f"OK {reply.last_segment}{last}{published}\n".encode("ascii")
    if isinstance(reply, Challenge):
        return f"HELLO nonce={reply.nonce} time={reply.time_ms}\n".encode("ascii")
    return f"ERR {reply.reason}\n".encode("ascii")


def parse_reply(line: bytes) -> Reply:
    text = line.rstrip(b"\r\n").decode("ascii", errors="replace")
    if (challenge := _CHALLENGE.fullmatch(text)) is not None:
        return Challenge(challenge.group(1), int(challenge.group(2)))
    verb, _, rest = text.partition(" ")
    if verb == "OK" and (ok := _OK.fullmatch(rest)):
        fields = dict(token.split("=", 1) for token in ok[2].split())
        if all(_DIGITS.fullmatch(fields.get(name, "0")) for name in _OK_NUMBERS):
            return Ack(int(ok[1]), *(int(fields[name]) if name in fields else None for name in _OK_NUMBERS))
    if verb == "ERR" and rest:
        return Reject(rest)
    raise ProtocolError(f"not a reply line: {one_line(text)[:60]!r}")


class ReplyDecoder:
    """Splits the daemon's byte stream into replies, for the client side."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buffer += data
        if b"\n" not in self._buffer and len(self._buffer) > MAX_LINE_BYTES:
            raise ProtocolError(f"reply line longer than {MAX_LINE_BYTES} bytes", recoverable=False)

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        end = self._buffer.find(b"\n")
        if end < 0:
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return parse_reply(line)
