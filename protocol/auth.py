"""HMAC-SHA256 tags that authenticate a message with a shared secret, and the replay rule.

What is signed is the message's canonical encoding without its tag, which includes ``ts`` (the
sender's clock, Unix ms) and, for an inline payload, ``size`` and ``sha256``. A receiver accepts
a signed message only when |now - ts| <= AUTH_WINDOW_MS and it has not seen the same tag within
that window; a tag older than the window is forgotten, and its message is refused by the clock
check anyway. A sender signs at each send (a re-send gets a new ts, so a new tag).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
from dataclasses import dataclass, field, replace

from .limits import AUTH_WINDOW_MS, MAX_REMEMBERED_TAGS
from .message import IndexMessage, encode_message


def compute_tag(message: IndexMessage, secret: bytes) -> str:
    """The tag over the message's wire bytes without its tag field."""
    return hmac.new(secret, encode_message(message.unsigned()), hashlib.sha256).hexdigest()


def sign(message: IndexMessage, secret: bytes) -> IndexMessage:
    return replace(message, tag=compute_tag(message, secret))


def sign_at(message: IndexMessage, secret: bytes, now_ms: int) -> IndexMessage:
    """``message`` stamped with ``ts=now_ms`` and signed: what a sender puts on the wire."""
    return sign(replace(message, sent_at_ms=now_ms, tag=None), secret)


def verify(message: IndexMessage, secret: bytes) -> bool:
    """True when the message carries the right tag; compared in constant time."""
    if message.tag is None:
        return False
    return hmac.compare_digest(message.tag, compute_tag(message, secret))


@dataclass(frozen=True, slots=True)
class AuthRefused:
    """Why a message was not authenticated: the ERR reason. ``transient``: the receiver's state."""

    reason: str
    transient: bool = False


@dataclass(slots=True)
class ReplayGuard:
    """Checks tag, clock window and replays. Pure: the caller passes the clock in.

    ``refusal`` answers for one message: an ``AuthRefused`` or None, never an exception.
    """

    secret: bytes = field(repr=False)
    window_ms: int = AUTH_WINDOW_MS
    capacity: int = MAX_REMEMBERED_TAGS
    _seen: set[str] = field(default_factory=set, repr=False)
    _expiry: list[tuple[int, str]] = field(default_factory=list, repr=False)  # heap of (forget at, tag)

    def refusal(self, message: IndexMessage, now_ms: int) -> AuthRefused | None:
        """Why ``message`` is refused, or None when it is authentic, fresh and new.

        ``now_ms`` is the receiver's clock (Unix ms). An accepted message's tag is remembered,
        so the same message given again is refused as a replay.
        """
        self._forget(now_ms)
        if message.tag is None:
            return AuthRefused("message is not signed (this daemon requires ts= and tag=)")
        if message.sent_at_ms is None:
            return AuthRefused("signed message has no ts (needed against replays)")
        if not verify(message, self.secret):
            return AuthRefused("wrong authentication tag (check the shared secret)")
        skew_ms = message.sent_at_ms - now_ms
        if abs(skew_ms) > self.window_ms:
            return AuthRefused(
                f"ts is {skew_ms / 1000:+.1f} s from the daemon's clock, outside the"
                f" {self.window_ms / 1000:g} s window (replayed, or clocks not in sync)"
            )
        if message.tag in self._seen:
            return AuthRefused("replayed message: this tag was already received")
        if len(self._seen) >= self.capacity:
            return AuthRefused("too many signed messages within the replay window", transient=True)
        self._seen.add(message.tag)
        # Remember it until its ts has left the window: after that the clock check refuses it.
        heapq.heappush(self._expiry, (message.sent_at_ms + self.window_ms, message.tag))
        return None

    def _forget(self, now_ms: int) -> None:
        while self._expiry and self._expiry[0][0] < now_ms:
            _, tag = heapq.heappop(self._expiry)
            self._seen.discard(tag)

    def __len__(self) -> int:
        return len(self._seen)
