"""A stream's published state and how each outcome changes it. Pure: no I/O.

The publisher loads a ``StreamState`` from the spool, applies the outcome of one queued message
(a segment published, a segment failed, an end) and stores the result together with the
message's completion, so the playlist can always be rebuilt from the spool alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


def rounded_seconds(duration_s: float) -> int:
    """RFC 8216 4.3.3.1 rounds an EXTINF to the nearest integer (halves up, not to even)."""
    return math.floor(duration_s + 0.5)


@dataclass(frozen=True, slots=True)
class PublishedSegment:
    media_sequence: int
    uri: str
    duration_s: float
    discontinuity: bool  # an EXT-X-DISCONTINUITY tag precedes it


@dataclass(frozen=True, slots=True)
class StreamState:
    """What the stream's playlist is made of. ``segments`` holds the kept tail, oldest first."""

    segments: tuple[PublishedSegment, ...] = ()
    # Media sequence number of the next published segment: the count of published ones, plus 1.
    next_media_sequence: int = 1
    # EXT-X-DISCONTINUITY tags that have slid out of the kept segments (RFC 8216 6.2.2).
    discontinuity_sequence: int = 0
    # Fixed at the first published segment; only raised, with a warning, by a longer segment.
    target_duration_s: int | None = None
    ended: bool = False
    # A segment failed or the numbering restarted: the next published segment gets a tag.
    pending_discontinuity: bool = False

    @property
    def published_any(self) -> bool:
        return self.next_media_sequence > 1


@dataclass(frozen=True, slots=True)
class Transition:
    state: StreamState
    warnings: tuple[str, ...] = ()  # for the log, one line each


def with_segment(
    state: StreamState,
    *,
    uri: str,
    duration_s: float,
    promised_s: int,
    discontinuity: bool,
    end: bool,
    keep: int | None,
) -> Transition:
    """``state`` after a segment was uploaded. ``keep`` bounds the kept segments (None: all)."""
    warnings: list[str] = []
    # A tag before the very first segment of a stream would mark nothing: drop it.
    tagged = (discontinuity or state.pending_discontinuity or state.ended) and state.published_any
    rounded = rounded_seconds(duration_s)
    target = state.target_duration_s
    if target is None:
        target = max(promised_s, rounded)
    elif rounded > target:
        warnings.append(
            f"segment of {duration_s:g} s is longer than the target duration {target} s;"
            f" raising EXT-X-TARGETDURATION to {rounded} (players may reload the playlist)"
        )
        target = rounded
    segment = PublishedSegment(state.next_media_sequence, uri, duration_s, tagged)
    segments = state.segments + (segment,)
    removed_tags = 0
    if keep is not None and len(segments) > keep:
        removed_tags = sum(1 for old in segments[:-keep] if old.discontinuity)
        segments = segments[-keep:]
    new_state = StreamState(
        segments=segments,
        next_media_sequence=state.next_media_sequence + 1,
        discontinuity_sequence=state.discontinuity_sequence + removed_tags,
        target_duration_s=target,
        ended=end,
        pending_discontinuity=False,
    )
    return Transition(new_state, tuple(warnings))


def with_failure(state: StreamState, *, promised_s: int, end: bool) -> StreamState:
    """``state`` after a segment failed for good: never listed, the next one marks the gap."""
    return replace(
        state,
        pending_discontinuity=True,
        ended=state.ended or end,
        target_duration_s=state.target_duration_s if state.target_duration_s is not None else promised_s,
    )


def with_end(state: StreamState, *, promised_s: int) -> StreamState:
    """``state`` after an end message that names no new segment."""
    return replace(
        state,
        ended=True,
        target_duration_s=state.target_duration_s if state.target_duration_s is not None else promised_s,
    )
