"""Pure. Who may write a stream: one writer at a time, taken over when it falls silent or on request.

A stream's owner is the writer (``writer=``, one OUTPUT_DIR's segmenter) whose messages it
takes, with the peer it came from and when it last sent. The rule (docs/protocol.md, "Stream
ownership"):

- a stream nobody owns takes any writer, which becomes its owner; a message without ``writer``
  (the v1 wire, older clients) is taken as before and leaves the stream unowned;
- the owner's messages are taken and keep it live;
- another writer's message, or one without ``writer``, is refused while the owner sent within
  the takeover time: it is a second writer;
- past that time of silence, the first message of another writer takes the stream over (one
  without ``writer`` leaves it unowned); ``takeover=1`` takes it over at once;
- the writer taken over (the former owner) is told so when its messages are refused.

A writer is its id and its peer together: the same id from another peer (another key id, or
another host for unsigned messages) is another writer, so an id seen in a log does not let a
sender pass for the owner. Refusals and logs name a writer by a fingerprint of its id
(``writer_label``), never by the id. ``takeover=1`` takes a live stream from a writer of another
peer only when the claiming peer may (``takeover = true`` in the peers file); from its own peer's
writer, always.

The takeover time is ``--takeover-after`` or three target durations, whichever is longer: a live
writer sends once per segment, so it always beats it.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol import writer_label

from .stream import StreamKey, stream_label

# Target durations of silence past which a writer counts as gone, at the least: a live writer
# sends once per segment, and a late segment or a reconnect stays well within three.
SILENT_TARGET_DURATIONS = 3


@dataclass(frozen=True, slots=True)
class Owner:
    """A stream's owner as the spool records it: ``writer`` (None: the stream is unowned, fed by
    writers without ``writer=``), its ``peer`` (the key id of a signed peer, else its address),
    ``seen_at`` (wall clock, s, of its last message taken) and ``former``, the writer it took the
    stream over from (None when none)."""

    writer: str | None = None
    peer: str = ""
    seen_at: float = 0.0
    former: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """One message's claim to write a stream: its ``writer`` (None for v1), ``takeover=1``, the
    ``peer`` it came on, ``at``, the daemon's wall clock (s) when it arrived, and
    ``may_take_over``: its peer may take a live stream from another peer's writer."""

    writer: str | None
    takeover: bool
    peer: str
    at: float
    may_take_over: bool = False


@dataclass(frozen=True, slots=True)
class Taken:
    """The claim is accepted: ``owner`` is the stream's owner from now on; ``took_over`` the owner
    it replaced (None when the stream stays with its owner or had none)."""

    owner: Owner
    took_over: Owner | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """The claim is refused, for good: ``reason`` is one line naming the stream, its writer and
    that writer's peer, short enough for a reply (the sender's own id and address go in the log)."""

    reason: str


@dataclass(frozen=True, slots=True)
class OwnershipRule:
    """The ownership rule with the daemon's ``takeover_after_s`` (--takeover-after, seconds)."""

    takeover_after_s: float

    def silence_limit(self, target_duration_s: int) -> float:
        """Seconds of silence after which a writer of a stream with this target duration is gone."""
        return max(self.takeover_after_s, SILENT_TARGET_DURATIONS * target_duration_s)

    def decide(self, stream: StreamKey, owner: Owner, claim: Claim, target_duration_s: int) -> Taken | Refused:
        """Whether ``claim`` may write ``stream``, whose owner is ``owner`` (an ``Owner()`` for a
        stream nobody owns), and what its owner is then."""
        if owner.writer is None or (claim.writer == owner.writer and claim.peer == owner.peer):
            return Taken(Owner(claim.writer, claim.peer, claim.at, owner.former))
        silent_s = claim.at - owner.seen_at
        label = stream_label(stream)
        current = f"{writer_label(owner.writer)} of peer {owner.peer}"
        if silent_s > self.silence_limit(target_duration_s) or (
                claim.takeover and (claim.peer == owner.peer or claim.may_take_over)):
            return Taken(Owner(claim.writer, claim.peer, claim.at, owner.writer), took_over=owner)
        if claim.takeover:
            return Refused(f"peer {claim.peer} may not take over a live stream of another peer (takeover = true in"
                           f" [peers.{claim.peer}]): stream {label} is written by {current}")
        if claim.writer is not None and claim.writer == owner.former:
            return Refused(f"stream {label} was taken over by {current} (hls-segment --take-over takes it back)")
        return Refused(f"stream {label} is written by {current}, heard {max(0.0, silent_s):.0f} s ago:"
                       " refused as a second writer")
