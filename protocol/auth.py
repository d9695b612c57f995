"""The challenge exchange: HMAC-SHA256 tags over a per-connection nonce, and the counter rule.

A sender that signs opens each connection with the request line ``HELLO``; the daemon answers
``HELLO nonce=<32 hex> time=<Unix ms>`` (``Challenge``, replies.py). Every signed message on that
connection carries ``n=`` (1, 2, 3... increasing) and, last, ``tag=``: the HMAC-SHA256, keyed with
the secret of the peer ``key_id`` (absent: ``default``), of ``tag_input``: the line
``nonce=<hex>\\n`` followed by the message's canonical bytes without its tag. A nonce is never
given twice, so a captured message is worthless on any other connection, after a restart or at
another daemon holding the same secret; on its own connection ``n`` refuses it. No clock is
involved: ``time`` is information for the sender (docs/protocol.md, Authentication).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .message import IndexMessage, encode_message
from .replies import Challenge

# The key id of a message without ``key_id=``: the daemon's single --secret-file.
DEFAULT_KEY_ID = "default"

# A nonce is 16 random bytes (128 bits: never drawn twice), written as 32 lowercase hex digits.
NONCE_BYTES = 16


def tag_input(message: IndexMessage, nonce: str) -> bytes:
    """What the tag covers: ``nonce=<nonce>\\n`` and the message's wire bytes without its tag."""
    return b"nonce=" + nonce.encode("ascii") + b"\n" + encode_message(message.unsigned())


def compute_tag(message: IndexMessage, secret: bytes, nonce: str) -> str:
    """The tag (64 lowercase hex digits) of ``message`` on the connection given ``nonce``."""
    return hmac.new(secret, tag_input(message, nonce), hashlib.sha256).hexdigest()


def sign(message: IndexMessage, secret: bytes, nonce: str, counter: int, key_id: str | None = None) -> IndexMessage:
    """``message`` as a signed sender puts it on the wire: ``key_id`` (None: the default peer),
    ``n=counter``, and the tag over ``nonce``. Raises ProtocolError for a bad key id or counter."""
    unsigned = replace(message, key_id=key_id, counter=counter, tag=None)
    return replace(unsigned, tag=compute_tag(unsigned, secret, nonce))


def verify(message: IndexMessage, secret: bytes, nonce: str) -> bool:
    """True when the message carries the right tag for ``nonce``; compared in constant time."""
    if message.tag is None:
        return False
    return hmac.compare_digest(message.tag, compute_tag(message, secret, nonce))


@dataclass(frozen=True, slots=True)
class AuthRefused:
    """Why a message or a HELLO was not accepted: the ERR reason, always final."""

    reason: str


@dataclass(slots=True)
class ChallengeSession:
    """One connection's side of the exchange, on the daemon. Pure: the caller draws the nonce
    (``NONCE_BYTES`` random bytes) and reads the clock.

    ``secrets`` maps key ids to secrets (empty: the daemon takes no signed messages, yet answers
    HELLO). ``hello`` answers the connection's one HELLO; ``refusal`` checks each signed message.
    """

    secrets: Mapping[str, bytes] = field(repr=False)
    nonce: str | None = None  # set by the HELLO
    last_counter: int = 0  # the highest n accepted on this connection

    def hello(self, nonce: str, now_ms: int) -> Challenge | AuthRefused:
        """The reply to the connection's HELLO: the challenge with ``nonce`` and the daemon's
        clock ``now_ms`` (Unix ms), or a refusal of a second HELLO.

        Raises ProtocolError when ``nonce`` is not 32 lowercase hex digits (the caller's mistake)."""
        challenge = Challenge(nonce, now_ms)
        if self.nonce is not None:
            return AuthRefused("HELLO was already answered on this connection: sign with its nonce")
        self.nonce = nonce
        return challenge

    def refusal(self, message: IndexMessage) -> AuthRefused | None:
        """Why the signed-or-not ``message`` is refused on this connection, or None when it is
        authentic and its ``n`` is above every earlier one (then remembered)."""
        if message.tag is None:
            return AuthRefused("message is not signed: this daemon requires HELLO, then key_id=, n= and tag=")
        key_id = message.key_id or DEFAULT_KEY_ID
        if self.nonce is None:
            if message.counter is None and message.sent_at_ms is not None:
                return AuthRefused("signed with ts= (an hls-segment older than the HELLO exchange):"
                                   " upgrade hls-segment; this daemon signs over a HELLO nonce")
            return AuthRefused("signed message without HELLO on this connection: send HELLO first"
                               " and sign over its nonce")
        secret = self.secrets.get(key_id)
        if secret is None:
            return AuthRefused(f"unknown key_id {key_id!r}: not a peer of this daemon (--peers-file, --secret-file)")
        if message.counter is None:
            return AuthRefused("signed message has no n= (its number on the connection)")
        if not verify(message, secret, self.nonce):
            return AuthRefused(f"wrong authentication tag (check the secret of key_id {key_id!r})")
        if message.counter <= self.last_counter:
            return AuthRefused(f"n={message.counter} is not above n={self.last_counter}, the last on this"
                               " connection: a replay, or a sender that reuses its numbers")
        self.last_counter = message.counter
        return None
